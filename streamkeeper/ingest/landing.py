"""The push receiver's landing area: one JSON record per accepted delivery, loaded into ``events`` then removed.

Format (docs/CONVENTIONS.md, "Landing area"): ``<landing>/<vendor>/<YYYYMMDD>/<delivery_id>.json`` in a
directory (written to a ``.tmp`` name, fsync'ed, renamed, and the directory fsync'ed) or as an object under
``s3://bucket/prefix/`` (a PUT that succeeded), before the receiver answers 2xx
(`streamkeeper.landing_storage`). The record is a JSON object with the events columns (``vendor, stream,
event_id, subscription_id, account, event_type, occurred_at, received_at, payload``) plus ``delivery_id``.
`write_landing_file` writes one so. A record with ``kind: "gap"`` is a DMA sequence gap (``EventGap``
fields, ``detected_at``) for ``event_gaps``; any other ``kind`` is a record type newer than this loader,
left in place.

`load_landing` takes the finished records (``*.json``; ``.tmp`` files are still being written) oldest day
first, each claimed through the store so that loaders on several hosts never take one at the same time,
loads a batch with `HistoryStore.load_events` (deduplicated by vendor, stream, event_id) and its gaps into
``event_gaps`` (once each) in one transaction, and deletes the batch's records only after the commit. A
crash between the two leaves records that the next run loads again; the store drops them as duplicates. A
record that cannot be loaded (not a record, or refused by the store) is quarantined: recorded in
``rejected_deliveries`` with its reason (counted as quarantined) and moved to ``<landing>/_rejected/...``,
so it never blocks the queue and an operator sees it (``streamkeeper report rejected_deliveries``), the
same in a directory and on S3. Directories are left in place (the receiver may be about to write into
one), and hidden ones (``.receiver/``, the receiver's state) are never read.
"""

from __future__ import annotations

import json
import os
import re
import uuid
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import duckdb
import pandas as pd
from pydantic import ValidationError

from streamkeeper.errors import StoreError
from streamkeeper.ingest.base import SourceReport, Stopwatch, after_commit, in_session
from streamkeeper.ingest.identity import drop_stored_previous
from streamkeeper.ingest.normalize import Row, frame, holdable, landing_event, parse_time
from streamkeeper.landing_storage import (
    DirectoryStorage,
    LandingStorage,
    RecordTooLarge,
    is_s3,
    landing_location,
    open_storage,
)
from streamkeeper.store import EventGap, HistoryStore, RejectedDelivery
from streamkeeper.validation import describe

LANDING_ENV = "STREAMKEEPER_LANDING"
DEFAULT_LANDING = Path("data/landing")
CLAIM_SLOTS = 64
"""Records are claimed by slot of their key: loaders on several hosts take disjoint slots (64 locks at most)."""
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def landing_dir(path: str | Path | None = None) -> Path:
    """`path`, else ``$STREAMKEEPER_LANDING``, else ``data/landing``."""
    return Path(path) if path else Path(os.environ.get(LANDING_ENV) or DEFAULT_LANDING)


def write_landing_file(landing: str | Path, event: Mapping[str, Any], delivery_id: str | None = None) -> Path:
    """Write one delivery durably (a directory: ``.tmp``, fsync, rename, fsync the directory; S3: a PUT).

    Args:
        landing: the landing area's root.
        event: the events columns (``received_at`` and ``occurred_at`` as ISO text or datetimes; missing
            ``received_at`` means now). ``vendor``, ``stream`` and ``event_id`` are required.
        delivery_id: the file's name (letters, digits, ``.``, ``_``, ``-``); a fresh one when None.

    Returns:
        The final path (on S3: the key under the prefix). Writing the same delivery_id again replaces the
        record (the store dedups anyway).
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
    key = f"{record['vendor']}/{received.strftime('%Y%m%d')}/{delivery_id}.json"
    open_storage(landing_location(landing)).put(
        [(key, json.dumps(record, separators=(",", ":"), default=str).encode())]
    )
    return Path(key) if is_s3(landing) else Path(landing) / key


def pending_files(landing: str | Path) -> Iterator[Path]:
    """Finished landing files of a directory, oldest day first, per vendor; skips ``.tmp`` and ``_rejected``."""
    for key in DirectoryStorage(landing).pending():
        yield Path(landing) / key


MAX_RECORD_BYTES = 256 * 1024 * 1024  # ours: far above the receiver's largest body (64 MiB)
_NEWER_KIND = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_ABOUT = ("vendor", "route", "delivery_id", "received_at", "detected_at")
"""What a record says of itself that its ``rejected_deliveries`` row keeps."""


class Poison(ValueError):
    """A landing record that cannot be loaded, and why (it is quarantined, the others load).

    Attributes:
        about: what the record says of itself (`_ABOUT`), when it could be read as a JSON object.
    """

    def __init__(self, reason: str, about: Mapping[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.about = dict(about or {})


@in_session
def load_landing(
    store: HistoryStore,
    landing: str | Path | None = None,
    *,
    max_events: int = 100_000,
    batch_size: int = 10_000,
    max_seconds: float | None = None,
) -> SourceReport:
    """Load finished landing records in batches; each batch's records are deleted after its commit.

    Event records go to ``events`` (`HistoryStore.load_events`), gap records (``kind: "gap"``) to
    ``event_gaps``, both in one transaction per batch. A record of another ``kind`` (a newer type, a plain
    name) is left in place. A record that cannot be loaded is **quarantined**: recorded in
    ``rejected_deliveries`` (vendor, route, received_at, reason, landing path) in the transaction of its
    batch, then moved to ``_rejected/`` with a ``.reason`` beside it; every other record of the batch loads.
    That covers a record that is not one (not JSON, not an object, a column missing or of the wrong type, a
    gap count beyond a BIGINT, over `MAX_RECORD_BYTES`) and one the store refuses when the batch is
    inserted: then the batch is split in halves and each loaded on its own, down to the one record that
    fails (its reason is the store's own error, never the aborted transaction's). An error that is not a
    record's (the disk, S3, the lock) ends the load with nothing quarantined; the records stay for the next
    run.

    `landing` is a directory or ``s3://bucket/prefix/`` (default ``$STREAMKEEPER_LANDING``). Records are
    claimed through the store (`HistoryStore.claims`, by slot of their key): loaders on several hosts never
    load one at the same time.
    """
    storage = open_storage(landing_location(landing))
    report = SourceReport(source="landing")
    watch = Stopwatch(max_seconds)
    batch = _Batch()
    with store.claims() as claims:
        for key in storage.pending():
            if report.received >= max_events or watch.expired:
                break
            if not claims.take(f"landing/{zlib.crc32(key.encode()) % CLAIM_SLOTS}"):
                continue  # another loader holds this record's slot
            try:
                item = _read(storage, key)
            except FileNotFoundError:
                continue  # another loader took it
            except Poison as poison:
                batch.poison.append(_quarantine_row(storage, key, str(poison), poison.about))
            else:
                if item is None:
                    continue  # a newer record type: not ours to load or delete
                batch.items.append(item)
            report.received += 1
            if batch.size >= batch_size:
                _commit(store, storage, report, batch)
                batch = _Batch()
        if batch.size:
            _commit(store, storage, report, batch)
    report.seconds = watch.elapsed
    return report


@dataclass
class _Item:
    """A readable landing record: its key, what it holds (an events row or a gap), what it says of itself."""

    key: str
    record: Row | EventGap
    about: dict[str, Any]


@dataclass
class _Batch:
    items: list[_Item] = field(default_factory=list)
    poison: list[_Poisoned] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.items) + len(self.poison)

    def streams(self) -> set[tuple[str, str]]:
        """The (vendor, stream) pairs its events and gaps write: what its writer holds across hosts."""
        return {
            (r.vendor, r.stream) if isinstance(r, EventGap) else (r["vendor"], r["stream"])
            for r in (item.record for item in self.items)
        }


def _read(storage: LandingStorage, key: str) -> _Item | None:
    """The record under `key`; None for a newer record type; `Poison` for what cannot be loaded;
    `FileNotFoundError` when it is gone."""
    try:
        data = storage.get(key, max_bytes=MAX_RECORD_BYTES)
    except RecordTooLarge as exc:
        raise Poison(str(exc)) from None
    except OSError as exc:  # e.g. no permission: it would fail every run, so it goes aside
        raise Poison(f"cannot read the file: {exc.strerror or exc}") from None
    if data is None:
        raise FileNotFoundError(key)
    try:
        record = json.loads(data)
    except RecursionError:
        raise Poison("not a landing record: JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise Poison(f"not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise Poison("not a landing record: not a JSON object")
    about = {name: record.get(name) for name in _ABOUT}
    kind = record.get("kind") or "event"
    try:
        if kind == "event":
            return _Item(key, landing_event(record), about)
        if kind == "gap":
            return _Item(key, _gap(record), about)
    except ValidationError as exc:
        raise Poison(f"{kind} record: {describe(exc)}", about) from None
    except ValueError as exc:
        raise Poison(f"{kind} record: {exc}", about) from None
    if isinstance(kind, str) and _NEWER_KIND.match(kind):
        return None
    raise Poison(f"not a landing record: kind {kind!r} is not a record type", about)


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
    for name in ("vendor", "stream", "subscription_id", "detail"):
        value = values.get(name)
        # duckdb 1.5 does not refuse such a VARCHAR: it fails an internal assertion and invalidates the
        # whole database instance (and DuckLake's aborts the process when closed), so it never gets there
        if isinstance(value, str) and holdable(value) != value:
            raise ValueError(f"{name} is not UTF-8 text (an unpaired surrogate)")
    return EventGap.model_validate(values)


def _commit(store: HistoryStore, storage: LandingStorage, report: SourceReport, batch: _Batch) -> None:
    """Load a batch in one transaction; then (committed) delete its records and move its poison aside.

    When the store refuses the batch for its data, each half is committed on its own, down to the records
    that fail, which are quarantined with the store's error.
    """
    try:
        with store.writer(streams=batch.streams()) as con:  # on a shared store: alone with these streams
            loaded, duplicates, gaps = _insert(store, con, batch.items)
            store.record_rejected([poisoned.row for poisoned in batch.poison], con=con)
    except Exception as exc:
        if not _data_error(exc) or not batch.items:
            raise
        if len(batch.items) == 1:
            item = batch.items[0]
            refused = _quarantine_row(storage, item.key, f"refused by the store: {_cause(exc)}", item.about)
            _commit(store, storage, report, _Batch(poison=[*batch.poison, refused]))
            return
        half = len(batch.items) // 2
        _commit(store, storage, report, _Batch(items=batch.items[:half], poison=batch.poison))
        _commit(store, storage, report, _Batch(items=batch.items[half:]))
        return
    report.loaded += loaded
    report.duplicates += duplicates
    report.gaps += gaps
    report.quarantined += len(batch.poison)
    report.batches += 1
    after_commit(report.source)
    storage.delete([item.key for item in batch.items])
    for poisoned in batch.poison:
        storage.reject(poisoned.key, poisoned.row.reason)


def _insert(store: HistoryStore, con: Any, items: list[_Item]) -> tuple[int, int, int]:
    """Insert the events (less those stored under a previous id) and the gaps; (loaded, dropped, gaps)."""
    rows = [item.record for item in items if isinstance(item.record, dict)]
    gaps = [item.record for item in items if isinstance(item.record, EventGap)]
    kept, _ = drop_stored_previous(con, rows)
    inserted = store.load_events(frame(kept), con=con) if kept else 0
    return inserted, len(rows) - inserted, _insert_gaps(con, gaps)


def _data_error(exc: BaseException | None) -> bool:
    """Whether the store refused a batch for what it holds (a record's fault), not for the disk or the lock."""
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


@dataclass(frozen=True)
class _Poisoned:
    """A record to move aside (its key) and its ``rejected_deliveries`` row."""

    key: str
    row: RejectedDelivery


def _quarantine_row(storage: LandingStorage, key: str, reason: str, about: Mapping[str, Any]) -> _Poisoned:
    """The ``rejected_deliveries`` row of a record moved aside: what it says of itself, if anything."""

    def text(name: str) -> str | None:
        value = about.get(name)
        return holdable(value) if isinstance(value, str) else None

    received = parse_time(about.get("received_at") or about.get("detected_at"))
    row = RejectedDelivery(
        vendor=text("vendor") or key.split("/", 1)[0],
        route=text("route"),
        delivery_id=text("delivery_id") or PurePosixPath(key).stem,
        received_at=received,
        reason=_printable(reason),
        landing_path=storage.rejected_path(key),
    )
    return _Poisoned(key, row)


def _printable(reason: str) -> str:
    """A reason as one printable line of at most 500 characters (it may quote a record's bytes)."""
    line = " ".join(reason.split())
    line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)
    return holdable(line if len(line) <= 500 else line[:497] + "...")


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


__all__ = [
    "DEFAULT_LANDING",
    "LANDING_ENV",
    "MAX_RECORD_BYTES",
    "landing_dir",
    "load_landing",
    "pending_files",
    "write_landing_file",
]
