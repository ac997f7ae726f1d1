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
duplicates. A file that cannot be loaded (not a record, or refused by the store) is quarantined: moved to
``<landing>/_rejected/...`` and recorded in ``rejected_deliveries`` with its reason (counted as
quarantined), so it never blocks the queue and an operator sees it (``streamkeeper report
rejected_deliveries``). Directories are left in place (the receiver may be about to write into one), and
hidden ones (``.receiver/``, the receiver's state) are never read.
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

import duckdb
import pandas as pd
from pydantic import ValidationError

from streamkeeper.errors import StoreError
from streamkeeper.ingest.base import SourceReport, Stopwatch, after_commit
from streamkeeper.ingest.identity import drop_stored_previous
from streamkeeper.ingest.normalize import Row, frame, holdable, landing_event, parse_time
from streamkeeper.store import EventGap, HistoryStore, RejectedDelivery
from streamkeeper.validation import describe

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


MAX_FILE_BYTES = 256 * 1024 * 1024  # ours: far above the receiver's largest body (64 MiB)
_NEWER_KIND = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


class Poison(ValueError):
    """A landing file that cannot be loaded, and why (it is quarantined, the others load)."""


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
    ``event_gaps``, both in one transaction per batch. A record of another ``kind`` (a newer type, a plain
    name) is left in place. A file that cannot be loaded is **quarantined**: moved to ``_rejected/`` with a
    ``.reason`` file beside it and recorded in ``rejected_deliveries`` (vendor, route, received_at, reason,
    landing path), in the transaction of its batch; every other file of the batch loads. That covers a file
    that is not a record (not JSON, not an object, a column missing or of the wrong type, a gap count beyond
    a BIGINT) and one the store refuses when the batch is inserted: then the batch is split in halves and
    each loaded on its own, down to the one file that fails (its reason is the store's own error, never the
    aborted transaction's). An error that is not a file's (the disk, the lock) ends the load with nothing
    quarantined; the files stay for the next run.
    """
    root = landing_dir(landing)
    report = SourceReport(source="landing")
    watch = Stopwatch(max_seconds)
    batch = _Batch()
    for path in pending_files(root):
        if report.received >= max_events or watch.expired:
            break
        try:
            item = _read(path)
        except FileNotFoundError:
            continue  # another loader took it
        except Poison as poison:
            batch.poison.append(_quarantine_row(root, path, str(poison)))
        else:
            if item is None:
                continue  # a newer record type: not ours to load or delete
            batch.items.append(item)
        report.received += 1
        if batch.size >= batch_size:
            _commit(store, report, root, batch)
            batch = _Batch()
    if batch.size:
        _commit(store, report, root, batch)
    report.seconds = watch.elapsed
    return report


@dataclass
class _Item:
    """A readable landing file: its path and what it holds (an events row or a gap)."""

    path: Path
    record: Row | EventGap


@dataclass
class _Batch:
    items: list[_Item] = field(default_factory=list)
    poison: list[RejectedDelivery] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.items) + len(self.poison)


def _read(path: Path) -> _Item | None:
    """The record of a landing file; None for a newer record type; `Poison` for what cannot be loaded."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise Poison(f"the file is {size} bytes, over {MAX_FILE_BYTES}")
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:  # e.g. no permission: it would fail every run, so it goes aside
        raise Poison(f"cannot read the file: {exc.strerror}") from None
    try:
        record = json.loads(data)
    except RecursionError:
        raise Poison("not a landing record: JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise Poison(f"not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise Poison("not a landing record: not a JSON object")
    kind = record.get("kind") or "event"
    try:
        if kind == "event":
            return _Item(path, landing_event(record))
        if kind == "gap":
            return _Item(path, _gap(record))
    except ValidationError as exc:
        raise Poison(f"{kind} record: {describe(exc)}") from None
    except ValueError as exc:
        raise Poison(f"{kind} record: {exc}") from None
    if isinstance(kind, str) and _NEWER_KIND.match(kind):
        return None
    raise Poison(f"not a landing record: kind {kind!r} is not a record type")


def _gap(record: Mapping[str, Any]) -> EventGap:
    values = {k: record.get(k) for k in EventGap.model_fields if record.get(k) is not None}
    detected = parse_time(values.get("detected_at"))
    if "detected_at" in values and detected is None:
        raise ValueError("detected_at must be an ISO 8601 time")
    if detected is not None:
        values["detected_at"] = detected
    for name in ("expected", "received"):
        value = values.get(name)
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise ValueError(f"{name} {value} is beyond a BIGINT")
    return EventGap.model_validate(values)


def _commit(store: HistoryStore, report: SourceReport, root: Path, batch: _Batch) -> None:
    """Load a batch in one transaction; then (committed) delete its files and move its poison aside.

    When the store refuses the batch for its data, each half is committed on its own, down to the files
    that fail, which are quarantined with the store's error.
    """
    try:
        with store.writer() as con:
            loaded, duplicates, gaps = _insert(store, con, batch.items)
            store.record_rejected(batch.poison, con=con)
    except Exception as exc:
        if not _data_error(exc) or not batch.items:
            raise
        if len(batch.items) == 1:
            item = batch.items[0]
            poison = [*batch.poison, _quarantine_row(root, item.path, f"refused by the store: {_cause(exc)}")]
            _commit(store, report, root, _Batch(poison=poison))
            return
        half = len(batch.items) // 2
        _commit(store, report, root, _Batch(items=batch.items[:half], poison=batch.poison))
        _commit(store, report, root, _Batch(items=batch.items[half:]))
        return
    report.loaded += loaded
    report.duplicates += duplicates
    report.gaps += gaps
    report.quarantined += len(batch.poison)
    report.batches += 1
    after_commit(report.source)
    for item in batch.items:
        item.path.unlink(missing_ok=True)
    for rejected in batch.poison:
        _move_aside(root, rejected)


def _insert(store: HistoryStore, con: Any, items: list[_Item]) -> tuple[int, int, int]:
    """Insert the events (less those stored under a previous id) and the gaps; (loaded, dropped, gaps)."""
    rows = [item.record for item in items if isinstance(item.record, dict)]
    gaps = [item.record for item in items if isinstance(item.record, EventGap)]
    kept, _ = drop_stored_previous(con, rows)
    inserted = store.load_events(frame(kept), con=con) if kept else 0
    return inserted, len(rows) - inserted, _insert_gaps(con, gaps)


def _data_error(exc: BaseException | None) -> bool:
    """Whether the store refused a batch for what it holds (a file's fault), not for the disk or the lock."""
    if isinstance(exc, StoreError):
        return False
    if isinstance(exc, duckdb.TransactionException):  # "current transaction is aborted": look at why
        return _data_error(exc.__context__)
    return isinstance(
        exc,
        duckdb.DataError
        | duckdb.IntegrityError
        | duckdb.InvalidInputException
        | ValueError
        | TypeError
        | OverflowError,
    )


def _cause(exc: BaseException) -> str:
    """The store's own error, not the aborted transaction's that hides it (``finally: unregister``)."""
    while isinstance(exc, duckdb.TransactionException) and exc.__context__ is not None:
        exc = exc.__context__
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


def _quarantine_row(root: Path, path: Path, reason: str) -> RejectedDelivery:
    """The ``rejected_deliveries`` row of a file moved aside: what its record says of itself, if anything."""
    record: dict[str, Any] = {}
    try:
        parsed = json.loads(path.read_bytes()) if path.stat().st_size <= MAX_FILE_BYTES else None
        record = parsed if isinstance(parsed, dict) else {}
    except (OSError, ValueError, RecursionError):
        pass
    relative = path.relative_to(root)

    def text(name: str) -> str | None:
        value = record.get(name)
        return holdable(value) if isinstance(value, str) else None

    received = parse_time(record.get("received_at") or record.get("detected_at"))
    return RejectedDelivery(
        vendor=text("vendor") or relative.parts[0],
        route=text("route"),
        delivery_id=text("delivery_id") or path.stem,
        received_at=received,
        reason=_printable(reason),
        landing_path=str(root / REJECTED / relative),
    )


def _printable(reason: str) -> str:
    """A reason as one printable line of at most 500 characters (it may quote a file's bytes)."""
    line = " ".join(reason.split())
    line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)
    return holdable(line if len(line) <= 500 else line[:497] + "...")


def _move_aside(root: Path, rejected: RejectedDelivery) -> None:
    """Move a quarantined file under ``_rejected/`` (same vendor/day layout) with its reason beside it."""
    target = Path(rejected.landing_path)
    source = root / target.relative_to(root / REJECTED)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)
    except FileNotFoundError:
        return  # moved already (a rerun after a crash between the commit and the move)
    target.with_name(target.name + ".reason").write_text(rejected.reason + "\n")


def _insert_gaps(con: Any, gaps: list[EventGap]) -> int:
    """Insert gaps not recorded yet (a gap re-detected, or reloaded after a crash, is kept once)."""
    if not gaps:
        return 0
    rows = pd.DataFrame([gap.model_dump() for gap in gaps])
    rows["detected_at"] = pd.to_datetime(rows["detected_at"], utc=True)
    con.register("gap_batch", rows)
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
    con.unregister("gap_batch")  # not in a `finally`: on an aborted transaction it would hide the error
    return int(after) - int(before)


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
