"""Where streamkeeper keeps its state, set up before Prefect is imported.

Unless the user points Prefect somewhere (``PREFECT_API_URL`` or ``PREFECT_HOME``), streamkeeper keeps
Prefect's state in ``$STREAMKEEPER_HOME/prefect`` (default ``.streamkeeper/prefect`` in the working
directory), away from the user's own ``~/.prefect``. Prefect's settings are read when it is imported, so
`prepare()` must run first.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path


def streamkeeper_home() -> Path:
    return Path(os.environ.get("STREAMKEEPER_HOME") or ".streamkeeper").resolve()


def prepare() -> None:
    """Set the environment defaults streamkeeper runs Prefect with."""
    if not os.environ.get("PREFECT_API_URL") and not os.environ.get("PREFECT_HOME"):
        os.environ["PREFECT_HOME"] = str(streamkeeper_home() / "prefect")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # the ephemeral API starts on demand in each process; give it time on a loaded 2-core machine
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


def ensure_prefect_database() -> None:
    """Create Prefect's database once, under a lock, before any ephemeral API starts.

    Several processes starting on a fresh ``PREFECT_HOME`` race to create the database (startup timeouts,
    orphaned servers); once it exists they all pass. Only needed for the local ephemeral API.
    """
    if os.environ.get("PREFECT_API_URL"):
        return
    home = Path(os.environ["PREFECT_HOME"]) if os.environ.get("PREFECT_HOME") else Path.home() / ".prefect"
    home.mkdir(parents=True, exist_ok=True)
    marker = home / ".streamkeeper-db-ready"
    if marker.exists():
        return
    with open(home / ".streamkeeper-db.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return
        result = subprocess.run(
            [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
            capture_output=True,
            text=True,
            env=os.environ.copy(),
        )
        if result.returncode != 0:
            from streamkeeper.errors import StreamkeeperError

            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise StreamkeeperError(f"could not create Prefect's database in {home}: {tail[0]}")
        marker.touch()
