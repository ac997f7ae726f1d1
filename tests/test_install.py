"""A fresh install is the locked one: the README's commands and .ci/run install from uv.lock, and uv.lock is
current with pyproject.toml (so a new release of a dependency cannot change a fresh install unasked)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCKED_INSTALL = re.compile(
    r"^python3 -m venv \.venv && \.venv/bin/pip install -q uv==(?P<uv>[0-9.]+) && "
    r"\.venv/bin/uv sync -q --locked --inexact(?P<extra>(?: --extra test)?) && (?P<then>.+)$"
)


def readme_commands() -> list[str]:
    """The README's one-line commands that start from a new virtual environment."""
    text = (ROOT / "README.md").read_text()
    return [line for line in text.splitlines() if line.startswith("python3 -m venv ")]


def ci_command() -> str:
    """The command .ci/run runs, without its `2>&1 | tee` to the log."""
    lines = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.startswith("python3 -m venv ")
    ]
    assert len(lines) == 1, lines
    return lines[0].split(" 2>&1 | tee ")[0]


def test_the_readme_and_ci_install_the_locked_versions_with_the_same_uv() -> None:
    commands = readme_commands()
    assert len(commands) == 2, commands  # try the demo; run the tests
    matches = [LOCKED_INSTALL.match(command) for command in commands]
    assert all(matches), [c for c, m in zip(commands, matches, strict=True) if not m]
    demo, tests = (m for m in matches if m)
    assert (demo["extra"], demo["then"]) == ("", ".venv/bin/streamkeeper demo")
    assert tests["extra"] == " --extra test"
    assert tests["then"] == ".venv/bin/python -m pytest -n 2 --dist loadfile"  # everything: no -m filter
    assert demo["uv"] == tests["uv"]
    assert ci_command() == commands[1], "the README's test command and .ci/run's differ"


def test_the_lockfile_is_current_with_pyproject() -> None:
    # offline: checking needs no registry while pyproject's requirements are what uv.lock was resolved from
    check = subprocess.run(
        [str(BIN / "uv"), "lock", "--check", "--offline"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, (
        "uv.lock is not current with pyproject.toml: run `.venv/bin/uv lock` and commit uv.lock\n"
        + check.stderr[-2000:]
    )
