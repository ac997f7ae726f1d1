"""``streamkeeper ingest``: run ``ingest-events`` once and print what each source did and the counts per stream."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    app.command()(ingest)


def ingest(
    plt: Annotated[
        list[str] | None, typer.Option("--plt", help="PLT credentials block (PubNub streams). Repeatable.")
    ] = None,
    equinix: Annotated[
        list[str] | None, typer.Option("--equinix", help="Equinix credentials block (pull feed). Repeatable.")
    ] = None,
    sqs: Annotated[list[str] | None, typer.Option("--sqs", help="SQS queue URL. Repeatable.")] = None,
    kinesis: Annotated[
        list[str] | None, typer.Option("--kinesis", help="Kinesis stream name. Repeatable.")
    ] = None,
    aws_endpoint_url: Annotated[
        str | None, typer.Option("--aws-endpoint-url", help="AWS endpoint, e.g. a local moto server.")
    ] = None,
    aws_region: Annotated[str | None, typer.Option("--aws-region", help="AWS region.")] = None,
    landing: Annotated[
        str | None,
        typer.Option(
            help="Landing directory or s3://bucket/prefix/ (default $STREAMKEEPER_LANDING or data/landing)."
        ),
    ] = None,
    no_landing: Annotated[bool, typer.Option("--no-landing", help="Do not load the landing area.")] = False,
    max_events: Annotated[int, typer.Option(help="At most this many events per source.")] = 100_000,
    idle: Annotated[float, typer.Option(help="Stop listening to PubNub after this many idle seconds.")] = 1.0,
    db: Annotated[Path | None, typer.Option(help="History store file (default $STREAMKEEPER_DB).")] = None,
    fail_on_quarantine: Annotated[
        bool,
        typer.Option(
            "--fail-on-quarantine/--no-fail-on-quarantine",
            help="Exit 1 when a delivery was quarantined in this run (turn off for cron: the report has it).",
        ),
    ] = True,
) -> None:
    """Run ingest-events: drain PubNub (PLT), Equinix pull feeds, SQS, Kinesis and the landing area.

    A delivery that cannot be loaded is quarantined (moved aside, recorded in rejected_deliveries): the
    others load, the summary says how many, and the command exits 1 unless --no-fail-on-quarantine.
    """
    from streamkeeper.cli import _start_prefect, echo
    from streamkeeper.errors import ConfigError, StreamkeeperError

    if max_events < 1:
        raise ConfigError(f"--max-events {max_events}: give at least 1")
    if idle <= 0:
        raise ConfigError(f"--idle {idle}: give a positive number of seconds")
    if not (plt or equinix or sqs or kinesis) and no_landing:
        raise ConfigError(
            "nothing to ingest: give --plt, --equinix, --sqs or --kinesis, or drop --no-landing"
        )
    _start_prefect()
    from flows.ingest import ingest_events

    summary = ingest_events(
        plt_blocks=plt or [],
        equinix_blocks=equinix or [],
        sqs_queue_urls=sqs or [],
        kinesis_streams=kinesis or [],
        aws_endpoint_url=aws_endpoint_url,
        aws_region=aws_region,
        landing_dir=str(landing) if landing else None,
        load_landing=not no_landing,
        max_events=max_events,
        pubnub_idle_seconds=idle,
        db_path=str(db) if db else None,
    )
    echo(render_summary(summary))
    if summary.quarantined and fail_on_quarantine:
        raise StreamkeeperError(
            f"{summary.quarantined} deliveries quarantined in this run: "
            "see `streamkeeper report rejected_deliveries`"
        )


def render_summary(summary: Any) -> str:
    """The per-source table, the per vendor/stream counts, and a one-line total."""
    from streamkeeper.cli import _table

    sources = _table(
        ("source", "received", "loaded", "duplicates", "skipped", "quarantined", "seconds"),
        [
            (s.source, s.received, s.loaded, s.duplicates, s.skipped, s.quarantined, f"{s.seconds:.2f}")
            for s in summary.sources
        ],
    )
    counts = _table(
        ("vendor", "stream", "loaded", "total"),
        [(c.vendor, c.stream, c.loaded, c.total) for c in summary.counts],
    )
    return (
        f"{sources}\n\nevents per vendor and stream:\n{counts}\n\n"
        f"loaded {summary.loaded} events, dropped {summary.duplicates} duplicates, "
        f"{summary.quarantined} quarantined"
    )
