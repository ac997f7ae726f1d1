"""Shared fixtures: sandbox servers on loopback, a history store in a temp dir, Prefect's test harness."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.3")

# One bytecode cache for this process and every Python the tests start (CLI runs, a Prefect server, its
# worker's flow runs, emulators). uv installs no .pyc files and PYTHONDONTWRITEBYTECODE may be set, so each
# child would otherwise compile Prefect and pandas from source: ~8 s to import them, against ~2.4 s cached.
_PYCACHE = Path(__file__).resolve().parents[1] / ".pytest_cache" / "pycache"
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ["PYTHONPYCACHEPREFIX"] = str(_PYCACHE)
sys.dont_write_bytecode = False
sys.pycache_prefix = str(_PYCACHE)  # what this process imports from here on fills the cache for the children

import pytest  # noqa: E402  (after the bytecode settings above)
from clikit import run_streamkeeper  # noqa: E402,F401  (a fixture: the CLI in this process)

from streamkeeper.sandbox.base import SandboxServer, VendorSandbox  # noqa: E402
from streamkeeper.sandbox.tls import TLSFiles, self_signed  # noqa: E402


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A self-signed certificate for HTTPS emulators, made once per session."""
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def serve() -> Iterator[Callable[..., SandboxServer]]:
    """Start emulators on free loopback ports; all are stopped when the test ends.

    ``server = serve(DMASandbox(), tls=tls_files)`` then ``server.url``.
    """
    servers: list[SandboxServer] = []

    def start(app: VendorSandbox, tls: TLSFiles | None = None) -> SandboxServer:
        server = SandboxServer(app, tls=tls).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """Prefect's test harness (a temporary API and database), started once per session (~10 s)."""
    from prefect.settings import (
        PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED,
        PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    # No test reads Prefect events or automations from this API (the e2e tests start servers of their own,
    # with every service on): its server neither stores events nor evaluates triggers, work a flow run
    # otherwise costs on every state change. The harness passes these settings to its server process.
    off = {
        PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED: False,
        PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED: False,
    }
    with temporary_settings(updates=off), prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A fresh history-store path."""
    return tmp_path / "history.duckdb"
