"""``streamkeeper onboard``: what it checks before Prefect starts (its output: tests/flows/test_onboard.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamkeeper.commands.onboard import onboard, parse_codes
from streamkeeper.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "data" / "specs" / "onboarding-example.yaml"


def test_dsp_codes_are_source_equals_code() -> None:
    assert parse_codes(["doordash=abc", " ubereats = x=y "]) == {"doordash": "abc", "ubereats": "x=y"}
    for bad in ("doordash", "=abc", "doordash="):
        with pytest.raises(ConfigError, match="expected SOURCE=CODE"):
            parse_codes([bad])


def test_mistakes_fail_before_prefect_starts(tmp_path: Path) -> None:
    spec = tmp_path / "onboard.yaml"
    spec.write_text(EXAMPLE.read_text().replace("  source: square", "  source: square\n  colour: red"))
    with pytest.raises(ConfigError) as bad_spec:
        onboard(spec)
    assert str(bad_spec.value) == "onboard.yaml:22: pos.colour: Extra inputs are not permitted"
    with pytest.raises(ConfigError) as bad_code:
        onboard(EXAMPLE, dsp_code=["grubhub=x"])
    assert str(bad_code.value) == "--dsp-code grubhub: not a DSP source of onboarding-example.yaml"
