"""The scale-out tests use the real infrastructure kit of the store tests (tests/lakekit.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lakekit import lake, lake_services  # noqa: E402,F401  (fixtures)
