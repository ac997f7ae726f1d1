"""Helpers of the crash and concurrency tests: the emulators in their own process, CLI processes in their own
process groups (killed with SIGKILL, always cleaned up), polling with deadlines."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pollkit import wait_for as wait_for  # re-exported for the reliability tests

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CLI = [sys.executable, "-m", "streamkeeper.cli"]
RUN_COMMANDS = [sys.executable, str(HERE / "run_commands.py")]  # several commands, one Python start
DEADLINE = 60.0
T = TypeVar("T")


def kill_group(process: subprocess.Popen[Any]) -> None:
    """SIGKILL a process and everything it started (its own process group); reap it."""
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=DEADLINE)


class SandboxProcess:
    """`sandbox_process.py` running in its own process group; `call` sends it one command.

    Starting returns at once (several start side by side); `ready()` waits for the emulators' URLs.
    """

    def __init__(self, state_dir: Path, pycache: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "sandbox_process.py"), str(state_dir)],
            cwd=ROOT,
            env=python_env(pycache),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.urls: dict[str, str] = {}
        self.ca_pem = ""

    def ready(self) -> SandboxProcess:
        if not self.urls:
            hello = self._read()
            self.urls, self.ca_pem = hello["urls"], hello["ca_pem"]
        return self

    def _read(self, timeout: float = DEADLINE) -> Any:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            raise AssertionError(f"the sandbox process did not answer within {timeout} s")
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the sandbox process ended (exit {self.process.poll()})")
        return json.loads(line)

    def call(self, op: str, **args: Any) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.process.stdin.flush()
        return self._read()

    def writes(self, vendors: tuple[str, ...]) -> int:
        """Write requests the vendor emulators have seen since the last reset: the counters of
        ``GET /_sandbox/stats``, for all emulators in one round trip."""
        progress = self.call("progress")
        return sum(int(progress[v]) for v in vendors)

    def stop(self) -> None:
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(timeout=10)
        except (subprocess.TimeoutExpired, BrokenPipeError):
            pass
        finally:
            kill_group(self.process)


@contextmanager
def sandbox_processes(state_dirs: list[Path], pycache: Path) -> Iterator[list[SandboxProcess]]:
    """Several emulator processes, started side by side; all stopped (killed if need be) at the end."""
    running: list[SandboxProcess] = []
    try:
        for state_dir in state_dirs:
            running.append(SandboxProcess(state_dir, pycache))
        yield [r.ready() for r in running]
    finally:
        for r in running:
            r.stop()


WARM_IMPORTS = (
    "import streamkeeper.cli, flows.provision, flows.onboard, flows.ingest, streamkeeper.sandbox.runner"
)


def python_env(pycache: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """A child Python's environment that keeps compiled bytecode in `pycache`, shared by the test's children.

    The venv holds no ``.pyc`` files (uv does not compile) and ``PYTHONDONTWRITEBYTECODE`` may be set, so
    each child would compile Prefect and pandas from source again: ~6 s of CPU, instead of ~2 s.
    """
    env = dict(os.environ if base is None else base)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def warm_pycache(pycache: Path) -> subprocess.Popen[bytes]:
    """Compile what the CLI imports into `pycache` (in the background; wait on the process before use)."""
    return subprocess.Popen(
        [sys.executable, "-c", WARM_IMPORTS],
        cwd=ROOT,
        env=python_env(pycache),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@dataclass
class PyCache:
    """A ``PYTHONPYCACHEPREFIX`` for child processes, and the process filling it."""

    path: Path
    warming: subprocess.Popen[bytes]

    def ready(self) -> Path:
        """The path, once what the CLI imports is compiled (a child started earlier compiles for itself)."""
        self.warming.wait(timeout=180)
        return self.path


def cli_env(tmp_path: Path, db: Path, pycache: Path) -> dict[str, str]:
    """Environment of a CLI process that uses the test session's Prefect API (never starts its own)."""
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "STREAMKEEPER_"))}
    env.update(
        STREAMKEEPER_HOME=str(tmp_path / "home"),
        STREAMKEEPER_DB=str(db),
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_TO_API_ENABLED="false",  # the console has the logs; spare the API's CPU
    )
    return python_env(pycache, env)


@dataclass
class CliRun:
    """A `streamkeeper` process in its own process group, its output going to files."""

    args: list[str]
    process: subprocess.Popen[bytes]
    out: Path
    err: Path
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    @property
    def output(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")

    def wait(self, timeout: float = 180) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                kill_group(self.process)
                raise AssertionError(f"streamkeeper {' '.join(self.args)} still running after {timeout} s")
            time.sleep(0.01)
        self.ended = self.ended or time.monotonic()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL, like a machine that dies: no cleanup, no atexit, no finally."""
        kill_group(self.process)
        self.ended = time.monotonic()


def start_cli(
    args: list[str], env: dict[str, str], logs: Path, name: str, command: list[str] | None = None
) -> CliRun:
    """``streamkeeper ARGS`` (or `command` + `args`) in a new process group, output to ``logs/<name>.*``."""
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / f"{name}.out", logs / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [*(command or CLI), *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    return CliRun(args, process, out, err)


class Processes:
    """Every process a test started, killed (process group, SIGKILL) when the test ends, pass or fail."""

    def __init__(self) -> None:
        self.runs: list[CliRun] = []

    def start(
        self, args: list[str], env: dict[str, str], logs: Path, name: str, command: list[str] | None = None
    ) -> CliRun:
        run = start_cli(args, env, logs, name, command)
        self.runs.append(run)
        return run

    def kill_all(self) -> None:
        for run in self.runs:
            kill_group(run.process)
