"""What the end-to-end tests share: free ports, polling with a deadline, subprocesses killed with their
process group, and calls to the test's own Prefect server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pollkit import free_port as free_port
from pollkit import wait_for as wait_for  # both re-exported for the e2e tests

ROOT = Path(__file__).resolve().parents[2]


class Processes:
    """Subprocesses in their own process groups, all killed at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.started.append(proc)
        return proc

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGINT, timeout: float = 30) -> int:
        """Stop one process (Ctrl-C by default, as a user would) and wait for it; its exit code."""
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait(timeout=15)

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.started):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)


async def _api(url: str, action: Callable[[Any], Any]) -> Any:
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api=url) as client:
        return await action(client)


def api(url: str, action: Callable[[Any], Any]) -> Any:
    """Run one call against the e2e server (a client bound to it, whatever else this process uses)."""
    return asyncio.run(_api(url, action))
