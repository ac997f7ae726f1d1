"""The code stays linted, formatted and type-checked: ruff and mypy (pinned in pyproject) over the tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing_to_fix_or_reformat() -> None:
    lint = run(str(BIN / "ruff"), "check", ".")
    assert lint.returncode == 0, lint.stdout[-4000:]
    layout = run(str(BIN / "ruff"), "format", "--check", ".")
    assert layout.returncode == 0, layout.stdout[-4000:]


def test_mypy_finds_no_type_error() -> None:
    # the cache lives under .pytest_cache: a fresh clone checks everything once (~40 s), later runs are quick
    cache = ROOT / ".pytest_cache" / "mypy"
    result = run(str(BIN / "mypy"), "--cache-dir", str(cache), "streamkeeper", "blocks", "tasks", "flows")
    assert result.returncode == 0, result.stdout[-4000:]
