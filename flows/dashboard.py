"""The dashboard as the flows publish it: the page written by a task, a link artifact to it and a table of
its headline figures.

Prefect artifacts hold links, tables and markdown, not files: the ``dashboard`` link artifact points at
the page (a ``file://`` URL on the machine the flow ran on), and ``dashboard-figures`` repeats the page's
headline figures so the run's Artifacts tab shows them without opening it.
"""

from __future__ import annotations

from pathlib import Path

from prefect.artifacts import create_link_artifact, create_table_artifact

from flows.artifacts import cut
from tasks.dashboard import DashboardPage, write_dashboard_page


def publish_dashboard(dashboard_path: str, db_path: str | None = None) -> DashboardPage:
    """Write the dashboard and publish its link and headline figures as artifacts of this flow run."""
    page = write_dashboard_page(dashboard_path, db_path)
    create_link_artifact(
        key="dashboard",
        link=Path(page.path).as_uri(),
        link_text=page.path,
        description=f"The dashboard ({page.drawn} of {page.charts} charts with data): open the file in a browser",
    )
    create_table_artifact(
        key="dashboard-figures",
        table=[{"figure": cut(k, 40), "value": cut(v, 56)} for k, v in page.headline.items()],
        description=f"Headline figures of the dashboard at {page.path}",
    )
    return page


__all__ = ["publish_dashboard"]
