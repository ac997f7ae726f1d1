"""SQL reports over the history store: ``data/reports/NAME.sql``, rendered as a table, CSV or JSON.

A report may take parameters. Each is declared in a comment line of the file, with its default and what it
means, and used in the SQL as a DuckDB named parameter (``$hours``)::

    -- param: hours 24 Subscriptions expiring within this many hours.
    SELECT ... WHERE date_diff('second', now(), expires_at) <= $hours * 3600

``streamkeeper report expiring --hours 6`` sets it; the default's type (integer, number or text) is the
parameter's type. Reports read under the store's shared lock, on a read-only connection opened for the
query and closed after it: a writer's batch waits at most for one report query, and a report waits at most
for one batch (writers hold the lock per batch, never for a whole flow run).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from streamkeeper.errors import ConfigError, StoreError
from streamkeeper.store import HistoryStore

_PARAM = re.compile(r"^--\s*param:\s*(?P<name>[a-z_][a-z0-9_]*)\s+(?P<default>\S+)\s*(?P<help>.*)$")


class ReportParam(BaseModel):
    """A report parameter: its name, default (whose type is the parameter's) and meaning."""

    name: str
    default: int | float | str
    help: str = ""

    def parse(self, text: str) -> int | float | str:
        """A value given on the command line, as the default's type."""
        kind = type(self.default)
        if kind is str:
            return text
        try:
            return kind(text)
        except ValueError:
            raise ConfigError(
                f"--{self.name.replace('_', '-')} {text!r}: expected {'an integer' if kind is int else 'a number'}"
            ) from None


class Report(BaseModel):
    """A report file: its name, SQL, first-line description and parameters."""

    name: str
    sql: str
    description: str = ""
    params: list[ReportParam] = []


def reports_dir() -> Path:
    """``$STREAMKEEPER_REPORTS``, else ``data/reports`` of the project (or the working directory)."""
    env = os.environ.get("STREAMKEEPER_REPORTS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent / "data" / "reports"
    return here if here.is_dir() else Path("data/reports")


def available() -> list[str]:
    return sorted(p.stem for p in reports_dir().glob("*.sql"))


def load_report(name: str) -> Report:
    """Read a report file and its parameter declarations."""
    path = reports_dir() / f"{name}.sql"
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name) or not path.is_file():
        raise ConfigError(
            f"unknown report {name!r}: choose one of {', '.join(available()) or '(none found)'}"
        )
    sql = path.read_text()
    params: list[ReportParam] = []
    description = ""
    for line in sql.splitlines():
        stripped = line.strip()
        if not stripped.startswith("--"):
            continue
        match = _PARAM.match(stripped)
        if match:
            params.append(
                ReportParam(name=match["name"], default=_typed(match["default"]), help=match["help"].strip())
            )
        elif not description:
            description = stripped.lstrip("-").strip()
    return Report(name=name, sql=sql, description=description, params=params)


def run_report(name: str, db: Path | str | None = None, params: dict[str, str] | None = None) -> pd.DataFrame:
    """Run a named report with its parameters (given as text, defaults for the rest) and return its rows."""
    report = load_report(name)
    declared = {p.name: p for p in report.params}
    values: dict[str, Any] = {p.name: p.default for p in report.params}
    for key, text in (params or {}).items():
        key = key.replace("-", "_")
        if key not in declared:
            known = ", ".join(f"--{p.replace('_', '-')}" for p in declared) or "none"
            raise ConfigError(
                f"report {name!r} has no parameter --{key.replace('_', '-')} (parameters: {known})"
            )
        values[key] = declared[key].parse(text)
    store = existing_store(db)
    try:
        with store.reader() as con:
            return con.execute(report.sql, values).df() if values else con.execute(report.sql).df()
    except StoreError:
        raise
    except Exception as exc:  # a broken report file is a config problem, not a crash
        raise ConfigError(f"report {name!r} failed: {str(exc).splitlines()[0]}") from None


def existing_store(db: Path | str | None = None) -> HistoryStore:
    """The history store `db` for reading: a missing embedded file is a `StoreError` (never created)."""
    store = HistoryStore(db)
    if store.settings.kind == "embedded" and not store.path.is_file():
        # a read never creates a store: the path is probably mistyped (a lake's catalog says for itself)
        raise StoreError(f"no history store at {store.path} (give --db or set $STREAMKEEPER_DB)")
    return store


def parse_options(args: list[str]) -> dict[str, str]:
    """``--hours 6 --vendor=dma`` -> ``{"hours": "6", "vendor": "dma"}`` (a report's parameters)."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) < 3:
            raise ConfigError(f"unexpected argument {arg!r}: report parameters are --name value")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args):
                raise ConfigError(f"--{key} needs a value")
            value = args[i + 1]
            i += 1
        out[key] = value
        i += 1
    return out


def render(frame: pd.DataFrame, fmt: str) -> str:
    """A report as an aligned table, CSV or JSON (records)."""
    if fmt == "csv":
        return frame.to_csv(index=False).rstrip("\n")
    if fmt == "json":
        return frame.to_json(orient="records", date_format="iso", indent=2)
    if frame.empty:
        return "(no rows)"
    return frame.to_string(index=False)


def _typed(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return "" if text in ("''", '""') else text
