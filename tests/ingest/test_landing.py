"""The receiver's landing area -> events (and event_gaps), files deleted only after the commit."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from ingestkit import Paused

from streamkeeper.ingest import load_landing, write_landing_file
from streamkeeper.ingest.landing import pending_files
from streamkeeper.store import HistoryStore

RECEIVED = "2026-04-05T06:07:08.123456+00:00"


def dma_event(sequence: int, **more: Any) -> dict[str, Any]:
    return {
        "vendor": "dma",
        "stream": "conferences",
        "event_id": f"sub-1:epoch-1:{sequence}",
        "subscription_id": "sub-1",
        "account": "dma-east",
        "event_type": "UPDATE",
        "occurred_at": None,
        "received_at": RECEIVED,
        "payload": {"notification-type": "UPDATE", "sequence-number": sequence},
        **more,
    }


def raw(landing: Path, vendor: str, name: str, content: str) -> Path:
    path = landing / vendor / "20260405" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def test_write_landing_file_follows_the_conventions(tmp_path: Path) -> None:
    path = write_landing_file(tmp_path, dma_event(1), delivery_id="d-0001")

    assert path == tmp_path / "dma" / "20260405" / "d-0001.json"
    record = json.loads(path.read_text())
    assert set(record) == {
        "vendor",
        "stream",
        "event_id",
        "subscription_id",
        "account",
        "event_type",
        "occurred_at",
        "received_at",
        "payload",
        "delivery_id",
    }
    assert record["received_at"] == RECEIVED and record["occurred_at"] is None
    assert not list(path.parent.glob("*.tmp"))
    for bad in ("../escape", ".hidden", "a/b", "x" * 300):
        with pytest.raises(ValueError):
            write_landing_file(tmp_path, dma_event(2), delivery_id=bad)
    with pytest.raises(ValueError, match="event_id"):
        write_landing_file(tmp_path, {**dma_event(3), "event_id": ""})


def test_landing_loads_each_event_once_and_deletes_only_what_it_loaded(tmp_path: Path, db_path: Path) -> None:
    landing = tmp_path / "landing"
    for sequence in range(1, 6):
        write_landing_file(landing, dma_event(sequence))
    write_landing_file(landing, dma_event(3))  # the sender retried: same event, another delivery
    write_landing_file(
        landing,
        {
            "vendor": "stream",
            "stream": "org-1",
            "event_id": "wh-77",
            "event_type": "order.created",
            "occurred_at": "2026-04-05T06:00:00Z",
            "received_at": datetime(2026, 4, 6, tzinfo=UTC),
            "payload": {"id": "wh-77"},
        },
    )
    gap = {
        "kind": "gap",
        "vendor": "dma",
        "stream": "conferences",
        "subscription_id": "sub-1",
        "expected": 6,
        "received": 9,
        "detail": "notifications 6..8 lost",
        "detected_at": RECEIVED,
        "delivery_id": "gap-sub-1-6-9",
    }
    raw(landing, "dma", "gap-sub-1-6-9.json", json.dumps(gap))
    broken = raw(landing, "dma", "broken.json", '{"vendor": "dma", "stream"')
    newer = raw(landing, "dma", "newer.json", json.dumps({"kind": "snapshot", "vendor": "dma"}))
    writing = raw(landing, "dma", "half.json.tmp", "{")
    state = raw(landing, ".receiver", "sequences.json", "{}")  # the receiver's own state

    store = HistoryStore(db_path)
    report = load_landing(store, landing, batch_size=3)

    assert (report.loaded, report.duplicates, report.gaps, report.quarantined) == (6, 1, 1, 1)
    events = store.query("SELECT vendor, stream, event_id, occurred_at FROM events ORDER BY event_id")
    assert events["event_id"].tolist() == [f"sub-1:epoch-1:{n}" for n in range(1, 6)] + ["wh-77"]
    assert str(events["occurred_at"].iloc[-1]) == "2026-04-05 06:00:00+00:00"
    gaps = store.query("SELECT vendor, stream, subscription_id, expected, received FROM event_gaps")
    assert gaps.values.tolist() == [["dma", "conferences", "sub-1", 6, 9]]
    assert list(pending_files(landing)) == [newer]  # a newer record type stays for a newer loader
    assert writing.exists() and state.exists() and not broken.exists()
    moved = landing / "_rejected" / "dma" / "20260405" / "broken.json"
    assert moved.exists() and "not JSON" in moved.with_name("broken.json.reason").read_text()
    [rejected] = store.query("SELECT * FROM rejected_deliveries").to_dict("records")
    assert (rejected["vendor"], rejected["delivery_id"], rejected["landing_path"]) == (
        "dma",
        "broken",
        str(moved),
    )
    assert rejected["reason"].startswith("not JSON: ")

    # the same gap re-detected (its file rewritten) and loaded again is still one row
    raw(landing, "dma", "gap-sub-1-6-9.json", json.dumps(gap))
    again = load_landing(store, landing)
    assert (again.loaded, again.gaps) == (0, 0)
    assert len(store.query("SELECT * FROM event_gaps")) == 1


def test_sigkill_between_commit_and_delete_then_rerun_lands_exactly_once(
    paused_drain: Callable[..., Paused], tmp_path: Path, db_path: Path
) -> None:
    landing = tmp_path / "landing"
    for sequence in range(30):
        write_landing_file(landing, dma_event(sequence), delivery_id=f"d-{sequence:04d}")

    child = paused_drain("landing", str(landing), db_path, batch_size=10)
    store = HistoryStore(db_path)
    assert len(store.query("SELECT * FROM events")) == 10
    child.kill()
    assert len(list(pending_files(landing))) == 30  # committed, but not deleted

    rerun = load_landing(store, landing, batch_size=10)

    assert (rerun.loaded, rerun.duplicates) == (20, 10)
    ids = store.query("SELECT event_id FROM events")["event_id"].tolist()
    assert len(ids) == len(set(ids)) == 30
    assert list(pending_files(landing)) == []
