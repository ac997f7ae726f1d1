"""``streamkeeper export``: a table or view of the history store to a Parquet, CSV or JSON-lines file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command()(export)


def export(
    table: Annotated[str, typer.Argument(help="A table or view of the history store, e.g. events.")],
    out: Annotated[Path, typer.Option("--out", help="The file to write (replaced if it exists).")],
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only rows written at or after this ISO 8601 time (events: loaded_at; see docs/health.md).",
        ),
    ] = None,
    format: Annotated[str, typer.Option("--format", help="parquet, csv or jsonl.")] = "parquet",
    db: Annotated[Path | None, typer.Option(help="History store (default $STREAMKEEPER_DB).")] = None,
) -> None:
    """Export a table for a warehouse, by DuckDB's COPY: `streamkeeper export events --since 2026-12-01
    --format parquet --out events.parquet`."""
    from streamkeeper.cli import echo
    from streamkeeper.export import export_table, parse_since

    when = parse_since(since) if since is not None else None
    result = export_table(table, out, fmt=format, since=when, db=db)
    filtered = f" since {when.isoformat()} (by {result.time_column})" if when else ""
    echo(f"exported {result.rows} rows of {table}{filtered} to {result.out} ({result.format})")
