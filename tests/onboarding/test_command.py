"""``streamkeeper onboard``: a real process on the session's Prefect API and the Stream emulator; its checks."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from blocks.stream import StreamCredentials
from streamkeeper.commands.onboard import onboard, parse_codes
from streamkeeper.errors import ConfigError
from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.stream import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PARTNER_ID,
    StreamSandbox,
)

EXAMPLE = Path(__file__).parents[2] / "data" / "specs" / "onboarding-example.yaml"


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamkeeper.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "STREAMKEEPER_"))}
    env["STREAMKEEPER_HOME"] = str(tmp_path / "home")
    env["STREAMKEEPER_DB"] = str(tmp_path / "history.duckdb")
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    return env


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


def test_onboard_prints_the_steps_the_links_and_a_summary(
    prefect_api: None, serve: Callable[..., SandboxServer], tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL

    sandbox = StreamSandbox(auto_authorize=True)
    serve(sandbox)
    block = f"cli-stream-{uuid.uuid4().hex[:8]}"
    StreamCredentials(
        base_url=sandbox.url,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=SecretStr(DEFAULT_CLIENT_SECRET),
        partner_id=DEFAULT_PARTNER_ID,
    ).save(block, overwrite=True)
    env = {**base_env(tmp_path), "PREFECT_API_URL": str(PREFECT_API_URL.value())}

    result = run_cli(["onboard", str(EXAMPLE), "--block", block, "--dsp-code", "ubereats=unused"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "dsp-bind:doordash" in out and "menus" in out and "feature-flags" in out
    (link,) = [line for line in out.splitlines() if line.startswith("SSO login link for")]
    assert "luigi@trattoria.example (single use): http://" in link and "sso_login_token=" in link
    assert out.rstrip().splitlines()[-1].startswith("luigis-trattoria (")
    assert out.rstrip().endswith(": live; 16 created, 4 already done")
    assert "sso_login_token" not in result.stderr  # the link is printed, never logged
