"""Fixtures of the end-to-end tests (helpers: e2ekit)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2ekit import Processes


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """`Processes` logging into the test's tmp_path, all stopped at the end."""
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()
