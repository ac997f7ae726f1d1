"""The code stays linted, formatted, type-checked and layered: ruff, mypy and import-linter (pinned in pyproject)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing_to_fix_or_reformat() -> None:
    lint = run(str(BIN / "ruff"), "check", ".")
    assert lint.returncode == 0, lint.stdout[-4000:]
    layout = run(str(BIN / "ruff"), "format", "--check", ".")
    assert layout.returncode == 0, layout.stdout[-4000:]


@pytest.mark.slow  # a fresh clone type-checks everything once: ~40 s
def test_mypy_finds_no_type_error() -> None:
    # the cache lives under .pytest_cache: a fresh clone checks everything once (~40 s), later runs are quick
    cache = ROOT / ".pytest_cache" / "mypy"
    result = run(str(BIN / "mypy"), "--cache-dir", str(cache), "streamkeeper", "blocks", "tasks", "flows")
    assert result.returncode == 0, result.stdout[-4000:]


def test_import_contracts_hold() -> None:
    # pyproject's [tool.importlinter]: no Prefect below the tasks, no vendor package in an engine, and
    # flows -> tasks -> blocks -> library, never back; each known exception is listed there with its reason
    cache = ROOT / ".pytest_cache" / "import-linter"
    result = run(str(BIN / "lint-imports"), "--cache-dir", str(cache))
    assert result.returncode == 0, result.stdout[-6000:]
    assert "Contracts: 3 kept, 0 broken." in result.stdout, result.stdout[-2000:]
