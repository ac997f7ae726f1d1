"""``streamkeeper dashboard --out FILE.html``: write the dashboard page (`streamkeeper.dashboard`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command()(dashboard)


def dashboard(
    out: Annotated[
        Path, typer.Option("--out", help="The HTML file to write (its folder is made when missing).")
    ],
    days: Annotated[int, typer.Option(help="Show the last this many days (1 to 90).")] = 7,
    db: Annotated[Path | None, typer.Option(help="History store file (default $STREAMKEEPER_DB).")] = None,
    deployments: Annotated[
        Path | None,
        typer.Option(
            help="prefect.yaml to read refresh-subscriptions' schedule from (default the project's)."
        ),
    ] = None,
) -> None:
    """Write one self-contained HTML page of charts over the history store: subscription expiries against the
    refresh schedule, events per hour, delivery lag, drift, token health and API error rates. It opens with
    no network (plotly.js is inside)."""
    from streamkeeper.cli import echo
    from streamkeeper.dashboard import write_dashboard
    from streamkeeper.reports import existing_store

    path, board = write_dashboard(out, existing_store(db), days=days, deployments=deployments)
    echo(f"dashboard: {path} ({board.drawn} of {len(board.charts)} charts with data)")
