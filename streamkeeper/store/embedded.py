"""The embedded backend: one DuckDB file on this host, writers serialised by a file lock (see `lock`).

DuckDB allows one read-write process per file and has no busy timeout, so every connection is opened for
one batch under ``<db>.lock`` (exclusive to write, shared to read) and closed after it. A file written by a
newer DuckDB (2.x) cannot be opened by this one (1.5): it is refused with one line saying how to export it.
"""

from __future__ import annotations

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

    @property
    def identity(self) -> str:
        return str(self.path.resolve())

    def exists(self) -> bool:
        return self.path.exists()

    def holds_all_locks(self) -> bool:
        return True

    @contextmanager
    def connect(self, *, write: bool, locks: Collection[str] = ()) -> Iterator[duckdb.DuckDBPyConnection]:
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
        run_sql(con, "SET TimeZone = 'UTC'")
        run_sql(con, "SET enable_progress_bar = false")  # no bar on stdout (a report's CSV) for a long query
        return con
