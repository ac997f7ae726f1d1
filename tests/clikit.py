"""``streamkeeper ARGS`` run in the test's own process: `cli.main(argv)`, the entry point the installed script
calls, with the environment the test gives and stdout/stderr captured. It spares a Python start and a
Prefect import (~3-8 s) per command; the tests that need a separate process (exit codes as the shell sees
them, signals, a fresh Prefect home) still start one.

The in-process run uses the test session's Prefect API when the test passes ``PREFECT_API_URL`` (the
``prefect_api`` fixture's), as a child would.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class CliResult:
    """What a finished command left: like `subprocess.CompletedProcess` for the assertions that read one."""

    returncode: int
    stdout: str
    stderr: str


RunStreamkeeper = Callable[..., CliResult]


@contextmanager
def logging_kept() -> Iterator[None]:
    """Put every logger back as it was: a command sets Prefect's logging up again, with console handlers on
    the stream of the test's capture, which is closed when the test ends (later logs would fail on it)."""
    manager = logging.Logger.manager
    loggers = [
        logging.getLogger(),
        *(x for x in manager.loggerDict.values() if isinstance(x, logging.Logger)),
    ]
    kept = [(x, list(x.handlers), list(x.filters), x.level, x.propagate, x.disabled) for x in loggers]
    try:
        yield
    finally:
        for logger, handlers, filters, level, propagate, disabled in kept:
            logger.handlers[:], logger.filters[:] = handlers, filters
            logger.setLevel(level)
            logger.propagate, logger.disabled = propagate, disabled


@pytest.fixture
def run_streamkeeper(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunStreamkeeper]:
    """``run_streamkeeper(["plan", "spec.yaml"], env={...})`` -> `CliResult`; `env` adds to os.environ for the
    command's duration (None values unset a variable)."""

    def run(args: Sequence[str], env: Mapping[str, str | None] | None = None) -> CliResult:
        from streamkeeper.cli import main

        capsys.readouterr()  # what the test printed before is not the command's
        with monkeypatch.context() as patch, logging_kept():
            for name, value in (env or {}).items():
                if value is None:
                    patch.delenv(name, raising=False)
                else:
                    patch.setenv(name, value)
            code = main(list(args))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    yield run
