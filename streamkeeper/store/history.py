"""`HistoryStore`: the one way into the DuckDB history file.

Writes are batches (DataFrames registered with DuckDB, then ``INSERT ... SELECT``), each in one
transaction, under an exclusive inter-process lock (see `lock`), on a connection opened for the batch and
closed after it: so overlapping flow runs in separate processes take turns instead of failing, and a
reader can open the file between two batches. Reads take the shared lock and return DataFrames, fully
fetched before the connection closes (DuckDB 2.0 empties a result still being read when the same
connection runs another query).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
from pydantic import BaseModel

from streamkeeper.errors import StoreError
from streamkeeper.store.lock import FileLock
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
from streamkeeper.vendors.http.calls import ApiCall

DEFAULT_PATH = Path("data/streamkeeper.duckdb")


def default_path() -> Path:
    """``$STREAMKEEPER_DB``, or ``data/streamkeeper.duckdb``."""
    return Path(os.environ.get("STREAMKEEPER_DB") or DEFAULT_PATH)


_migrated: set[Path] = set()
_migrated_lock = threading.Lock()


class HistoryStore:
    """The history store in one DuckDB file.

    Args:
        path: the DuckDB file (created with its directory when missing).
        lock_timeout: seconds a writer or reader waits for its turn before `StoreError`.
        flow_run_id: stamped on every row written (the Prefect flow run, when there is one).
    """

    def __init__(
        self, path: Path | str | None = None, lock_timeout: float = 300.0, flow_run_id: str | None = None
    ):
        self.path = Path(path) if path is not None else default_path()
        self.flow_run_id = flow_run_id
        self._lock = FileLock(self.path.with_name(self.path.name + ".lock"), timeout=lock_timeout)

    # -- connections ---------------------------------------------------------------------------------------
    @contextmanager
    def writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection inside one transaction, under the exclusive lock."""
        with self._lock.hold(exclusive=True):
            con = self._open(read_only=False)
            try:
                self._migrate(con)
                _run(con, "BEGIN TRANSACTION")
                try:
                    yield con
                except BaseException:
                    _run(con, "ROLLBACK")
                    raise
                _run(con, "COMMIT")
            finally:
                con.close()

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection under the shared lock (several readers at once; writers wait)."""
        if not self.path.exists() or self.path.resolve() not in _migrated:
            with self.writer():
                pass
        with self._lock.hold(exclusive=False):
            con = self._open(read_only=True)
            try:
                yield con
            finally:
                con.close()

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreError(
                    f"the history store {self.path} is open in another program that does not take "
                    f"streamkeeper's lock (close it, e.g. a duckdb shell, and retry)"
                ) from None
            raise StoreError(f"cannot open the history store {self.path}: {exc}") from None
        except duckdb.Error as exc:
            raise StoreError(f"cannot open the history store {self.path}: {exc}") from None
        _run(con, "SET TimeZone = 'UTC'")
        return con

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        key = self.path.resolve()
        with _migrated_lock:
            if key in _migrated:
                return
        _run(
            con,
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMPTZ)",
        )
        current = int(_run(con, "SELECT coalesce(max(version), 0) FROM schema_migrations")[0][0])
        if current > LATEST_VERSION:
            raise StoreError(
                f"the history store {self.path} has schema version {current}, newer than this "
                f"streamkeeper knows ({LATEST_VERSION}): upgrade streamkeeper"
            )
        for migration in MIGRATIONS:
            if migration.version <= current:
                continue
            _run(con, "BEGIN TRANSACTION")
            _run(con, migration.sql)
            _run(
                con,
                "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                [migration.version, migration.name, utcnow()],
            )
            _run(con, "COMMIT")
        with _migrated_lock:
            _migrated.add(key)

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

    def record_versions(self, versions: Sequence[SubscriptionVersion]) -> int:
        """Write new subscription versions, closing each subscription's current version. Returns the count."""
        if not versions:
            return 0
        frame = self._frame(versions)
        frame["valid_to"] = None
        frame["valid_to"] = frame["valid_to"].astype("datetime64[us, UTC]")
        with self.writer() as con:
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
        return len(frame)

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
        with self.writer() as con:
            self._append(con, "subscription_snapshots", self._frame(snapshots))
        return len(snapshots)

    def record_api_calls(self, calls: Sequence[ApiCall]) -> int:
        if not calls:
            return 0
        with self.writer() as con:
            self._append(con, "api_calls", self._frame(calls))
        return len(calls)

    def record_token_events(self, events: Sequence[TokenEvent]) -> int:
        if not events:
            return 0
        with self.writer() as con:
            self._append(con, "token_events", self._frame(events))
        return len(events)

    def record_onboarding_steps(self, steps: Sequence[OnboardingStep]) -> int:
        if not steps:
            return 0
        with self.writer() as con:
            self._append(con, "onboarding_steps", self._frame(steps))
        return len(steps)

    def record_gaps(self, gaps: Sequence[EventGap]) -> int:
        if not gaps:
            return 0
        frame = self._frame(gaps).drop(columns=["flow_run_id"])
        with self.writer() as con:
            self._append(con, "event_gaps", frame)
        return len(gaps)

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
        are dropped with an anti-join. Returns the number of new rows.
        """
        missing = [c for c in EVENT_COLUMNS if c not in events.columns]
        if missing:
            raise ValueError(f"events batch lacks columns: {', '.join(missing)}")
        frame = events[EVENT_COLUMNS].copy()
        frame["payload"] = [p if isinstance(p, str) or p is None else json.dumps(p) for p in frame["payload"]]
        frame["loaded_at"] = utcnow()
        frame["flow_run_id"] = self.flow_run_id
        if con is not None:
            return self._load_events(con, frame, cursors)
        with self.writer() as writer:
            return self._load_events(writer, frame, cursors)

    def _load_events(
        self, con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, cursors: dict[str, str] | None
    ) -> int:
        inserted = 0
        if len(frame):
            con.register("batch", frame)
            try:
                result = _run(
                    con,
                    """
                    INSERT INTO events BY NAME
                    SELECT b.* FROM (
                        SELECT * FROM batch
                        QUALIFY row_number() OVER (PARTITION BY vendor, stream, event_id ORDER BY received_at) = 1
                    ) AS b
                    ANTI JOIN events AS e
                      ON e.vendor = b.vendor AND e.stream = b.stream AND e.event_id = b.event_id
                    """,
                )
                inserted = int(result[0][0])  # DuckDB answers an INSERT with its row count
            finally:
                con.unregister("batch")
        if cursors:
            self._set_cursors(con, cursors)
        return inserted

    # -- small keyed state ---------------------------------------------------------------------------------
    def _set_cursors(self, con: duckdb.DuckDBPyConnection, cursors: dict[str, str]) -> None:
        frame = pd.DataFrame({"source": list(cursors), "position": list(cursors.values())})
        frame["updated_at"] = utcnow()
        con.register("cursor_batch", frame)
        try:
            _run(con, "INSERT OR REPLACE INTO cursors SELECT source, position, updated_at FROM cursor_batch")
        finally:
            con.unregister("cursor_batch")

    def set_cursors(self, cursors: dict[str, str]) -> None:
        """Store source positions (PubNub timetokens, Kinesis sequence numbers, pull offsets)."""
        if cursors:
            with self.writer() as con:
                self._set_cursors(con, cursors)

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
        with self.writer() as con:
            _run(
                con,
                "INSERT OR REPLACE INTO http_cache VALUES (?, ?, ?, ?, ?, ?)",
                [vendor, account, resource, etag, json.dumps(body, default=str), utcnow()],
            )


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
