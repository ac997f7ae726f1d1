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


SPEC = """
dma:
  - connection: demo-dma
    subscriptions:
      - {name: all, consumer_url: "https://rx.example.com:8099/dma/conf", time_to_live: 600,
         notification_credentials: {username: notifier, password_block: dma-notify}}
      - {name: one, subject: conference, conference: "1", consumer_url: "https://rx.example.com:8099/dma/conf",
         time_to_live: 600, notification_credentials: {username: notifier, password_block: dma-notify}}
      - {name: elsewhere, consumer_url: "https://other.example.com/notify", time_to_live: 600,
         notification_credentials: {username: x, password_block: other}}
thingspace:
  - connection: demo-thingspace
    account: "0000000000-00001"
    targets:
      - name: rx
        address: "https://rx.example.com:8443/thingspace/devices"
        credentials: {username: ts-receiver, password_block: ts-receiver}
      - name: rx-bearer
        address: "https://rx.example.com:8443/thingspace/tokens"
        credentials: {bearer_token_block: ts-token}
      - {name: bare, address: "rx.example.com:8443"}
"""


def test_config_from_a_provisioning_spec() -> None:
    from streamkeeper.receiver.config import config_from_spec
    from streamkeeper.spec import load_spec_text

    blocks = {"dma-notify": DMA_PASSWORD, "ts-receiver": "S3NTINEL-ts", "ts-token": "S3NTINEL-token"}
    base = receiver_config(dma={}, thingspace={})  # the Stream webhook secret is not in a spec
    config = config_from_spec(load_spec_text(SPEC), blocks.__getitem__, base)
    assert list(config.dma) == ["conf"] and list(config.thingspace) == ["devices", "tokens"]
    assert (config.dma["conf"].account, config.dma["conf"].username) == ("demo-dma", "notifier")
    assert config.dma["conf"].password.get_secret_value() == DMA_PASSWORD
    devices, tokens = config.thingspace["devices"], config.thingspace["tokens"]
    assert (devices.account, devices.username, devices.bearer_token) == (
        "0000000000-00001",
        "ts-receiver",
        None,
    )
    assert tokens.bearer_token is not None and tokens.bearer_token.get_secret_value() == "S3NTINEL-token"
    assert config.stream == base.stream

    # subscription "one" (on the same route) sends another user: which credentials would the route check?
    conflicting = SPEC.replace(
        "600, notification_credentials: {username: notifier", "600, notification_credentials: {username: eve"
    )
    with pytest.raises(ConfigError, match="/dma/conf is given twice"):
        config_from_spec(load_spec_text(conflicting), blocks.__getitem__, base)
    with pytest.raises(ConfigError, match="/dma/conf is given twice"):  # already in the base config
        config_from_spec(load_spec_text(SPEC), blocks.__getitem__, receiver_config())
