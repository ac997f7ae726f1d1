"""The push receiver's landing area: one JSON file per accepted delivery, loaded into ``events`` then removed.

Format (docs/CONVENTIONS.md, "Landing area"): ``<landing>/<vendor>/<YYYYMMDD>/<delivery_id>.json``, written
to a ``.tmp`` name, fsync'ed, renamed, and the directory fsync'ed, before the receiver answers 2xx. The file
is a JSON object with the events columns (``vendor, stream, event_id, subscription_id, account, event_type,
occurred_at, received_at, payload``) plus ``delivery_id``. `write_landing_file` writes one so. A record
with ``kind: "gap"`` is a DMA sequence gap (``EventGap`` fields, ``detected_at``) for ``event_gaps``; any
other ``kind`` is a record type newer than this loader, left in place.

`load_landing` takes the finished files (``*.json``; ``.tmp`` files are still being written) oldest day
first, loads a batch with `HistoryStore.load_events` (deduplicated by vendor, stream, event_id) and its
gaps into ``event_gaps`` (once each) in one transaction, and deletes the batch's files only after the
commit. A crash between the two leaves files that the next run loads again; the store drops them as
duplicates. A file that is not valid JSON or lacks a column is moved to ``<landing>/_rejected/...``
(counted as skipped), so it never blocks the queue. Directories are left in place (the receiver may be
about to write into one), and hidden ones (``.receiver/``, the receiver's state) are never read.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from streamkeeper.ingest.base import SourceReport, Stopwatch, after_commit
from streamkeeper.ingest.normalize import Row, frame, landing_event, parse_time
from streamkeeper.store import EventGap, HistoryStore

LANDING_ENV = "STREAMKEEPER_LANDING"
DEFAULT_LANDING = Path("data/landing")
REJECTED = "_rejected"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def landing_dir(path: str | Path | None = None) -> Path:
    """`path`, else ``$STREAMKEEPER_LANDING``, else ``data/landing``."""
    return Path(path) if path else Path(os.environ.get(LANDING_ENV) or DEFAULT_LANDING)


def write_landing_file(landing: str | Path, event: Mapping[str, Any], delivery_id: str | None = None) -> Path:
    """Write one delivery durably: ``.tmp``, fsync, rename to ``<delivery_id>.json``, fsync the directory.

    Args:
        landing: the landing area's root.
        event: the events columns (``received_at`` and ``occurred_at`` as ISO text or datetimes; missing
            ``received_at`` means now). ``vendor``, ``stream`` and ``event_id`` are required.
        delivery_id: the file's name (letters, digits, ``.``, ``_``, ``-``); a fresh one when None.

    Returns:
        The final path. Writing the same delivery_id again replaces the file (the store dedups anyway).
    """
    record = dict(event)
    delivery_id = delivery_id or str(record.get("delivery_id") or uuid.uuid4().hex)
    if not _SAFE_ID.match(delivery_id):
        raise ValueError(f"delivery_id {delivery_id!r}: use letters, digits, '.', '_' and '-' only")
    for name in ("vendor", "stream", "event_id"):
        if not isinstance(record.get(name), str) or not record[name]:
            raise ValueError(f"{name} must be a non-empty string")
    if not _SAFE_ID.match(record["vendor"]):
        raise ValueError(f"vendor {record['vendor']!r}: use letters, digits, '.', '_' and '-' only")
    received = parse_time(record.get("received_at")) or datetime.now(UTC)
    occurred = parse_time(record.get("occurred_at"))
    record.update(
        received_at=received.isoformat(),
        occurred_at=occurred.isoformat() if occurred else None,
        delivery_id=delivery_id,
    )
    for name in ("subscription_id", "account", "event_type", "payload"):
        record.setdefault(name, None)
    directory = Path(landing) / record["vendor"] / received.strftime("%Y%m%d")
    if not directory.is_dir():
        directory.mkdir(parents=True, exist_ok=True)
        _fsync_dir(directory.parent)  # the new day (and vendor) directory entries are durable too
        _fsync_dir(directory.parent.parent)
    final = directory / f"{delivery_id}.json"
    partial = directory / f"{delivery_id}.json.tmp"  # the receiver's name for a file being written
    data = json.dumps(record, separators=(",", ":"), default=str).encode()
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, final)
    _fsync_dir(directory)
    return final


def pending_files(landing: str | Path) -> Iterator[Path]:
    """Finished landing files, oldest day first, per vendor; skips ``.tmp`` and ``_rejected``/hidden dirs."""
    root = Path(landing)
    if not root.is_dir():
        return
    days: list[tuple[str, str, Path]] = []
    for vendor_dir in root.iterdir():
        if not vendor_dir.is_dir() or vendor_dir.name.startswith((".", "_")):
            continue
        for day_dir in vendor_dir.iterdir():
            if day_dir.is_dir() and not day_dir.name.startswith((".", "_")):
                days.append((day_dir.name, vendor_dir.name, day_dir))
    for _, _, day_dir in sorted(days):
        for entry in sorted(os.scandir(day_dir), key=lambda e: e.name):
            if entry.name.endswith(".json") and not entry.name.startswith(".") and entry.is_file():
                yield Path(entry.path)


def load_landing(
    store: HistoryStore,
    landing: str | Path | None = None,
    *,
    max_events: int = 100_000,
    batch_size: int = 10_000,
    max_seconds: float | None = None,
) -> SourceReport:
    """Load finished landing files in batches; each batch's files are deleted after its commit.

    Event records go to ``events`` (`HistoryStore.load_events`), gap records (``kind: "gap"``) to
    ``event_gaps``, both in one transaction per batch. A record of another ``kind`` (a newer type) is left
    in place; a file that cannot be read as a record is moved to ``_rejected/``.
    """
    root = landing_dir(landing)
    report = SourceReport(source="landing")
    watch = Stopwatch(max_seconds)
    batch = _Batch()
    for path in pending_files(root):
        if report.received >= max_events or watch.expired:
            break
        try:
            record = json.loads(path.read_bytes())
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            kind = record.get("kind") or "event"
            if kind == "event":
                batch.rows.append(landing_event(record))
            elif kind == "gap":
                batch.gaps.append(_gap(record))
            else:
                continue  # a newer record type: not ours to load or delete
        except FileNotFoundError:
            continue  # another loader took it
        except ValueError as exc:  # JSONDecodeError and pydantic's ValidationError are ValueErrors
            _reject(root, path, str(exc))
            report.received += 1
            report.skipped += 1
            continue
        report.received += 1
        batch.files.append(path)
        if len(batch.files) >= batch_size:
            _commit(store, report, batch)
            batch = _Batch()
    if batch.files:
        _commit(store, report, batch)
    report.seconds = watch.elapsed
    return report


@dataclass
class _Batch:
    files: list[Path] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    gaps: list[EventGap] = field(default_factory=list)


def _gap(record: Mapping[str, Any]) -> EventGap:
    values = {k: record.get(k) for k in EventGap.model_fields if record.get(k) is not None}
    detected = parse_time(values.get("detected_at"))
    if "detected_at" in values and detected is None:
        raise ValueError("detected_at must be an ISO 8601 time")
    if detected is not None:
        values["detected_at"] = detected
    return EventGap.model_validate(values)


def _commit(store: HistoryStore, report: SourceReport, batch: _Batch) -> None:
    """Events and gaps in one transaction; then (committed) the files may go."""
    with store.writer() as con:
        inserted = store.load_events(frame(batch.rows), con=con) if batch.rows else 0
        gaps = _insert_gaps(con, batch.gaps)
    report.loaded += inserted
    report.duplicates += len(batch.rows) - inserted
    report.gaps += gaps
    report.batches += 1
    after_commit(report.source)
    for path in batch.files:
        path.unlink(missing_ok=True)


def _insert_gaps(con: Any, gaps: list[EventGap]) -> int:
    """Insert gaps not recorded yet (a gap re-detected, or reloaded after a crash, is kept once)."""
    if not gaps:
        return 0
    rows = pd.DataFrame([gap.model_dump() for gap in gaps])
    rows["detected_at"] = pd.to_datetime(rows["detected_at"], utc=True)
    con.register("gap_batch", rows)
    try:
        before = con.execute("SELECT count(*) FROM event_gaps").fetchall()[0][0]
        con.execute(
            """
            INSERT INTO event_gaps BY NAME
            SELECT g.* FROM (
                SELECT * FROM gap_batch
                QUALIFY row_number() OVER (
                    PARTITION BY vendor, stream, subscription_id, expected, received ORDER BY detected_at) = 1
            ) AS g
            WHERE NOT EXISTS (
                SELECT 1 FROM event_gaps AS e
                WHERE e.vendor = g.vendor AND e.stream = g.stream
                  AND e.subscription_id IS NOT DISTINCT FROM g.subscription_id
                  AND e.expected IS NOT DISTINCT FROM g.expected
                  AND e.received IS NOT DISTINCT FROM g.received)
            """
        ).fetchall()
        after = con.execute("SELECT count(*) FROM event_gaps").fetchall()[0][0]
    finally:
        con.unregister("gap_batch")
    return int(after) - int(before)


def _reject(root: Path, path: Path, reason: str) -> None:
    """Move a bad file under ``_rejected/`` (same vendor/day layout) with the reason beside it."""
    relative = path.relative_to(root)
    target = root / REJECTED / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(path, target)
    except FileNotFoundError:
        return
    target.with_name(target.name + ".reason").write_text(reason + "\n")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = [
    "DEFAULT_LANDING",
    "LANDING_ENV",
    "landing_dir",
    "load_landing",
    "pending_files",
    "write_landing_file",
]
