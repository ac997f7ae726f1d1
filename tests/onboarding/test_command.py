"""``streamkeeper onboard``: what it checks before Prefect starts (its output: tests/flows/test_onboard.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamkeeper.commands.onboard import onboard
from streamkeeper.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "data" / "specs" / "onboarding-example.yaml"


def test_mistakes_fail_before_prefect_starts(tmp_path: Path) -> None:
    spec = tmp_path / "onboard.yaml"
    spec.write_text(EXAMPLE.read_text().replace("  source: square", "  source: square\n  colour: red"))
    with pytest.raises(ConfigError) as bad_spec:
        onboard(spec)
    assert str(bad_spec.value) == "onboard.yaml:22: pos.colour: Extra inputs are not permitted"


def test_an_oauth_code_is_never_an_argument() -> None:
    # codes are secrets: the run asks for them (terminal or the UI's form) or reads a Secret block
    import typer

    from streamkeeper.cli import app

    command = typer.main.get_command(app).commands["onboard"]  # type: ignore[attr-defined]
    options = {opt for param in command.params for opt in param.opts}
    assert "--codes-block" in options
    assert not {o for o in options if "code" in o} - {"--codes-block", "--code-timeout"}
