"""The embedded backend: one DuckDB file on this host, writers serialised by a file lock (see `lock`).

DuckDB allows one read-write process per file and has no busy timeout, so every connection is opened for
one batch under ``<db>.lock`` (exclusive to write, shared to read) and closed after it. Inside a `session`
(an ingest drain) the writer keeps its connection and the lock from batch to batch instead, which saves the
open, the catalog read and the checkpoint of each batch; it gives both up between batches as soon as
another process (or another store object of this one) waits for the lock, and takes them again for its
next batch, so readers still get in between batches. A file written by a
newer DuckDB (2.x) cannot be opened by this one (1.5): it is refused with one line saying how to export it.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager

import duckdb

from streamkeeper.errors import StoreError
from streamkeeper.store.backend import Backend, run_sql
from streamkeeper.store.lock import FileLock
from streamkeeper.store.settings import StoreSettings


class EmbeddedBackend(Backend):
    """The history in one DuckDB file; all writes serialised by ``<db>.lock``."""

    kind = "embedded"

    def __init__(self, settings: StoreSettings, lock_timeout: float = 300.0) -> None:
        super().__init__(settings, lock_timeout)
        self.path = settings.path
        self._lock = FileLock(self.path.with_name(self.path.name + ".lock"), timeout=lock_timeout)
        self._held: _HeldWriter | None = None

    @property
    def identity(self) -> str:
        return str(self.path.resolve())

    def exists(self) -> bool:
        return self.path.exists()

    def holds_all_locks(self) -> bool:
        return True

    @contextmanager
    def session(self) -> Iterator[None]:
        if self._held is not None:  # nested: the outer session keeps the connection
            yield
            return
        held = _HeldWriter(self)
        self._held = held
        try:
            yield
        finally:
            self._held = None
            held.close()

    @contextmanager
    def connect(self, *, write: bool, locks: Collection[str] = ()) -> Iterator[duckdb.DuckDBPyConnection]:
        held = self._held
        if held is not None:
            with held.use() as con:
                yield con
            return
        with self._lock.hold(exclusive=write):
            con = self._open(read_only=not write)
            try:
                yield con
            finally:
                con.close()

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            text = str(exc)
            if "created with an newer version" in text or "newer version of DuckDB" in text:
                raise StoreError(
                    f"the history store {self.path} was written by a newer DuckDB (2.x) than this "
                    f"streamkeeper's {duckdb.__version__}, which cannot read it: export it with that DuckDB "
                    f"(duckdb {self.path} -c \"EXPORT DATABASE 'history-export'\") and load the export into a "
                    f"new file here (IMPORT DATABASE 'history-export')"
                ) from None
            if "lock" in text.lower():
                raise StoreError(
                    f"the history store {self.path} is open in another program that does not take "
                    f"streamkeeper's lock (close it, e.g. a duckdb shell, and retry)"
                ) from None
            raise StoreError(f"cannot open the history store {self.path}: {text.splitlines()[0]}") from None
        except duckdb.Error as exc:
            raise StoreError(
                f"cannot open the history store {self.path}: {str(exc).splitlines()[0]}"
            ) from None
        _configure(con)
        return con


def _configure(con: duckdb.DuckDBPyConnection) -> None:
    run_sql(con, "SET TimeZone = 'UTC'")
    run_sql(con, "SET enable_progress_bar = false")  # no bar on stdout (a report's CSV) for a long query


WATCH_SECONDS = 0.05
"""How often a held writer looks for a process waiting for the lock while it is between batches."""


class _HeldWriter:
    """A session's read-write connection and exclusive lock, kept across batches, given up when waited for.

    Each use (a batch, a read) gets its own cursor on the connection, one at a time. Between uses a watcher
    thread probes the lock's turnstile every `WATCH_SECONDS`; when another holder waits in it, the
    connection is closed (DuckDB checkpoints) and the lock released; the next use takes both again,
    queueing behind the waiter like any writer.
    """

    def __init__(self, backend: EmbeddedBackend) -> None:
        self.backend = backend
        self.mutex = threading.RLock()
        self.con: duckdb.DuckDBPyConnection | None = None
        self.fd: int | None = None
        self.stop = threading.Event()
        self.watcher = threading.Thread(target=self._watch, name="streamkeeper-store-session", daemon=True)
        self.watcher.start()

    @contextmanager
    def use(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.mutex:
            if self.con is None:
                self.fd = self.backend._lock.acquire(exclusive=True)
                try:
                    self.con = self.backend._open(read_only=False)
                except BaseException:
                    self._release()
                    raise
            cursor = self.con.cursor()
            try:
                _configure(cursor)
                yield cursor
            finally:
                cursor.close()

    def _watch(self) -> None:
        while not self.stop.wait(WATCH_SECONDS):
            if not self.mutex.acquire(blocking=False):
                continue  # a batch is running: it keeps the lock until it ends
            try:
                if self.con is not None and self.backend._lock.waited_for():
                    self._release()
            finally:
                self.mutex.release()

    def _release(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None
        if self.fd is not None:
            self.backend._lock.release(self.fd)
            self.fd = None

    def close(self) -> None:
        self.stop.set()
        self.watcher.join()
        with self.mutex:
            self._release()
