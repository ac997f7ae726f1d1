"""The lake backend: DuckLake, its catalog in PostgreSQL, its data as Parquet on S3 or a shared directory.

Many processes on many hosts read and write it at once. DuckLake gives each transaction a snapshot and
commits it atomically in the catalog; what it does not give is uniqueness: it has no primary keys, and two
transactions that each anti-join and insert the same keys both commit. So:

- writers that must not overlap (two loads of the same streams, two migrations) hold **PostgreSQL advisory
  locks** on the catalog database for their whole transaction, taken before the transaction's snapshot and
  released by PostgreSQL only after DuckLake's commit returned, or when the process dies (its session ends);
- source cursors are an append-only log (``cursor_moves``, read through the ``cursors`` view): appends never
  conflict, so ingest workers moving cursors of different sources commit side by side;
- the little state that is replaced in place (the HTTP cache, closing subscription versions) is written
  with ``MERGE``/``UPDATE``; two such commits that touch the same table at once conflict in DuckLake
  (`is_conflict`) and the store runs the loser again on a fresh snapshot;
- migrations are the embedded backend's, minus the key constraints DuckLake cannot hold (`ddl`).

The extensions come from the registry's wheels (``duckdb-extension-ducklake``, ``-postgres-scanner``,
``-httpfs``), loaded from their files: nothing is downloaded at run time. One in-memory DuckDB instance per
process and store attaches the lake once; each batch gets its own cursor on it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from streamkeeper.errors import StoreError
from streamkeeper.store.backend import Backend, Claims, run_sql
from streamkeeper.store.settings import StoreSettings, redact_conninfo

CATALOG = "lake"
"""The name the lake is attached under (plain SQL: ``ATTACH 'ducklake:postgres:...' AS lake; USE lake``)."""

EXTENSIONS = (
    ("duckdb_extension_postgres_scanner", "postgres_scanner"),
    ("duckdb_extension_ducklake", "ducklake"),
    ("duckdb_extension_httpfs", "httpfs"),
)

_instances: dict[str, duckdb.DuckDBPyConnection] = {}
_instances_lock = threading.Lock()

_KEY_CONSTRAINT = re.compile(r",\s*PRIMARY\s+KEY\s*\([^)]*\)|\s+PRIMARY\s+KEY\b|\s+UNIQUE\b", re.IGNORECASE)


def extension_file(module: str, name: str) -> str:
    """The ``.duckdb_extension`` file inside an extension wheel matching this duckdb."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise StoreError(
            f"the DuckLake backend needs the {module.replace('_', '-')} package "
            f"(pip install {module.replace('_', '-')}=={duckdb.__version__})"
        )
    folder = Path(spec.origin).parent / "extensions"
    exact = folder / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if exact.is_file():
        return str(exact)
    found = sorted(folder.glob(f"*/{name}.duckdb_extension"))
    if not found:
        raise StoreError(
            f"{module.replace('_', '-')} holds no {name}.duckdb_extension for duckdb {duckdb.__version__}"
        )
    return str(found[-1])


def lock_key(name: str) -> int:
    """A lock name as a PostgreSQL advisory lock key (a signed 64-bit integer)."""
    return int.from_bytes(
        hashlib.blake2b(f"streamkeeper:{name}".encode(), digest_size=8).digest(), "big", signed=True
    )


class LakeBackend(Backend):
    """DuckLake on a PostgreSQL catalog; writers serialised by advisory locks only where they must be."""

    kind = "lake"

    def __init__(self, settings: StoreSettings, lock_timeout: float = 300.0) -> None:
        super().__init__(settings, lock_timeout)

    @property
    def identity(self) -> str:
        return f"{redact_conninfo(self.settings.target)}|{self.settings.data_path or ''}"

    def ddl(self, sql: str) -> str:
        return _KEY_CONSTRAINT.sub("", sql)

    def is_conflict(self, exc: BaseException) -> bool:
        return isinstance(exc, duckdb.TransactionException) and "conflict" in str(exc).lower()

    # -- connections ---------------------------------------------------------------------------------------
    @contextmanager
    def connect(self, *, write: bool, locks: Collection[str] = ()) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._advisory_locks(locks if write else ()):
            con = self._instance().cursor()
            try:
                run_sql(con, f"USE {CATALOG}")
                run_sql(con, "SET TimeZone = 'UTC'")
                run_sql(con, "SET enable_progress_bar = false")
                yield con
            finally:
                con.close()

    def _instance(self) -> duckdb.DuckDBPyConnection:
        with _instances_lock:
            instance = _instances.get(self.identity)
            if instance is None:
                instance = self._attach()
                _instances[self.identity] = instance
            return instance

    def _attach(self) -> duckdb.DuckDBPyConnection:
        settings = self.settings
        con = duckdb.connect()
        try:
            for module, name in EXTENSIONS:
                run_sql(con, f"LOAD '{extension_file(module, name)}'")
            self._create_secrets(con)
            options = [f"DATA_PATH {_literal(settings.data_path)}"] if settings.data_path else []
            run_sql(
                con,
                f"ATTACH {_literal(settings.target)} AS {CATALOG}"
                + (f" ({', '.join(options)})" if options else ""),
            )
        except duckdb.Error as exc:
            con.close()
            first = redact_conninfo(
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            )
            if "data_path is not set" in first:
                first = "a new lake needs its data path: set STREAMKEEPER_DATA_PATH (s3://bucket/prefix/ or a directory)"
            raise StoreError(f"cannot open the history store {self.describe()}: {first}") from None
        return con

    def _create_secrets(self, con: duckdb.DuckDBPyConnection) -> None:
        """The catalog password and the S3 keys as DuckDB secrets (in memory, never in the attach string)."""
        settings = self.settings
        if settings.catalog_password is not None:
            _secret(
                con,
                "streamkeeper_catalog",
                {"TYPE": "postgres", "PASSWORD": settings.catalog_password.get_secret_value()},
            )
        s3 = settings.s3
        values: dict[str, str] = {"TYPE": "s3"}
        if s3.access_key_id and s3.secret_access_key is not None:
            values |= {"KEY_ID": s3.access_key_id, "SECRET": s3.secret_access_key.get_secret_value()}
        if s3.session_token is not None:
            values["SESSION_TOKEN"] = s3.session_token.get_secret_value()
        if s3.region:
            values["REGION"] = s3.region
        endpoint = s3.endpoint()
        if endpoint is not None:  # an S3-compatible store: path-style URLs, TLS as its scheme says
            values |= {
                "ENDPOINT": endpoint[0],
                "URL_STYLE": "path",
                "USE_SSL": "true" if endpoint[1] else "false",
            }
        if len(values) > 1:
            _secret(con, "streamkeeper_s3", values)

    # -- advisory locks ------------------------------------------------------------------------------------
    @contextmanager
    def claims(self) -> Iterator[Claims]:
        """Claims as session advisory locks, tried without waiting; PostgreSQL drops them with the session."""
        pg = self._catalog_session()
        try:
            yield _SessionClaims(pg)
        finally:
            pg.close()

    def _catalog_session(self) -> Any:
        import psycopg

        password = self.settings.catalog_password
        try:
            return psycopg.connect(
                self.settings.conninfo,
                connect_timeout=30,
                application_name="streamkeeper",
                autocommit=True,
                password=password.get_secret_value() if password is not None else None,
            )
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot reach the history store's catalog {self.describe()}: {_pg_message(exc)}"
            ) from None

    @contextmanager
    def _advisory_locks(self, locks: Collection[str]) -> Iterator[None]:
        """Hold `locks` (sorted, so two writers never wait on each other in a cycle) until the block ends."""
        if not locks:
            yield
            return
        import psycopg

        keys = sorted({lock_key(name) for name in locks})
        pg = self._catalog_session()
        try:
            try:
                pg.execute(
                    "BEGIN"
                )  # transaction-scoped locks: released by COMMIT, ROLLBACK or a dead session
                pg.execute(f"SET LOCAL lock_timeout = {int(self.lock_timeout * 1000)}")
                # one round trip; unnest yields the sorted keys in order, and each lock is taken in turn
                pg.execute("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%s::bigint[]) AS k", [keys])
            except psycopg.errors.LockNotAvailable:
                raise StoreError(
                    f"the history store is busy: another writer held what this batch needs "
                    f"({', '.join(sorted(locks)[:3])}{', ...' if len(locks) > 3 else ''}) for more than "
                    f"{self.lock_timeout:.0f} s"
                ) from None
            except psycopg.Error as exc:
                raise StoreError(
                    f"cannot lock the history store's catalog {self.describe()}: {_pg_message(exc)}"
                ) from None
            yield
        finally:
            pg.close()  # ends the transaction: PostgreSQL releases its advisory locks


_BARE = {"TYPE", "USE_SSL"}


class _SessionClaims(Claims):
    def __init__(self, pg: Any) -> None:
        self.pg = pg
        self.held: dict[str, bool] = {}

    def take(self, name: str) -> bool:
        if name not in self.held:
            row = self.pg.execute("SELECT pg_try_advisory_lock(%s)", [lock_key(name)]).fetchone()
            self.held[name] = bool(row and row[0])
        return self.held[name]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _secret(con: duckdb.DuckDBPyConnection, name: str, values: dict[str, Any]) -> None:
    body = ", ".join(
        f"{key} {value if key in _BARE else _literal(str(value))}" for key, value in values.items()
    )
    try:
        run_sql(con, f"CREATE OR REPLACE SECRET {name} ({body})")
    except duckdb.Error:
        raise StoreError(
            f"cannot set up the history store's credentials ({name})"
        ) from None  # no SQL: it holds them


def _pg_message(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return redact_conninfo(text[0]) if text else type(exc).__name__
