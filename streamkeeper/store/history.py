"""`HistoryStore`: the one way into the history, whichever backend holds it.

The backend is the embedded DuckDB file (default, `embedded`) or DuckLake (`lake`), chosen by
`StoreSettings` (``STREAMKEEPER_STORE``, see `settings`); both have the same tables, migrations, views and
reports, and this class behaves the same on both.

Writes are batches (DataFrames registered with DuckDB, then ``INSERT ... SELECT``), each in one
transaction on a connection opened for the batch and closed after it. Writers that could step on each
other are serialised by the backend: on the embedded file every writer takes the file lock for its batch;
on the lake, a writer holds the locks of what it writes by key (the streams of an events batch, the
cursors it moves, the cache entries it replaces) and DuckLake's snapshots keep the rest apart. A batch whose
commit loses a race to another writer's (DuckLake's conflict detection) runs again on a fresh snapshot.
Reads return DataFrames, fully fetched before the connection closes.
"""

from __future__ import annotations

import json
import random
import threading
import time
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import numpy as np
import pandas as pd
from pydantic import BaseModel

from streamkeeper.errors import StoreError
from streamkeeper.store.backend import SCHEMA_LOCK, Backend, Claims
from streamkeeper.store.embedded import EmbeddedBackend
from streamkeeper.store.lake import LakeBackend
from streamkeeper.store.records import (
    EVENT_COLUMNS,
    EventGap,
    OnboardingStep,
    RejectedDelivery,
    Snapshot,
    SubscriptionVersion,
    TokenEvent,
    utcnow,
)
from streamkeeper.store.schema import LATEST_VERSION, MIGRATIONS
from streamkeeper.store.settings import DEFAULT_PATH, StoreSettings
from streamkeeper.vendors.http.calls import ApiCall

__all__ = ["DEFAULT_PATH", "HistoryStore", "StoreConflict", "default_path", "open_backend"]

T = TypeVar("T")

LOCK_SLOTS = 256
"""Keys (streams, cursors, cache entries) share this many locks per kind: a batch holds at most 256 each."""
DEDUP_TOLERANCE = pd.Timedelta(seconds=60)
"""How far apart two deliveries' own times (``occurred_at``) may be and still be compared by the dedup."""
KEY_BUCKET = pd.Timedelta(seconds=60)
"""The dedup reads ``event_keys`` in ranges of whole buckets of this width around a batch's event times."""
MAX_KEY_RANGES = 16
"""At most this many ranges of ``event_keys`` per batch: the closest ones are merged beyond it."""
KEY_SQL = "concat_ws(chr(31), vendor, stream, event_id)"
"""What ``event_keys`` hashes for a delivery's key (migration 8): md5 as two UBIGINTs, ``k1`` its
``md5_number_upper`` and ``k2`` its ``md5_number_lower`` (computed from one ``md5_number``)."""
WRITE_ATTEMPTS = 8
"""How often a batch runs when its commits keep losing races (DuckLake conflicts) before `StoreConflict`."""


def default_path() -> Path:
    """``$STREAMKEEPER_STORE`` or ``$STREAMKEEPER_DB`` as a path, or ``data/streamkeeper.duckdb``."""
    return StoreSettings.from_env().path


def open_backend(settings: StoreSettings, lock_timeout: float = 300.0) -> Backend:
    """The backend `settings` name."""
    if settings.kind == "lake":
        return LakeBackend(settings, lock_timeout)
    return EmbeddedBackend(settings, lock_timeout)


class StoreConflict(StoreError):
    """A commit lost a race with another writer's commit (DuckLake); running the batch again may succeed."""


def key_ranges(times: pd.Series, tolerance: pd.Timedelta) -> list[tuple[str, str]]:
    """The few time ranges (ISO text, UTC) covering every time in `times` within `tolerance`.

    Times fall in buckets of `KEY_BUCKET`; adjacent buckets make one range; beyond `MAX_KEY_RANGES`
    ranges, the ones separated by the smallest gaps are merged. NaT (an untimed event) is left out.
    """
    values = times.dropna()
    if values.empty:
        return []
    micros = (
        values.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[us]").astype(np.int64)
    )
    width = KEY_BUCKET // pd.Timedelta(microseconds=1)
    buckets = np.unique(micros // width)
    gaps = np.diff(buckets)
    splits = np.flatnonzero(gaps > 1)
    if len(splits) >= MAX_KEY_RANGES:  # keep the widest gaps only
        splits = np.sort(splits[np.argsort(gaps[splits], kind="stable")[-(MAX_KEY_RANGES - 1) :]])
    starts = np.concatenate([[buckets[0]], buckets[splits + 1]])
    ends = np.concatenate([buckets[splits], [buckets[-1]]])
    pad = tolerance // pd.Timedelta(microseconds=1)
    return [
        (_iso(int(start) * width - pad), _iso((int(end) + 1) * width + pad))
        for start, end in zip(starts, ends, strict=True)
    ]


def _iso(micros: int) -> str:
    return pd.Timestamp(micros, unit="us", tz="UTC").isoformat()


def slot_locks(kind: str, keys: Iterable[str]) -> set[str]:
    """The lock names of `keys` of one kind (``events``, ``cursor``, ``cache``): ``<kind>/<slot>``."""
    return {f"{kind}/{zlib.crc32(key.encode()) % LOCK_SLOTS}" for key in keys}


def stream_locks(streams: pd.DataFrame | Iterable[tuple[str, str]] | None) -> set[str]:
    """The locks of the (vendor, stream) pairs a batch writes events or gaps for."""
    if streams is None:
        return set()
    if isinstance(streams, pd.DataFrame):
        if streams.empty:
            return set()
        pairs: Iterable[tuple[str, str]] = (
            streams[["vendor", "stream"]].drop_duplicates().itertuples(index=False, name=None)
        )
    else:
        pairs = streams
    return slot_locks("events", (f"{vendor}\x00{stream}" for vendor, stream in pairs))


_migrated: set[str] = set()
_migrated_lock = threading.Lock()


class HistoryStore:
    """The history store: an embedded DuckDB file or a DuckLake lakehouse.

    Args:
        path: the store: a DuckDB file path (created with its directory when missing), a DuckLake attach
            string (``ducklake:postgres:...``), or `StoreSettings`; None: ``$STREAMKEEPER_STORE``, else
            ``$STREAMKEEPER_DB``, else ``data/streamkeeper.duckdb``.
        lock_timeout: seconds a writer or reader waits for its turn before `StoreError`.
        flow_run_id: stamped on every row written (the Prefect flow run, when there is one).
    """

    def __init__(
        self,
        path: Path | str | StoreSettings | None = None,
        lock_timeout: float = 300.0,
        flow_run_id: str | None = None,
    ):
        self.settings = path if isinstance(path, StoreSettings) else StoreSettings.from_env(path)
        self.backend = open_backend(self.settings, lock_timeout)
        self.flow_run_id = flow_run_id
        self._held: dict[int, Collection[str] | None] = {}

    @property
    def path(self) -> Path:
        """The embedded backend's DuckDB file (a DuckLake store has none: see `location`)."""
        if self.settings.kind != "embedded":
            raise StoreError(f"the history store {self.location} is a DuckLake lakehouse, not a file")
        return self.settings.path

    @property
    def location(self) -> str:
        """The store for messages: its file, or its catalog (never a password) and data path."""
        return self.backend.describe()

    # -- connections ---------------------------------------------------------------------------------------
    @contextmanager
    def writer(
        self,
        streams: pd.DataFrame | Iterable[tuple[str, str]] | None = None,
        cursors: Iterable[str] | None = None,
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection inside one transaction, serialised with the writers it could race.

        Args:
            streams: the events (a frame with ``vendor`` and ``stream``) or (vendor, stream) pairs this
                transaction loads with ``load_events(..., con=...)`` or dedups gaps of: the writer holds
                their locks across all hosts (the embedded file's lock already serialises every writer).
            cursors: the cursors this transaction moves (``load_events(..., cursors=..., con=...)``).
        """
        yield from self._writer(stream_locks(streams) | slot_locks("cursor", cursors or ()))

    def _writer(self, locks: Collection[str]) -> Iterator[duckdb.DuckDBPyConnection]:
        self._ensure_schema()
        with self.backend.connect(write=True, locks=locks) as con:
            self._held[id(con)] = None if self.backend.holds_all_locks() else frozenset(locks)
            try:
                _run(con, "BEGIN TRANSACTION")
                try:
                    yield con
                except BaseException:
                    _rollback(con)
                    raise
                try:
                    _run(con, "COMMIT")
                except duckdb.Error as exc:
                    _rollback(con)
                    if self.backend.is_conflict(exc):
                        raise StoreConflict(
                            f"the history store {self.location}: this batch conflicted with another writer's "
                            f"commit; run it again"
                        ) from None
                    raise
            finally:
                self._held.pop(id(con), None)

    def _write(self, action: Callable[[duckdb.DuckDBPyConnection], T], locks: Collection[str] = ()) -> T:
        """Run `action` in a writer holding `locks`; run it again on a fresh snapshot when it loses a race."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                with contextmanager(self._writer)(locks) as con:
                    result = action(con)
                return result
            except StoreConflict:
                if attempt == WRITE_ATTEMPTS:
                    raise
                time.sleep(random.uniform(0.0, 0.05 * 2**attempt))
        raise AssertionError("unreachable")

    @contextmanager
    def session(self) -> Iterator[HistoryStore]:
        """Keep the writer's connection across the batches of the block (an ingest drain: one
        `load_events` per batch).

        On the embedded file, one connection and the file lock are held from batch to batch (no open,
        catalog read or checkpoint per batch) and given up between two batches as soon as another process
        waits for the lock, so readers and other writers still get their turn between batches. Each batch
        is still its own transaction. On DuckLake, each batch has its own connection anyway (a cursor on
        the process's one attached instance).
        """
        self._ensure_schema()
        with self.backend.session():
            yield self

    def claims(self) -> AbstractContextManager[Claims]:
        """Names to hold alone across all hosts until the block ends: ``claims.take(name)`` is True for the
        one process that got it (a loader claiming landing records). On the embedded file, always True."""
        return self.backend.claims()

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection (embedded: under the shared lock, several readers at once, writers wait)."""
        self._ensure_schema()
        with self.backend.connect(write=False) as con:
            yield con

    def _ensure_schema(self) -> None:
        key = self.backend.identity
        with _migrated_lock:
            if key in _migrated and self.backend.exists():
                return
        with self.backend.connect(write=True, locks=[SCHEMA_LOCK]) as con:
            self._migrate(con)
        with _migrated_lock:
            _migrated.add(key)

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        ddl = self.backend.ddl
        _run(
            con,
            ddl(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMPTZ)"
            ),
        )
        current = int(_run(con, "SELECT coalesce(max(version), 0) FROM schema_migrations")[0][0])
        if current > LATEST_VERSION:
            raise StoreError(
                f"the history store {self.location} has schema version {current}, newer than this "
                f"streamkeeper knows ({LATEST_VERSION}): upgrade streamkeeper"
            )
        for migration in MIGRATIONS:
            if migration.version <= current:
                continue
            _run(con, "BEGIN TRANSACTION")
            _run(con, ddl(migration.sql))
            _run(
                con,
                "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                [migration.version, migration.name, utcnow()],
            )
            _run(con, "COMMIT")

    # -- reads ---------------------------------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run a read-only query and return the whole result."""
        with self.reader() as con:
            return con.execute(sql, params or []).df()  # .df() fetches the whole result

    def schema_version(self) -> int:
        return int(self.query("SELECT max(version) AS v FROM schema_migrations")["v"].iloc[0])

    # -- writes --------------------------------------------------------------------------------------------
    def _frame(self, rows: Sequence[BaseModel], extra: dict[str, Any] | None = None) -> pd.DataFrame:
        frame = pd.DataFrame([row.model_dump() for row in rows])
        frame["flow_run_id"] = self.flow_run_id
        for key, value in (extra or {}).items():
            frame[key] = value
        return frame

    def _append(self, con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
        columns = ", ".join(f'"{c}"' for c in frame.columns)
        con.register("batch", frame)
        try:
            _run(con, f"INSERT INTO {table} ({columns}) SELECT {columns} FROM batch")
        finally:
            con.unregister("batch")

    def _append_rows(self, table: str, frame: pd.DataFrame) -> int:
        """Append a batch to `table` in its own transaction (appends need no lock)."""
        self._write(lambda con: self._append(con, table, frame))
        return len(frame)

    def record_versions(self, versions: Sequence[SubscriptionVersion]) -> int:
        """Write new subscription versions, closing each subscription's current version. Returns the count."""
        if not versions:
            return 0
        frame = self._frame(versions)
        frame["valid_to"] = None
        frame["valid_to"] = frame["valid_to"].astype("datetime64[us, UTC]")
        keys = {f"{v.vendor}\x00{v.account}\x00{v.subscription_id}" for v in versions}
        self._write(lambda con: self._record_versions(con, frame), locks=slot_locks("subscription", keys))
        return len(frame)

    def _record_versions(self, con: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> None:
        con.register("batch", frame)
        try:
            _run(
                con,
                """
                UPDATE subscriptions AS s SET valid_to = b.valid_from
                FROM (SELECT vendor, account, subscription_id, min(valid_from) AS valid_from
                      FROM batch GROUP BY ALL) AS b
                WHERE s.vendor = b.vendor AND s.account = b.account
                  AND s.subscription_id = b.subscription_id AND s.valid_to IS NULL
                """,
            )
            columns = ", ".join(f'"{c}"' for c in frame.columns)
            # several versions of one subscription in one batch: all but the last are closed at once
            _run(
                con,
                f"""
                INSERT INTO subscriptions ({columns})
                SELECT * REPLACE (
                    lead(valid_from) OVER (PARTITION BY vendor, account, subscription_id
                                           ORDER BY valid_from) AS valid_to)
                FROM (SELECT {columns} FROM batch)
                """,
            )
        finally:
            con.unregister("batch")

    def current_subscriptions(self, vendor: str | None = None, account: str | None = None) -> pd.DataFrame:
        """The current version of every live subscription, optionally of one vendor and account."""
        sql = "SELECT * FROM current_subscriptions WHERE 1=1"
        params: list[Any] = []
        if vendor:
            sql += " AND vendor = ?"
            params.append(vendor)
        if account:
            sql += " AND account = ?"
            params.append(account)
        return self.query(sql + " ORDER BY vendor, account, subscription_id", params)

    def record_snapshots(self, snapshots: Sequence[Snapshot]) -> int:
        if not snapshots:
            return 0
        return self._append_rows("subscription_snapshots", self._frame(snapshots))

    def record_api_calls(self, calls: Sequence[ApiCall]) -> int:
        if not calls:
            return 0
        return self._append_rows("api_calls", self._frame(calls))

    def record_token_events(self, events: Sequence[TokenEvent]) -> int:
        if not events:
            return 0
        return self._append_rows("token_events", self._frame(events))

    def record_onboarding_steps(self, steps: Sequence[OnboardingStep]) -> int:
        if not steps:
            return 0
        return self._append_rows("onboarding_steps", self._frame(steps))

    def record_gaps(self, gaps: Sequence[EventGap]) -> int:
        if not gaps:
            return 0
        return self._append_rows("event_gaps", self._frame(gaps).drop(columns=["flow_run_id"]))

    def record_rejected(
        self, rejected: Sequence[RejectedDelivery], con: duckdb.DuckDBPyConnection | None = None
    ) -> int:
        """Record quarantined deliveries, once per ``landing_path`` (a file quarantined again after a crash
        between the commit and the move is kept once). In `con`'s transaction when given."""
        if not rejected:
            return 0
        frame = self._frame(rejected)
        frame["received_at"] = pd.to_datetime(frame["received_at"], utc=True)
        if con is None:
            with self.writer() as writer:
                return self._record_rejected(writer, frame)
        return self._record_rejected(con, frame)

    def _record_rejected(self, con: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> int:
        con.register("rejected_batch", frame)
        try:
            result = _run(
                con,
                """
                INSERT INTO rejected_deliveries BY NAME
                SELECT * FROM rejected_batch AS r
                WHERE NOT EXISTS (SELECT 1 FROM rejected_deliveries AS d WHERE d.landing_path = r.landing_path)
                """,
            )
        finally:
            con.unregister("rejected_batch")
        return int(result[0][0])

    def load_events(
        self,
        events: pd.DataFrame,
        cursors: dict[str, str] | None = None,
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> int:
        """Insert a batch of events, each delivery once, and move source cursors in the same transaction.

        Duplicates within the batch and against what is already stored (same vendor, stream and event_id)
        are dropped. Returns the number of new rows. With `con` (a `writer`), the rows join that
        transaction, whose writer must hold the batch's streams (``writer(streams=events)``).
        """
        missing = [c for c in EVENT_COLUMNS if c not in events.columns]
        if missing:
            raise ValueError(f"events batch lacks columns: {', '.join(missing)}")
        frame = events[EVENT_COLUMNS].copy()
        if frame["payload"].dtype == object:  # dicts or lists to JSON text; text columns scan faster
            frame["payload"] = pd.Series(
                [p if isinstance(p, str) or p is None else json.dumps(p) for p in frame["payload"]],
                index=frame.index,
                dtype="str",
            )
        frame["loaded_at"] = utcnow()
        frame["flow_run_id"] = self.flow_run_id
        locks: set[str] = set()
        if not self.backend.holds_all_locks():  # the embedded file's lock serialises every writer
            locks = stream_locks(frame) | slot_locks("cursor", cursors or {})
        if con is not None:
            self._check_held(con, locks)
            return self._load_events(con, frame, cursors)
        return self._write(lambda writer: self._load_events(writer, frame, cursors), locks=locks)

    def _check_held(self, con: duckdb.DuckDBPyConnection, locks: set[str]) -> None:
        if self.backend.holds_all_locks():
            return
        held = self._held.get(id(con), frozenset())
        if held is not None and not locks <= set(held):
            raise StoreError(
                "load_events(con=...) on a writer that does not hold the batch's streams and cursors: open "
                "it with HistoryStore.writer(streams=events, cursors=cursors)"
            )

    def _load_events(
        self, con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, cursors: dict[str, str] | None
    ) -> int:
        inserted = self._insert_new_events(con, frame) if len(frame) else 0
        if cursors:
            self._set_cursors(con, cursors)
        return inserted

    def _insert_new_events(self, con: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> int:
        """Insert the rows of `frame` whose (vendor, stream, event_id) is not stored yet; return how many.

        The one place the dedup happens, correct because the caller holds the batch's streams (no other
        writer adds those keys meanwhile). Each stored delivery has a row in ``event_keys``: a 128-bit hash
        of its key and ``dedup_at``, the event's own time (``occurred_at``: the vendor's time, or the
        queue's send time, which every re-delivery carries again; NULL when the event has none). A batch
        is anti-joined only against the keys whose ``dedup_at`` lies within `DEDUP_TOLERANCE` of its own
        events' times (`key_ranges`: a few ranges, each one scan that zone maps or DuckLake's file
        statistics prune), plus the untimed keys when the batch has untimed events. So a commit reads what
        lies near its events in time, whatever the table's size, and a re-delivery of an old event, which
        carries its old time, is checked against the keys of that time: it is never stored twice, however
        late it comes. What is not caught: a vendor re-sending an event under the same id with a time
        moved by more than `DEDUP_TOLERANCE`, or once with a time and once without.
        """
        received = pd.to_datetime(frame["received_at"], utc=True)
        if (
            not received.is_monotonic_increasing
        ):  # rows in received order: the first of a key is its least _row
            frame = frame.iloc[np.argsort(received.to_numpy(), kind="stable")]
        frame = frame.assign(_row=np.arange(len(frame), dtype=np.int64))
        occurred = pd.to_datetime(frame["occurred_at"], utc=True)
        scans = [
            f"SELECT k1, k2 FROM event_keys WHERE dedup_at BETWEEN TIMESTAMPTZ '{low}' AND TIMESTAMPTZ '{high}'"
            for low, high in key_ranges(occurred, DEDUP_TOLERANCE)
        ]
        if occurred.isna().any():
            scans.append("SELECT k1, k2 FROM event_keys WHERE dedup_at IS NULL")
        columns = ", ".join(f'"{c}"' for c in frame.columns if c != "_row")
        con.register("batch", frame)
        try:
            # the batch's keys, each once (its first received delivery): a GROUP BY, far cheaper in DuckDB
            # than a window over a small batch
            _run(
                con,
                f"""
                CREATE OR REPLACE TEMP TABLE batch_new AS
                SELECT k1, k2, min(_row) AS _row, arg_min(dedup_at, _row) AS dedup_at
                FROM (SELECT _row, occurred_at::TIMESTAMPTZ AS dedup_at,
                             (h & 18446744073709551615::UHUGEINT)::UBIGINT AS k1, (h >> 64)::UBIGINT AS k2
                      FROM (SELECT _row, occurred_at, md5_number({KEY_SQL}) AS h FROM batch))
                GROUP BY k1, k2
                """,
            )
            # less those stored: the keys near the batch's times, probed against the batch's (a hash table
            # of the batch, not of the keys read)
            _run(
                con,
                f"""
                DELETE FROM batch_new WHERE (k1, k2) IN (
                    SELECT (e.k1, e.k2) FROM ({" UNION ALL ".join(scans)}) AS e
                    WHERE e.k1 IN (SELECT k1 FROM batch_new))
                """,
            )
            try:
                result = _run(
                    con,
                    f"INSERT INTO events ({columns}) SELECT {columns} FROM batch "
                    "WHERE _row IN (SELECT _row FROM batch_new)",
                )
                _run(con, "INSERT INTO event_keys SELECT k1, k2, dedup_at FROM batch_new ORDER BY dedup_at")
            finally:
                _run(con, "DROP TABLE IF EXISTS batch_new")
            return int(result[0][0])  # DuckDB answers an INSERT with its row count
        finally:
            con.unregister("batch")

    # -- small keyed state ---------------------------------------------------------------------------------
    def _set_cursors(self, con: duckdb.DuckDBPyConnection, cursors: dict[str, str]) -> None:
        """Append one move per cursor, numbered after its last (the writer holds the cursors' locks)."""
        frame = pd.DataFrame({"source": list(cursors), "position": list(cursors.values())})
        frame["updated_at"] = utcnow()
        con.register("cursor_batch", frame)
        try:
            _run(
                con,
                """
                INSERT INTO cursor_moves (source, position, updated_at, move)
                SELECT b.source, b.position, b.updated_at, coalesce(m.move, 0) + 1
                FROM cursor_batch AS b
                LEFT JOIN (SELECT source, max(move) AS move FROM cursor_moves
                           WHERE source IN (SELECT source FROM cursor_batch) GROUP BY source) AS m USING (source)
                """,
            )
        finally:
            con.unregister("cursor_batch")

    def set_cursors(self, cursors: dict[str, str]) -> None:
        """Store source positions (PubNub timetokens, Kinesis sequence numbers, pull offsets)."""
        if cursors:
            self._write(lambda con: self._set_cursors(con, cursors), locks=slot_locks("cursor", cursors))

    def cursors(self, prefix: str = "") -> dict[str, str]:
        """Stored source positions whose key starts with `prefix`."""
        frame = self.query("SELECT source, position FROM cursors WHERE starts_with(source, ?)", [prefix])
        return dict(zip(frame["source"], frame["position"], strict=True))

    def cache_get(self, vendor: str, account: str, resource: str) -> tuple[str | None, Any]:
        """The last ETag and body seen for a vendor resource (for conditional GETs)."""
        frame = self.query(
            "SELECT etag, body FROM http_cache WHERE vendor = ? AND account = ? AND resource = ?",
            [vendor, account, resource],
        )
        if frame.empty:
            return None, None
        body = frame["body"].iloc[0]
        return frame["etag"].iloc[0], json.loads(body) if isinstance(body, str) else body

    def cache_put(self, vendor: str, account: str, resource: str, etag: str | None, body: Any) -> None:
        frame = pd.DataFrame(
            [
                {
                    "vendor": vendor,
                    "account": account,
                    "resource": resource,
                    "etag": etag,
                    "body": json.dumps(body, default=str),
                    "fetched_at": utcnow(),
                }
            ]
        )
        key = f"{vendor}\x00{account}\x00{resource}"
        self._write(
            lambda con: _merge(con, "http_cache", frame, keys=["vendor", "account", "resource"]),
            locks=slot_locks("cache", [key]),
        )


def _merge(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, keys: list[str]) -> None:
    """Insert or replace rows of `table` by `keys` (``MERGE``: DuckLake has no keys for INSERT OR REPLACE)."""
    on = " AND ".join(f't."{k}" = s."{k}"' for k in keys)
    sets = ", ".join(f'"{c}" = s."{c}"' for c in frame.columns if c not in keys)
    con.register("merge_batch", frame)
    try:
        _run(
            con,
            f"MERGE INTO {table} AS t USING merge_batch AS s ON {on} "
            f"WHEN MATCHED THEN UPDATE SET {sets} WHEN NOT MATCHED THEN INSERT BY NAME",
        )
    finally:
        con.unregister("merge_batch")


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    with suppress(duckdb.Error):  # a failed commit has already ended the transaction
        _run(con, "ROLLBACK")


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None) -> list[Any]:
    """Execute and fetch to the end: DuckDB 2.0 refuses other work while a result is unfinished."""
    return con.execute(sql, params or []).fetchall()


def as_utc(value: datetime | None) -> datetime | None:
    """A pandas/duckdb timestamp as an aware datetime (or None)."""
    if value is None or pd.isna(value):
        return None
    return (
        pd.Timestamp(value).tz_convert("UTC").to_pydatetime()
        if pd.Timestamp(value).tzinfo
        else pd.Timestamp(value).tz_localize("UTC").to_pydatetime()
    )
