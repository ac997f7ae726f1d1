"""Poison in the landing area is quarantined in sight and blocks nothing; origins are part of identities
(issue 11, classes 1 to 3): real landing files, a real DuckDB file, the real SDK against the emulator; and
the same quarantine with the landing area on S3 and the store in DuckLake (moto's S3 server, PostgreSQL)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from streamkeeper.errors import StoreError
from streamkeeper.ingest import PubNubOptions, PubNubStream, drain_pubnub, load_landing, write_landing_file
from streamkeeper.ingest.normalize import frame, row
from streamkeeper.landing_storage import DirectoryStorage, LandingStorage, S3Storage
from streamkeeper.reports import run_report
from streamkeeper.sandbox.pubnub import PubNubEmulator
from streamkeeper.store import HistoryStore

RECEIVED = "2026-04-05T06:07:08.123456+00:00"
DAY = "20260405"


def event(vendor: str, stream: str, event_id: str, **more: Any) -> dict[str, Any]:
    return {
        "vendor": vendor,
        "stream": stream,
        "event_id": event_id,
        "account": "acct-1",
        "received_at": RECEIVED,
        "payload": {"id": event_id},
        **more,
    }


def raw(storage: LandingStorage, vendor: str, name: str, content: str | bytes) -> str:
    """A landing record as an old receiver (or an operator) left it, bytes as given; its key."""
    key = f"{vendor}/{DAY}/{name}"
    storage.put([(key, content if isinstance(content, bytes) else content.encode())])
    return key


@pytest.fixture(params=["directory", pytest.param("s3", marks=pytest.mark.slow)])
def area(request: pytest.FixtureRequest, tmp_path: Path, db_path: Path) -> tuple[str, LandingStorage, str]:
    """A landing area and a store: a directory with the embedded file, or S3 with DuckLake."""
    if request.param == "directory":
        landing = str(tmp_path / "landing")
        return landing, DirectoryStorage(landing), str(db_path)
    lake: dict[str, str] = request.getfixturevalue("lake")
    landing = f"s3://lake/landing-{uuid.uuid4().hex[:8]}/"
    return landing, S3Storage(landing), lake["STREAMKEEPER_STORE"]


def gap(received: int, subscription_id: str = "sub-1", expected: int = 1) -> str:
    record = {
        "kind": "gap",
        "delivery_id": f"gap-{received % 1000}",
        "vendor": "dma",
        "stream": "conf",
        "subscription_id": subscription_id,
        "expected": expected,
        "received": received,
        "detail": "first notification seen for this subscription",
        "detected_at": RECEIVED,
    }
    return json.dumps(record)  # ensure_ascii: a lone surrogate is written as its escape, valid JSON


def test_poison_among_good_files_is_quarantined_and_everything_else_loads(
    area: tuple[str, LandingStorage, str],
) -> None:
    landing, storage, target = area
    write_landing_file(landing, event("thingspace", "ts.event", "devices:e-1"), delivery_id="a-ts")
    write_landing_file(landing, event("stream", "orders", "evt_1"), delivery_id="b-stream")
    # what the old receiver wrote for ThingSpace's "never" time: loads, with a NULL occurred_at
    raw(
        storage,
        "thingspace",
        "c-never.json",
        json.dumps(
            event(
                "thingspace",
                "ts.event",
                "devices:e-2",
                occurred_at="0001-01-01T00:00:00+00:00",
                delivery_id="c-never",
            )
        ),
    )
    raw(
        storage,
        "stream",
        "d-epoch0.json",
        json.dumps(event("stream", "orders", "evt_2", occurred_at="1970-01-01T00:00:00+00:00")),
    )
    poison = {
        # what the old receiver landed for a sequence number beyond a BIGINT: it blocked every later load
        raw(
            storage, "dma", "gap-huge.json", gap(2**64 + 5)
        ): "received 18446744073709551621 is beyond a BIGINT",
        # a gap whose text a VARCHAR cannot hold (not UTF-8): quarantined before the store, which on duckdb
        # 1.5 would not refuse it but fail an internal assertion that invalidates the database instance
        raw(
            storage, "dma", "gap-surrogate.json", gap(7, subscription_id="\ud800")
        ): "gap record: subscription_id is not UTF-8 text",
        raw(storage, "stream", "e-broken.json", '{"vendor": "stream", "stream"'): "not JSON",
        raw(storage, "stream", "f-list.json", "[1, 2]"): "not a JSON object",
        raw(
            storage, "stream", "g-no-id.json", json.dumps(event("stream", "orders", ""))
        ): "event_id must be a non-empty string",
        raw(
            storage, "stream", "h-kind.json", json.dumps({"kind": 5, "vendor": "stream"})
        ): "kind 5 is not a record type",
        raw(storage, "stream", "i-latin1.json", b'{"vendor": "stream", "x": "\xe9"}'): "not JSON",
    }
    write_landing_file(landing, event("dma", "conf", "77:1:1"), delivery_id="z-dma")  # behind them all

    store = HistoryStore(target)
    report = load_landing(store, landing, batch_size=100)

    assert (report.loaded, report.quarantined, report.received) == (5, len(poison), 5 + len(poison))
    loaded = store.query("SELECT event_id, occurred_at FROM events ORDER BY event_id")
    assert loaded["event_id"].tolist() == ["77:1:1", "devices:e-1", "devices:e-2", "evt_1", "evt_2"]
    assert loaded["occurred_at"].isna().all()
    assert list(storage.pending()) == []

    rejected = run_report("rejected_deliveries", target).to_dict("records")
    assert len(rejected) == len(poison)
    by_path = {r["landing_path"]: r for r in rejected}
    assert storage.rejected() == sorted(poison)  # each in sight under _rejected/, none left pending
    for key, reason in poison.items():
        moved = storage.rejected_path(key)
        assert reason in by_path[moved]["reason"], by_path[moved]
        assert reason in (storage.get(f"_rejected/{key}.reason") or b"").decode()
    huge = by_path[storage.rejected_path(f"dma/{DAY}/gap-huge.json")]
    assert (huge["vendor"], huge["delivery_id"], str(huge["received_at"])) == (
        "dma",
        f"gap-{(2**64 + 5) % 1000}",
        "2026-04-05 06:07:08.123456+00:00",
    )
    assert "aborted" not in " ".join(r["reason"] for r in rejected)  # the store's own error, not the mask

    # a poison record left in place by a crash between the commit and the move is quarantined once
    huge_key = f"dma/{DAY}/gap-huge.json"
    storage.put([(huge_key, storage.get(f"_rejected/{huge_key}") or b"")])
    again = load_landing(store, landing)
    assert (again.loaded, again.quarantined) == (0, 1)
    assert len(store.query("SELECT * FROM rejected_deliveries")) == len(poison)


def test_a_store_that_cannot_be_written_quarantines_nothing(tmp_path: Path, db_path: Path) -> None:
    landing = tmp_path / "landing"
    files = [write_landing_file(landing, event("stream", "orders", f"evt_{n}")) for n in range(3)]
    HistoryStore(db_path).query("SELECT 1")  # the store exists
    holder = HistoryStore(db_path)
    with holder.writer(), pytest.raises(StoreError):  # another writer holds the lock throughout
        load_landing(HistoryStore(db_path, lock_timeout=0.2), landing)
    assert all(p.exists() for p in files) and not (landing / "_rejected").exists()
    assert load_landing(HistoryStore(db_path), landing).loaded == 3


def test_an_event_stored_under_its_previous_id_does_not_land_again(tmp_path: Path, db_path: Path) -> None:
    store = HistoryStore(db_path)
    now = datetime.now(UTC)
    # stored before the target was part of ThingSpace ids: (thingspace, ts.event, "evt-9")
    store.load_events(
        frame(
            [
                row(
                    vendor="thingspace",
                    stream="ts.event",
                    event_id="evt-9",
                    account="acct-1",
                    payload={},
                    received_at=now,
                )
            ]
        )
    )
    landing = tmp_path / "landing"
    retry = event(
        "thingspace", "ts.event", "devices:evt-9", previous_event_id="evt-9", received_at=now.isoformat()
    )
    write_landing_file(landing, retry)
    other_account = {**retry, "account": "acct-2", "event_id": "tokens:evt-9"}  # another sender: lands
    write_landing_file(landing, other_account)
    # an old-format file beside its retry in the new format, in one batch: one row
    write_landing_file(landing, event("thingspace", "ts.event", "evt-10"), delivery_id="a-old")
    write_landing_file(
        landing,
        event("thingspace", "ts.event", "devices:evt-10", previous_event_id="evt-10"),
        delivery_id="b-new",
    )

    report = load_landing(store, landing)

    assert (report.loaded, report.duplicates) == (2, 2)
    ids = sorted(store.query("SELECT event_id FROM events")["event_id"])
    assert ids == ["evt-10", "evt-9", "tokens:evt-9"]


PARTNER_A = "0d9e8f7a-6b5c-4d3e-8f2a-1b0c9d8e7f6a"
PARTNER_B = "5e4d3c2b-1a09-4f8e-9d7c-6b5a4f3e2d1c"


def test_two_partners_on_one_stream_id_keep_their_own_events_and_cursors(
    pubnub: tuple[PubNubEmulator, str], store: HistoryStore
) -> None:
    emulator, origin = pubnub
    options = PubNubOptions(origin=origin, idle_seconds=0.3)
    # PLT may show two partners one stream id; each has its own channel <partnerId>_sub1
    partner_a = PubNubStream("shared-stream", "sub-c-a", (f"{PARTNER_A}_sub1",), "subs-a", "tenant-1")
    partner_b = PubNubStream("shared-stream", "sub-c-b", (f"{PARTNER_B}_sub1",), "subs-b", "tenant-1")
    sent_b = [emulator.publish(partner_b.channels[0], {"eventType": "isMute", "n": n}) for n in range(5)]
    sent_a = [emulator.publish(partner_a.channels[0], {"eventType": "isMute", "n": n}) for n in range(5)]
    same_instant = emulator.publish(partner_b.channels[0], {"eventType": "isMute", "n": 99})

    assert drain_pubnub(store, [partner_a], options).loaded == 5
    # partner B's messages are older than partner A's cursor: they must not be taken for loaded
    assert drain_pubnub(store, [partner_b], options).loaded == 6
    tokens = sorted(int(e.rsplit(":", 1)[1]) for e in store.query("SELECT event_id FROM events")["event_id"])
    assert tokens == sorted([*sent_a, *sent_b, same_instant])
    cursors = store.cursors("pubnub:")
    assert len(cursors) == 2 and not any(PARTNER_A in k or PARTNER_B in k for k in cursors)


def test_plt_rows_and_cursors_of_the_previous_format_are_honoured(
    pubnub: tuple[PubNubEmulator, str], store: HistoryStore
) -> None:
    emulator, origin = pubnub
    stream = PubNubStream("s-1", "sub-c-a", (f"{PARTNER_A}_sub1",), "subs-a", "tenant-1")
    sent = [emulator.publish(stream.channels[0], {"eventType": "isMute", "n": n}) for n in range(6)]
    now = datetime.now(UTC)
    # a crashed run of the previous format: rows 0..3 committed as sub1:<tt>, the cursor at message 1
    store.load_events(
        frame(
            [
                row(
                    vendor="plt",
                    stream="s-1",
                    event_id=f"sub1:{tt}",
                    account="tenant-1",
                    payload={},
                    received_at=now,
                )
                for tt in sent[:4]
            ]
        )
    )
    store.set_cursors({"pubnub:s-1:sub1": str(sent[1])})

    report = drain_pubnub(store, [stream], PubNubOptions(origin=origin, idle_seconds=0.3))

    assert report.loaded == 2  # 4..5: 2..3 are stored under their previous id, 0..1 are behind the cursor
    tokens = sorted(int(e.rsplit(":", 1)[1]) for e in store.query("SELECT event_id FROM events")["event_id"])
    assert tokens == sent
