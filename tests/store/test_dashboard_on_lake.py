"""The dashboard reads DuckLake as it reads the embedded file: the same week of history on both gives the same
charts, point for point, and the same headline figures."""

from __future__ import annotations

from pathlib import Path

import pytest
from dashkit import seed

from streamkeeper.dashboard import build, refresh_schedule
from streamkeeper.store import HistoryStore


@pytest.mark.slow
def test_the_dashboard_of_a_lake_matches_the_dashboard_of_the_file(
    tmp_path: Path, lake: dict[str, str]
) -> None:
    embedded, lakehouse = HistoryStore(tmp_path / "history.duckdb"), HistoryStore(lake["STREAMKEEPER_STORE"])
    now = seed(embedded)
    seed(lakehouse, now)
    boards = [build(store, schedule=refresh_schedule(), now=now) for store in (embedded, lakehouse)]

    def drawn(index: int) -> dict[str, list[tuple[str, list[object], list[object]]]]:
        return {
            chart.key: [(str(t.name), list(t.x), list(t.y)) for t in chart.figure.data]  # type: ignore[attr-defined]
            for chart in boards[index].charts
            if chart.figure is not None
        }

    on_file, on_lake = drawn(0), drawn(1)
    assert len(on_file) == 6 and on_lake == on_file
    assert boards[1].headline == boards[0].headline
    assert boards[1].location.startswith("ducklake:") and "password" not in boards[1].location
