"""Any process that runs our flows (a worker's flow-run process, ``serve``, the CLI) masks secrets in
Prefect's log output: the flows import `tasks`, which installs the filter on Prefect's handlers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SENTINEL = "sentinel-5f1d-do-not-log"
ROOT = Path(__file__).resolve().parents[2]

SCRIPT = f"""
import logging, sys
import prefect
if sys.argv[1] == "flows":
    import flows.ingest  # what a worker loads: the flow's module, which imports tasks
from streamkeeper.vendors.http import register_secret
register_secret({SENTINEL!r})
logging.getLogger("prefect.flow_runs").warning("refresh failed for token %s", {SENTINEL!r})
logging.getLogger("httpx").warning("GET https://vendor/?key=" + {SENTINEL!r})
print("done", file=sys.stderr)
"""


def run(mode: str) -> str:
    env = {**os.environ, "PREFECT_LOGGING_LEVEL": "INFO", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "done" in result.stderr
    return result.stdout + result.stderr


@pytest.mark.slow  # process-level: child Pythons that start Prefect
def test_a_process_that_loads_a_flow_masks_registered_secrets_in_prefect_logs() -> None:
    bare = run("bare")  # Prefect alone prints the value: the check can see a leak
    assert f"refresh failed for token {SENTINEL}" in bare

    output = run("flows")
    assert SENTINEL not in output
    assert "refresh failed for token ***" in output and "key=***" in output
