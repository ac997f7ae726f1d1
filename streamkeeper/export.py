"""A table or view of the history store to a Parquet, CSV or JSON-lines file, by DuckDB's own ``COPY``.

For loading streamkeeper's history into a warehouse: ``--since`` keeps the rows written at or after a time,
by the table's time column (`TIME_COLUMNS`; an append-only table's "written at", so repeated exports with
the last export's time miss nothing). Rows come in that column's order. Reads under the store's shared
lock on a read-only connection, like a report; works on either backend.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import duckdb
from pydantic import BaseModel

from streamkeeper.errors import ConfigError, StoreError
from streamkeeper.store import HistoryStore

Format = Literal["parquet", "csv", "jsonl"]
FORMATS: dict[str, str] = {
    "parquet": "FORMAT parquet",
    "csv": "FORMAT csv, HEADER true",
    "jsonl": "FORMAT json",  # DuckDB's json: one object a line (newline-delimited), not an array
}

TIME_COLUMNS: dict[str, str] = {
    "events": "loaded_at",  # when it reached the store: an event received long ago may load late
    "subscriptions": "valid_from",
    "subscription_snapshots": "taken_at",
    "api_calls": "called_at",
    "token_events": "at",
    "onboarding_steps": "started_at",
    "event_gaps": "detected_at",
    "rejected_deliveries": "quarantined_at",
    "audits": "finished_at",
    "drift_findings": "found_at",
    "http_cache": "fetched_at",
    "cursor_moves": "updated_at",
    "schema_migrations": "applied_at",
}
"""The column ``--since`` filters on, per table; any other table or view: its first time column, if any."""


class ExportResult(BaseModel):
    table: str
    format: str
    out: str
    rows: int
    since: datetime | None = None
    time_column: str | None = None


def parse_since(text: str) -> datetime:
    """An ISO 8601 time (``2026-12-01``, ``2026-12-01T08:00:00Z``, with an offset; none means UTC)."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"--since {text!r}: expected an ISO 8601 time, e.g. 2026-12-01 or 2026-12-01T08:00:00Z"
        ) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def export_table(
    table: str,
    out: Path | str,
    *,
    fmt: str = "parquet",
    since: datetime | None = None,
    db: Path | str | None = None,
) -> ExportResult:
    """Write `table` (rows at or after `since`, when given) to `out` in `fmt`; returns what was written.

    Raises:
        ConfigError: an unknown table or format, `since` for a table without a time column, or an output
            folder that does not exist.
        StoreError: no store at `db`.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}: choose {', '.join(FORMATS)}")
    target = str(out)
    if "://" not in target and not Path(target).parent.is_dir():
        raise ConfigError(f"--out {target}: folder {Path(target).parent} does not exist")
    store = HistoryStore(db)
    if store.settings.kind == "embedded" and not store.path.is_file():
        raise StoreError(f"no history store at {store.path} (give --db or set $STREAMKEEPER_DB)")
    with store.reader() as con:
        columns = _time_columns(con)
        if table not in columns:
            raise ConfigError(f"unknown table {table!r}: choose one of {', '.join(sorted(columns))}")
        time_column = TIME_COLUMNS.get(table) or next(iter(columns[table]), None)
        if since is not None and time_column is None:
            raise ConfigError(f"--since: {table} has no time column to filter on; export it without --since")
        query = f'SELECT * FROM "{table}"'
        if since is not None:
            query += f" WHERE \"{time_column}\" >= TIMESTAMPTZ '{since.isoformat()}'"
        if time_column is not None:
            query += f' ORDER BY "{time_column}"'
        try:
            found = con.execute(f"COPY ({query}) TO {_literal(target)} ({FORMATS[fmt]})").fetchall()
        except Exception as exc:  # duckdb's IOException and the like: one line naming the file
            raise ConfigError(f"--out {target}: {str(exc).splitlines()[0]}") from None
    rows = int(found[0][0]) if found and found[0] else 0
    return ExportResult(table=table, format=fmt, out=target, rows=rows, since=since, time_column=time_column)


def _time_columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """Every table and view of the store, with its time columns (in column order)."""
    found = con.execute(
        "SELECT t.table_name, c.column_name, c.data_type FROM information_schema.tables AS t "
        "JOIN information_schema.columns AS c USING (table_catalog, table_schema, table_name) "
        "WHERE t.table_catalog = current_database() AND t.table_schema = 'main' "
        "ORDER BY t.table_name, c.ordinal_position"
    ).fetchall()
    out: dict[str, list[str]] = {}
    for name, column, kind in found:
        times = out.setdefault(str(name), [])
        if str(kind).upper().startswith("TIMESTAMP"):
            times.append(str(column))
    return out


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


__all__ = ["FORMATS", "TIME_COLUMNS", "ExportResult", "export_table", "parse_since"]
