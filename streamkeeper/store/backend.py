"""What a history-store backend gives `HistoryStore`: connections, serialisation of writers, and its dialect.

Two backends, one behaviour (same tables, migrations, views and reports):

- `streamkeeper.store.embedded.EmbeddedBackend`: one DuckDB file on this host; every writer takes an
  exclusive file lock for its batch, so all writes are serialised and `locks` need not be named.
- `streamkeeper.store.lake.LakeBackend`: DuckLake, its catalog in PostgreSQL and its Parquet files on S3 or a
  shared directory, written by workers on many hosts at once. Writers are serialised only where they must
  be, by the named `locks` (PostgreSQL advisory locks on the catalog); snapshot isolation does the rest, and
  a commit that DuckLake finds in conflict with another is reported by `is_conflict` so the store can redo it.

Lock names are the store's (``schema``, ``events/<slot>``): a backend maps them to its own mechanism.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import duckdb

from streamkeeper.store.settings import StoreSettings


class Claims:
    """Names this process holds alone until the claims end (another process's `take` of one is False)."""

    def take(self, name: str) -> bool:
        return True


SCHEMA_LOCK = "schema"
"""Held while migrations run (one host migrates; the others wait, then find the schema current)."""


class Backend(ABC):
    """One kind of history store.

    Args:
        settings: where the store is.
        lock_timeout: seconds a writer waits for its turn before `StoreError`.
    """

    kind: str

    def __init__(self, settings: StoreSettings, lock_timeout: float = 300.0) -> None:
        self.settings = settings
        self.lock_timeout = lock_timeout

    @property
    @abstractmethod
    def identity(self) -> str:
        """A key naming this store (its migrations are checked once per process and identity)."""

    def describe(self) -> str:
        """The store for messages: a path, or the catalog without its password."""
        return self.settings.describe()

    def exists(self) -> bool:
        """Whether the store may already hold a schema (False: it must be created before a read)."""
        return True

    @abstractmethod
    def connect(
        self, *, write: bool, locks: Collection[str] = ()
    ) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A connection whose default catalog is the store, closed (and its locks released) on exit.

        Args:
            write: a writer's connection: serialised with other writers as the backend must (see `locks`).
            locks: what this writer must hold alone across all hosts for its whole transaction.
        """

    def session(self) -> AbstractContextManager[None]:
        """Keep what each batch would open (a connection, a lock) across the batches of the block, where
        the backend can. Default: nothing kept; each batch opens its own."""
        return nullcontext()

    def claims(self) -> AbstractContextManager[Claims]:
        """Claims held until the block ends (or the process dies). Default: every claim is granted, as on a
        store that only one host writes, whose writers its file lock serialises."""
        return nullcontext(Claims())

    def ddl(self, sql: str) -> str:
        """A migration's SQL as this backend runs it."""
        return sql

    def is_conflict(self, exc: BaseException) -> bool:
        """Whether a failed commit lost a race with another writer's commit (so it may simply run again)."""
        return False

    def holds_all_locks(self) -> bool:
        """Whether every writer holds every lock (a backend that serialises all writes)."""
        return False


def run_sql(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None) -> list[Any]:
    """Execute and fetch to the end (a result left unfinished blocks the connection's next statement)."""
    return con.execute(sql, params or []).fetchall()
