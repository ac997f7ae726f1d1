"""The dashboard task: write the page of charts over the flow's history store (`streamkeeper.dashboard`)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from pydantic import BaseModel

from streamkeeper.dashboard import write_dashboard
from tasks.store import history_store


class DashboardPage(BaseModel):
    """A written dashboard: where, how many charts had data, and its headline figures."""

    path: str
    drawn: int
    charts: int
    headline: dict[str, str]


@task(name="write-dashboard")
def write_dashboard_page(dashboard_path: str, db_path: str | None = None) -> DashboardPage:
    """Write the dashboard of the history store to `dashboard_path` (relative: the working directory)."""
    path, board = write_dashboard(Path(dashboard_path), history_store(db_path))
    return DashboardPage(path=str(path), drawn=board.drawn, charts=len(board.charts), headline=board.headline)
