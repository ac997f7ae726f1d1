"""Fixtures of the store tests: a history store on either backend (the embedded file, DuckLake on a real
PostgreSQL catalog and moto's S3 server, both started here: tests/lakekit.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lakekit import lake, lake_services  # noqa: E402,F401  (fixtures)


@pytest.fixture(params=["embedded", pytest.param("lake", marks=pytest.mark.slow)])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """What ``STREAMKEEPER_STORE`` would be: a file path, or a new DuckLake's attach string."""
    if request.param == "embedded":
        return str(tmp_path / "history.duckdb")
    env: dict[str, str] = request.getfixturevalue("lake")
    return env["STREAMKEEPER_STORE"]
