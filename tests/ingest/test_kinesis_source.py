"""Kinesis with real boto3 against moto on loopback: resume from the stored sequence number, and a SIGKILL
right after a commit."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ingestkit import Paused, unique, wait_for

from streamkeeper.ingest import drain_kinesis
from streamkeeper.store import HistoryStore


def make_stream(kinesis: Any, shards: int = 2) -> str:
    name = unique("telemetry")
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    wait_for(
        lambda: (
            kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
            == "ACTIVE"
        ),
        what="the stream active",
    )
    return name


def put(kinesis: Any, name: str, first: int, count: int) -> list[tuple[str, str]]:
    """Put records ``first..first+count-1``; returns their (shard, sequence number)."""
    out = []
    for start in range(first, first + count, 100):
        records = [
            {
                "Data": json.dumps(
                    {
                        "kind": "ts.event",
                        "action": "create",
                        "data": {"id": str(n), "createdon": "2026-02-03T04:05:06Z"},
                    }
                ).encode(),
                "PartitionKey": f"device-{n}",
            }
            for n in range(start, min(start + 100, first + count))
        ]
        answer = kinesis.put_records(StreamName=name, Records=records)
        assert not answer.get("FailedRecordCount")
        out += [(r["ShardId"], r["SequenceNumber"]) for r in answer["Records"]]
    return out


def stored(store: HistoryStore) -> list[str]:
    return list(store.query("SELECT event_id FROM events")["event_id"])


def test_kinesis_resumes_from_the_stored_sequence_number(kinesis: Any, store: HistoryStore) -> None:
    name = make_stream(kinesis)
    sent = put(kinesis, name, 0, 300)
    assert len({shard for shard, _ in sent}) == 2

    first = drain_kinesis(store, kinesis, name, max_events=120, batch_size=50)
    assert first.loaded == 120
    cursors = store.cursors(f"kinesis:{name}:")
    assert cursors and all(seq.isdigit() for seq in cursors.values())

    sent += put(kinesis, name, 300, 100)
    second = drain_kinesis(store, kinesis, name, batch_size=50)
    assert (second.loaded, second.duplicates) == (280, 0)  # resumed right after each stored sequence number
    assert drain_kinesis(store, kinesis, name).received == 0

    ids = stored(store)
    assert len(ids) == len(set(ids)) == 400
    assert set(ids) == {f"{shard}:{seq}" for shard, seq in sent}
    rows = store.query("SELECT DISTINCT vendor, stream, event_type FROM events")
    assert rows.values.tolist() == [["thingspace", name, "ts.event"]]
    last = {shard: max(int(seq) for s, seq in sent if s == shard) for shard, _ in sent}
    assert {k.rsplit(":", 1)[-1]: int(v) for k, v in store.cursors(f"kinesis:{name}:").items()} == last


def test_sigkill_right_after_a_commit_then_rerun_lands_exactly_once(
    paused_drain: Callable[..., Paused], moto_url: str, kinesis: Any, db_path: Path
) -> None:
    name = make_stream(kinesis, shards=1)
    sent = put(kinesis, name, 0, 250)

    child = paused_drain("kinesis", name, db_path, moto_url, batch_size=100)
    store = HistoryStore(db_path)
    assert len(stored(store)) == 100  # the first batch and its cursor, in one transaction
    child.kill()

    rerun = drain_kinesis(store, kinesis, name, batch_size=100)

    assert (rerun.loaded, rerun.duplicates) == (150, 0)  # neither lost nor repeated
    ids = stored(store)
    assert len(ids) == len(set(ids)) == 250 and set(ids) == {f"{s}:{q}" for s, q in sent}
