"""SQL reports over the history store: ``data/reports/NAME.sql``, rendered as a table, CSV or JSON.

Reports read under the store's shared lock, so they wait for a writer's batch to finish rather than fail,
and a writer waits at most for the report's query.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from streamkeeper.errors import ConfigError, StoreError
from streamkeeper.store import HistoryStore


def reports_dir() -> Path:
    """``$STREAMKEEPER_REPORTS``, else ``data/reports`` of the project (or the working directory)."""
    env = os.environ.get("STREAMKEEPER_REPORTS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent / "data" / "reports"
    return here if here.is_dir() else Path("data/reports")


def available() -> list[str]:
    return sorted(p.stem for p in reports_dir().glob("*.sql"))


def run_report(name: str, db: Path | str | None = None) -> pd.DataFrame:
    """Run a named report and return its rows."""
    path = reports_dir() / f"{name}.sql"
    if not path.is_file():
        raise ConfigError(
            f"unknown report {name!r}: choose one of {', '.join(available()) or '(none found)'}"
        )
    store = HistoryStore(db)
    try:
        return store.query(path.read_text())
    except StoreError:
        raise
    except Exception as exc:  # a broken report file is a config problem, not a crash
        raise ConfigError(f"report {name!r} failed: {str(exc).splitlines()[0]}") from None


def render(frame: pd.DataFrame, fmt: str) -> str:
    """A report as an aligned table, CSV or JSON (records)."""
    if fmt == "csv":
        return frame.to_csv(index=False).rstrip("\n")
    if fmt == "json":
        return frame.to_json(orient="records", date_format="iso", indent=2)
    if frame.empty:
        return "(no rows)"
    return frame.to_string(index=False)
