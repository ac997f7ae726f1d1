"""Vendor payloads -> events rows: event type, occurred_at and vendor from each vendor's documented shape."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from streamkeeper.ingest.normalize import aws_events, describe, frame, parse_time, plt_event

NOW = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2018-01-22T21:33:27.883175Z", datetime(2018, 1, 22, 21, 33, 27, 883175, tzinfo=UTC)),
        ("2026-01-01T01:00:00+01:00", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01T00:00:00", datetime(2026, 1, 1, tzinfo=UTC)),
        (1767225600, datetime(2026, 1, 1, tzinfo=UTC)),
        (1767225600000, datetime(2026, 1, 1, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", None),  # ThingSpace's "never"
        ("yesterday", None),
        (None, None),
        (True, None),
    ],
)
def test_parse_time(value: object, expected: datetime | None) -> None:
    assert parse_time(value) == expected


def test_plt_event_row() -> None:
    message = {
        "eventType": "isConnected",
        "product": {"headset": "0BG8UK", "baseId": "0AGUEX"},
        "timeStamp": "2018-01-22T21:33:27.883175Z",
        "tenantId": "tenant-1",
        "isConnected": "false",
    }
    row = plt_event(
        stream_id="s-1", channel_alias="sub2", timetoken=17000000000000001, message=message, received_at=NOW
    )
    assert row["event_id"] == "sub2:17000000000000001" and row["stream"] == "s-1"
    assert (row["vendor"], row["event_type"], row["account"]) == ("plt", "isConnected", "tenant-1")
    assert row["occurred_at"] == datetime(2018, 1, 22, 21, 33, 27, 883175, tzinfo=UTC)
    assert json.loads(row["payload"]) == message


def test_describe_recognises_each_vendor_shape() -> None:
    thingspace = {
        "kind": "ts.event",
        "action": "create",
        "data": {"id": "1", "createdon": "2026-01-01T00:00:00Z"},
    }
    equinix = {"type": "environmental", "data": {"ibx": "LD9", "readingTime": "2026-01-02T00:00:00Z"}}
    plt = {"eventType": "isMute", "timeStamp": "2026-01-03T00:00:00Z", "tenantId": "t"}
    other = {"type": "order.created", "timestamp": 1767225600}
    assert describe(thingspace)[:3] == ("thingspace", "ts.event", datetime(2026, 1, 1, tzinfo=UTC))
    assert describe(equinix)[:3] == ("equinix", "environmental", datetime(2026, 1, 2, tzinfo=UTC))
    assert describe(plt) == ("plt", "isMute", datetime(2026, 1, 3, tzinfo=UTC), "t")
    assert describe(other) == (None, "order.created", datetime(2026, 1, 1, tzinfo=UTC), None)
    assert describe([1, 2]) == (None, None, None, None)


def test_aws_bodies_single_aggregated_and_not_json() -> None:
    single = aws_events(
        fallback_vendor="sqs", stream="q", event_id="m-1", body='{"type": "x"}', received_at=NOW
    )
    assert [(r["event_id"], r["vendor"], r["event_type"], r["occurred_at"]) for r in single] == [
        ("m-1", "sqs", "x", None)
    ]
    aggregated = json.dumps([{"kind": "ts.event", "data": {"id": str(i)}} for i in range(3)])
    rows = aws_events(
        fallback_vendor="sqs", stream="q", event_id="m-2", body=aggregated, received_at=NOW, sent_at=NOW
    )
    assert [r["event_id"] for r in rows] == ["m-2#0", "m-2#1", "m-2#2"]
    assert {r["vendor"] for r in rows} == {"thingspace"} and {r["occurred_at"] for r in rows} == {NOW}
    text = aws_events(
        fallback_vendor="kinesis", stream="k", event_id="e", body=b"plain \xff", received_at=NOW
    )
    assert json.loads(text[0]["payload"]) == {"raw_hex": b"plain \xff".hex()}


def test_frame_types() -> None:
    rows = aws_events(fallback_vendor="sqs", stream="q", event_id="m", body="{}", received_at=NOW)
    batch = frame(rows)
    assert str(batch["received_at"].dtype) == "datetime64[us, UTC]"
    assert str(batch["occurred_at"].dtype) == "datetime64[us, UTC]" and batch["occurred_at"].isna().all()


def test_a_queue_body_the_store_could_not_hold_still_loads(db_path: Path) -> None:
    """An SQS or Kinesis body is never refused: a row that failed its batch would block the queue forever."""
    from streamkeeper.store import HistoryStore

    lone = aws_events(
        fallback_vendor="sqs", stream="q", event_id="m-1", body='{"type": "order\\ud800"}', received_at=NOW
    )
    almost_equinix = aws_events(  # Equinix's shape with a field of another type: described as anything else
        fallback_vendor="sqs",
        stream="q",
        event_id="m-2",
        body='{"type": "environmental", "heartbeat": [1], "data": {"ibx": "LD9", "readingTime": 5}}',
        received_at=NOW,
    )
    store = HistoryStore(db_path)
    assert store.load_events(frame([*lone, *almost_equinix])) == 2
    types = store.query("SELECT event_id, vendor, event_type FROM events ORDER BY event_id").values.tolist()
    assert types == [["m-1", "sqs", "order\\ud800"], ["m-2", "sqs", "environmental"]]


def test_odd_times_are_none_never_an_error() -> None:
    for value in (
        0,
        86400,
        -1,
        10**30,
        1e308,
        float("nan"),
        "0001-01-01T00:00:00Z",
        "1969-07-20T20:17:40Z",
        "",
        "x",
        [],
        {},
    ):
        assert parse_time(value) is None, value
    assert parse_time(1_767_225_600_000) == datetime(2026, 1, 1, tzinfo=UTC)  # milliseconds
    assert parse_time("2026-01-01 10:00:00") == datetime(2026, 1, 1, 10, tzinfo=UTC)  # no offset: UTC
