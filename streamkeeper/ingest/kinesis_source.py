"""Events from an Amazon Kinesis data stream, with boto3, resuming from the stored sequence number.

For each shard, a drain asks for an iterator ``AFTER_SEQUENCE_NUMBER`` the shard's cursor
(``kinesis:<stream>:<shardId>``), or ``TRIM_HORIZON`` the first time, and commits each ``GetRecords`` answer
with the cursor moved to its last sequence number in the same transaction: a crash anywhere leaves rows and
cursor in step, and the rerun resumes right after the last committed record. ``event_id`` is
``<shardId>:<sequenceNumber>``; ``stream`` is the Kinesis stream name; the vendor is read from the payload's
shape (`normalize.describe`), else ``kinesis``.

A shard is read until ``GetRecords`` answers no records and ``MillisBehindLatest`` 0 (caught up), or the
shard is closed (no next iterator). Parents come before children (shards are read in id order, which is
creation order).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from streamkeeper.ingest.base import BatchLoader, SourceReport, Stopwatch, aws_call, in_session
from streamkeeper.ingest.normalize import Row, aws_events, parse_time
from streamkeeper.store import HistoryStore

CURSOR_PREFIX = "kinesis"
GET_RECORDS_MAX = 10_000  # Kinesis: at most 10,000 records per GetRecords


def cursor_key(stream_name: str, shard_id: str) -> str:
    return f"{CURSOR_PREFIX}:{stream_name}:{shard_id}"


@in_session
def drain_kinesis(
    store: HistoryStore,
    kinesis: Any,
    stream_name: str,
    *,
    max_events: int = 100_000,
    batch_size: int = 5_000,
    max_seconds: float | None = None,
    fallback_vendor: str = "kinesis",
) -> SourceReport:
    """Read every shard from its cursor to the tip, committing rows and cursor together.

    Args:
        kinesis: a boto3 Kinesis client.
        max_events: stop after this many records (over all shards).
        batch_size: records per ``GetRecords`` (and per commit).
        max_seconds: stop after this long (None: no limit).
    """
    report = SourceReport(source=f"kinesis:{stream_name}")
    loader = BatchLoader(store, report)
    watch = Stopwatch(max_seconds)
    cursors = store.cursors(f"{CURSOR_PREFIX}:{stream_name}:")
    for shard_id in _shards(kinesis, stream_name):
        if report.received >= max_events or watch.expired:
            break
        key = cursor_key(stream_name, shard_id)
        iterator = _iterator(kinesis, stream_name, shard_id, cursors.get(key))
        while iterator and report.received < max_events and not watch.expired:
            limit = min(batch_size, GET_RECORDS_MAX, max_events - report.received)
            answer = _call(
                kinesis.get_records, "GetRecords", stream_name, ShardIterator=iterator, Limit=limit
            )
            records = answer.get("Records", [])
            if records:
                report.received += len(records)
                loader.load(
                    _rows(records, stream_name, shard_id, fallback_vendor),
                    {key: records[-1]["SequenceNumber"]},
                )
            elif not answer.get("MillisBehindLatest"):
                break  # caught up with the tip of an open shard
            iterator = answer.get("NextShardIterator")
    report.seconds = watch.elapsed
    return report


def _shards(kinesis: Any, stream_name: str) -> list[str]:
    shards: list[str] = []
    kwargs: dict[str, Any] = {"StreamName": stream_name}
    while True:
        answer = _call(kinesis.list_shards, "ListShards", stream_name, **kwargs)
        shards.extend(shard["ShardId"] for shard in answer.get("Shards", []))
        token = answer.get("NextToken")
        if not token:
            return sorted(shards)
        kwargs = {"NextToken": token}


def _iterator(kinesis: Any, stream_name: str, shard_id: str, after: str | None) -> str | None:
    kwargs: dict[str, Any] = {"StreamName": stream_name, "ShardId": shard_id}
    if after:
        kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after)
    else:
        kwargs.update(ShardIteratorType="TRIM_HORIZON")
    answer = _call(kinesis.get_shard_iterator, "GetShardIterator", stream_name, **kwargs)
    iterator: str | None = answer.get("ShardIterator")
    return iterator


def _rows(records: list[dict[str, Any]], stream_name: str, shard_id: str, fallback_vendor: str) -> list[Row]:
    now = datetime.now(UTC)
    rows: list[Row] = []
    for record in records:
        rows.extend(
            aws_events(
                fallback_vendor=fallback_vendor,
                stream=stream_name,
                event_id=f"{shard_id}:{record['SequenceNumber']}",
                body=record.get("Data", b""),
                received_at=now,
                sent_at=parse_time(record.get("ApproximateArrivalTimestamp")),
            )
        )
    return rows


def _call(method: Any, what: str, stream_name: str, **kwargs: Any) -> Any:
    return aws_call("kinesis", what, f"stream {stream_name}", method, **kwargs)


__all__ = ["cursor_key", "drain_kinesis"]
