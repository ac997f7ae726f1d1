"""Fixtures of the reliability tests that start processes (see `relkit`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from relkit import Processes, PyCache, kill_group, warm_pycache


@pytest.fixture(scope="session")
def shared_pycache() -> Iterator[PyCache]:
    """The suite's bytecode cache (tests/conftest.py), with what the CLI imports compiled in the background:
    request it before ``prefect_api`` so that the compiling overlaps the Prefect API's start."""
    path = Path(os.environ["PYTHONPYCACHEPREFIX"])
    cache = PyCache(path, warm_pycache(path))
    try:
        yield cache
    finally:
        kill_group(cache.warming)


@pytest.fixture
def spawned() -> Iterator[Processes]:
    """Start processes through this; each is killed (its whole process group) when the test ends, pass or fail."""
    started = Processes()
    try:
        yield started
    finally:
        started.kill_all()
