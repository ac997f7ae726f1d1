"""Receiver config: YAML with secrets by environment reference, errors that name the field, the command."""

from __future__ import annotations

from pathlib import Path

import pytest
from rxkit import DMA_PASSWORD, STREAM_SECRET, receiver_config

from streamkeeper.cli import main
from streamkeeper.errors import ConfigError
from streamkeeper.receiver import create_app, load_config

YAML = """\
max_body_bytes: 2048
dma:
  conf:
    account: dma-east
    username: notifier
    password: ${RX_TEST_DMA_PASSWORD}
thingspace:
  devices:
    bearer_token: ${RX_TEST_TS_TOKEN}
stream:
  orders:
    secret: ${RX_TEST_STREAM_SECRET}
"""


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RX_TEST_DMA_PASSWORD", DMA_PASSWORD)
    monkeypatch.setenv("RX_TEST_TS_TOKEN", "S3NTINEL-token")
    monkeypatch.setenv("RX_TEST_STREAM_SECRET", STREAM_SECRET)


def test_yaml_config_takes_secrets_from_the_environment(tmp_path: Path, secrets_env: None) -> None:
    path = tmp_path / "rx.yaml"
    path.write_text(YAML)
    config = load_config(path)
    assert config.max_body_bytes == 2048
    assert config.dma["conf"].password.get_secret_value() == DMA_PASSWORD
    assert config.thingspace["devices"].bearer_token is not None
    assert config.stream["orders"].secret.get_secret_value() == STREAM_SECRET
    assert DMA_PASSWORD not in repr(config) and STREAM_SECRET not in str(config)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("${RX_TEST_DMA_PASSWORD}", "${RX_TEST_UNSET}"),
            "rx.yaml:6: dma.conf.password: .*RX_TEST_UNSET is not set",
        ),
        (("  conf:\n", "  bad/name:\n"), "rx.yaml:3: dma.bad/name"),
        (("max_body_bytes: 2048", "max_body_bytes: 2048\nport: 1"), "rx.yaml:2: port: Extra inputs"),
        (
            ("    bearer_token:", "    username: u\n    password: p\n    bearer_token:"),
            "rx.yaml:8: thingspace.devices: .*either username and password",
        ),
        (("    username: notifier\n", ""), "dma.conf.username: Field required"),
    ],
)
def test_config_errors_name_the_line_and_field(
    tmp_path: Path, secrets_env: None, edit: tuple[str, str], message: str
) -> None:
    path = tmp_path / "rx.yaml"
    path.write_text(YAML.replace(*edit))
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(path)
    assert DMA_PASSWORD not in str(caught.value) and STREAM_SECRET not in str(caught.value)


def test_a_config_needs_a_sender() -> None:
    with pytest.raises(ValueError, match="no senders"):
        receiver_config(dma={}, thingspace={}, stream={})


def test_receive_command_errors_are_one_line(
    tmp_path: Path, secrets_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rx.yaml"
    path.write_text(YAML)
    monkeypatch.delenv("RX_TEST_STREAM_SECRET")
    assert main(["receive", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        "error: rx.yaml:12: stream.orders.secret: Value error, environment variable RX_TEST_STREAM_SECRET is not set"
    )

    monkeypatch.setenv("RX_TEST_STREAM_SECRET", STREAM_SECRET)
    landing = tmp_path / "landing"
    app = create_app(load_config(path), landing=landing)  # a receiver already owns the landing area
    try:
        assert main(["receive", "--config", str(path), "--landing", str(landing)]) == 1
    finally:
        app.state.receiver.close()
    assert (
        capsys.readouterr().err.strip() == f"error: another receiver is using the landing directory {landing}"
    )
    assert main(["receive", "--config", str(tmp_path / "missing.yaml")]) == 1
    assert "spec file not found" in capsys.readouterr().err
