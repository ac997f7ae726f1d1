"""``ingest-events``: drain every configured source into the ``events`` table, each delivery once."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar, cast

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.blocks.core import Block
from pydantic import BaseModel, Field

from blocks.equinix import EquinixCredentials
from blocks.plt import PLTCredentials
from flows.dashboard import publish_dashboard
from flows.parameters import Names, Text, given
from streamkeeper.errors import ConfigError, StreamkeeperError
from streamkeeper.ingest import PubNubOptions, SourceReport
from tasks.dashboard import DashboardPage
from tasks.ingest import ingest_equinix, ingest_kinesis, ingest_landing, ingest_plt, ingest_sqs
from tasks.store import history_store

B = TypeVar("B", bound=Block)


class StreamCount(BaseModel):
    """Events of one vendor stream: loaded by this run, and stored in all."""

    vendor: str
    stream: str
    loaded: int
    total: int


class IngestSummary(BaseModel):
    """What an ingest run did: one report per source, and the counts per vendor and stream."""

    sources: list[SourceReport] = Field(default_factory=list)
    counts: list[StreamCount] = Field(default_factory=list)
    failed: list[str] = Field(default_factory=list)
    dashboard: DashboardPage | None = None

    @property
    def loaded(self) -> int:
        return sum(s.loaded for s in self.sources)

    @property
    def duplicates(self) -> int:
        return sum(s.duplicates for s in self.sources)

    @property
    def quarantined(self) -> int:
        """Acknowledged deliveries moved aside this run (``streamkeeper report rejected_deliveries``)."""
        return sum(s.quarantined for s in self.sources)


@flow(name="ingest-events", log_prints=True)
def ingest_events(
    plt_blocks: Names = None,
    equinix_blocks: Names = None,
    sqs_queue_urls: Names = None,
    kinesis_streams: Names = None,
    aws_endpoint_url: Text = None,
    aws_region: Text = None,
    landing_dir: Text = None,
    load_landing: bool = True,
    max_events: Annotated[int, Field(ge=1)] = 100_000,
    pubnub_idle_seconds: Annotated[float, Field(gt=0)] = 1.0,
    pubnub_max_seconds: Annotated[float, Field(gt=0)] = 30.0,
    db_path: Text = None,
    dashboard_path: Text = None,
) -> IngestSummary:
    """Run one bounded drain per source, concurrently; then count the events per vendor and stream.

    Args:
        plt_blocks: PLT credentials blocks whose streams are drained from PubNub.
        equinix_blocks: Equinix credentials blocks whose pull feeds are read.
        sqs_queue_urls: SQS queue URLs to drain.
        kinesis_streams: Kinesis stream names to read.
        aws_endpoint_url: AWS endpoint URL (e.g. a local moto server); empty: AWS itself.
        aws_region: AWS region; empty: the AWS default chain.
        landing_dir: The push receiver's landing area; empty: $STREAMKEEPER_LANDING, else data/landing. A
            relative path is taken from the deployment's working directory.
        load_landing: Load the receiver's landing area.
        max_events: At most this many events read per source and run.
        pubnub_idle_seconds: Stop listening to PubNub after this long without a message (seconds).
        pubnub_max_seconds: Stop listening to PubNub after this long in any case (seconds).
        db_path: History store file; empty: $STREAMKEEPER_DB, else data/streamkeeper.duckdb.
        dashboard_path: Also write the dashboard (one HTML page of charts) to this file, linked from the
            run's artifacts; empty: none. A relative path is taken from the deployment's working directory.
    """
    logger = get_run_logger()
    aws_endpoint_url, aws_region = given(aws_endpoint_url), given(aws_region)
    landing_dir, db_path = given(landing_dir), given(db_path)
    pubnub = PubNubOptions(
        max_events=max_events, idle_seconds=pubnub_idle_seconds, max_seconds=pubnub_max_seconds
    )
    runs: list[tuple[str, Any]] = []
    for name in plt_blocks or []:
        credentials = load_block(PLTCredentials, name, "plt")
        runs.append((f"plt:{name}", ingest_plt.submit(credentials, name, pubnub, db_path)))
    for name in equinix_blocks or []:
        equinix = load_block(EquinixCredentials, name, "equinix")
        runs.append((f"equinix:{name}", ingest_equinix.submit(equinix, name, max_events, db_path)))
    for url in sqs_queue_urls or []:
        runs.append((f"sqs:{url}", ingest_sqs.submit(url, aws_endpoint_url, aws_region, max_events, db_path)))
    for stream in kinesis_streams or []:
        runs.append(
            (
                f"kinesis:{stream}",
                ingest_kinesis.submit(stream, aws_endpoint_url, aws_region, max_events, db_path),
            )
        )
    if load_landing:
        runs.append(("landing", ingest_landing.submit(landing_dir, max_events, db_path)))

    summary = IngestSummary()
    for label, future in runs:
        try:
            summary.sources.append(future.result())
        except Exception as exc:  # one failing source does not stop the others
            summary.failed.append(f"{label}: {exc}")
            logger.error("%s failed: %s", label, exc)

    summary.counts = count_events(db_path)
    create_table_artifact(
        key="ingest-events",
        table=[s.model_dump(mode="json") for s in summary.sources],
        description=f"{summary.loaded} events loaded, {summary.duplicates} duplicates dropped, "
        f"{summary.quarantined} quarantined",
    )
    logger.info("loaded %d events, dropped %d duplicates", summary.loaded, summary.duplicates)
    if summary.quarantined:  # the run completes: the report (and alerting) carry it
        logger.warning(
            "%d deliveries quarantined: see `streamkeeper report rejected_deliveries`", summary.quarantined
        )
    if given(dashboard_path):
        summary.dashboard = publish_dashboard(str(dashboard_path), db_path)
        logger.info("dashboard: %s", summary.dashboard.path)
    if summary.failed:
        raise StreamkeeperError(f"{len(summary.failed)} source(s) failed; first: {summary.failed[0]}")
    return summary


def load_block(cls: type[B], name: str, vendor: str) -> B:
    """A saved credentials block; a missing one is a `ConfigError` that says how to create it."""
    try:
        return cast(B, cls.load(name))  # sync in a sync flow (Prefect types it as maybe a coroutine)
    except ValueError:
        raise ConfigError(
            f"no {vendor} credentials block named {name!r}: create it with `streamkeeper connect {vendor} "
            f"--name {name}`"
        ) from None


def count_events(db_path: str | None = None) -> list[StreamCount]:
    """Events per vendor and stream: loaded by this flow run, and in total."""
    store = history_store(db_path)
    frame = store.query(
        """
        SELECT vendor, stream, count(*) FILTER (WHERE flow_run_id = ?) AS loaded, count(*) AS total
        FROM events GROUP BY vendor, stream ORDER BY vendor, stream
        """,
        [store.flow_run_id or ""],
    )
    return [StreamCount(**row) for row in frame.to_dict("records")]
