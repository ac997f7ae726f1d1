"""Tasks of ``ingest-events``: one per source (a PLT partner, an Equinix organisation, a queue, a stream, the
landing area), each a bounded drain committing batches of events; never one task per event."""

from __future__ import annotations

from typing import Any

from prefect import task

from blocks.equinix import EquinixCredentials
from blocks.plt import PLTCredentials
from streamkeeper.ingest import (
    PubNubOptions,
    SourceReport,
    drain_equinix,
    drain_kinesis,
    drain_pubnub,
    drain_sqs,
    load_landing,
    plt_streams,
)
from streamkeeper.vendors.http import CallRecorder
from tasks.retry import transient_only
from tasks.store import flush_calls, history_store

RETRIES: dict[str, Any] = {"retries": 2, "retry_delay_seconds": 5, "retry_condition_fn": transient_only}


@task(name="ingest-plt", task_run_name="ingest-plt-{block_name}", **RETRIES)
def ingest_plt(
    credentials: PLTCredentials, block_name: str, options: PubNubOptions, db_path: str | None = None
) -> SourceReport:
    """Drain the PubNub channels of every stream a PLT partner may use (origin: the block's, unless set)."""
    store = history_store(db_path)
    recorder = CallRecorder()
    try:
        with credentials.get_client(recorder=recorder) as client:
            streams = plt_streams(client)
    finally:
        flush_calls(store, recorder)
    if options.origin is None:
        options = options.model_copy(update={"origin": credentials.pubnub_origin})
    return drain_pubnub(store, streams, options, source=f"plt:{block_name}")


@task(name="ingest-equinix", task_run_name="ingest-equinix-{block_name}", **RETRIES)
def ingest_equinix(
    credentials: EquinixCredentials, block_name: str, max_events: int, db_path: str | None = None
) -> SourceReport:
    """Pull the organisation's subscriptionData feeds from their stored offsets."""
    store = history_store(db_path)
    recorder = CallRecorder()
    try:
        with credentials.get_client(recorder=recorder) as client:
            return drain_equinix(store, client, block_name, max_events=max_events)
    finally:
        flush_calls(store, recorder)


@task(name="ingest-sqs", **RETRIES)
def ingest_sqs(
    queue_url: str,
    endpoint_url: str | None,
    region: str | None,
    max_events: int,
    db_path: str | None = None,
) -> SourceReport:
    """Receive from an SQS queue, commit, then delete."""
    return drain_sqs(
        history_store(db_path), aws_client("sqs", endpoint_url, region), queue_url, max_events=max_events
    )


@task(name="ingest-kinesis", **RETRIES)
def ingest_kinesis(
    stream_name: str,
    endpoint_url: str | None,
    region: str | None,
    max_events: int,
    db_path: str | None = None,
) -> SourceReport:
    """Read a Kinesis stream's shards from their stored sequence numbers."""
    return drain_kinesis(
        history_store(db_path),
        aws_client("kinesis", endpoint_url, region),
        stream_name,
        max_events=max_events,
    )


@task(name="ingest-landing", **RETRIES)
def ingest_landing(landing_dir: str | None, max_events: int, db_path: str | None = None) -> SourceReport:
    """Load the push receiver's landing files, deleting each batch after its commit."""
    return load_landing(history_store(db_path), landing_dir, max_events=max_events)


def aws_client(service: str, endpoint_url: str | None, region: str | None) -> Any:
    """A boto3 client; credentials come from the usual AWS chain (environment, profile, instance role)."""
    import boto3

    return boto3.client(service, endpoint_url=endpoint_url or None, region_name=region or None)
