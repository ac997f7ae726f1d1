"""The landing area's writer: durable files, crash leftovers removed, directories made again."""

from __future__ import annotations

import json
from pathlib import Path

from streamkeeper.receiver.landing import LandingArea


def test_records_land_under_vendor_and_day_as_compact_json(tmp_path: Path) -> None:
    landing = LandingArea(tmp_path / "landing")
    record = {
        "kind": "event",
        "vendor": "dma",
        "delivery_id": "x1",
        "received_at": "2025-12-31T23:59:59.5-01:00",
    }
    [path] = landing.write([record])
    assert path == tmp_path / "landing" / "dma" / "20260101" / "x1.json"  # the UTC day
    assert json.loads(path.read_bytes()) == record
    landing.close()


def test_a_new_receiver_removes_what_a_crash_left_half_written(tmp_path: Path) -> None:
    root = tmp_path / "landing"
    landing = LandingArea(root)
    [kept] = landing.write(
        [{"vendor": "stream", "delivery_id": "d1", "received_at": "2025-01-02T03:04:05+00:00"}]
    )
    half = kept.with_name("d2.json.tmp")
    half.write_bytes(b'{"vendor":')
    state_half = landing.state_dir / "dma" / "conf" / "7.state.tmp"
    state_half.parent.mkdir(parents=True)
    state_half.write_bytes(b"{")
    landing.close()

    LandingArea(root).close()
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        ".receiver/lock",
        "stream/20250102/d1.json",
    ]


def test_a_day_directory_removed_while_running_is_made_again(tmp_path: Path) -> None:
    landing = LandingArea(tmp_path / "landing")
    record = {"vendor": "stream", "delivery_id": "d1", "received_at": "2025-01-02T03:04:05+00:00"}
    [first] = landing.write([record])
    first.unlink()
    first.parent.rmdir()  # e.g. an operator's cleanup of empty day directories
    [again] = landing.write([{**record, "delivery_id": "d2"}])
    assert again.exists()
    landing.close()
