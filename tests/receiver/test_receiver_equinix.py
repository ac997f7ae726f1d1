"""The receiver's Equinix route: the emulator pushes (WEBHOOK over mutual TLS, the seed's PUSH with its token),
the receiver authenticates, lands, and ingest loads each message once, also when it is pulled too."""

from __future__ import annotations

import base64
import hashlib
import ssl
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from rxkit import events, load_landing, wait_for

from streamkeeper.ingest import drain_equinix
from streamkeeper.receiver import ReceiverConfig, create_app
from streamkeeper.receiver.config import EquinixPush
from streamkeeper.receiver.server import ReceiverServer
from streamkeeper.sandbox.equinix import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, EquinixSandbox
from streamkeeper.sandbox.tls import TLSFiles, self_signed
from streamkeeper.vendors.equinix import EquinixClient, SubscriptionMessage
from streamkeeper.vendors.http import RetryPolicy

TOKEN = "S3NTINEL-equinix-push-token"
FAMILIES = {
    "environmental": [{"accountNumber": "135888", "ibx": ["PA4"]}],
    "systemAlert": [{"accountNumber": "135888", "ibx": ["PA4"]}],
}


def fingerprint(files: TLSFiles) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(files.cert_pem)).hexdigest()


class Receiving:
    """A receiver app on loopback (HTTPS with client certificates asked for, when `client_ca` is given)."""

    def __init__(self, config: ReceiverConfig, landing: Path, tls: TLSFiles | None, client_ca: Path | None):
        self.app = create_app(config, landing=landing)
        self.server = ReceiverServer(
            self.app,
            certfile=tls.certfile if tls else None,
            keyfile=tls.keyfile if tls else None,
            client_ca=client_ca,
        ).start()

    def stop(self) -> None:
        self.server.stop()
        self.app.state.receiver.close()


@pytest.fixture
def receiving(landing: Path) -> Iterator[Any]:
    started: list[Receiving] = []

    def start(
        config: ReceiverConfig, tls: TLSFiles | None = None, client_ca: Path | None = None
    ) -> Receiving:
        one = Receiving(config, landing, tls, client_ca)
        started.append(one)
        return one

    yield start
    for one in started:
        one.stop()


@pytest.fixture
def equinix(serve: Any) -> tuple[EquinixSandbox, EquinixClient]:
    sandbox = EquinixSandbox()
    sandbox.emit_step = timedelta(hours=12)  # a heartbeat every 14 messages
    url = serve(sandbox).url
    client = EquinixClient(
        url,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=SecretStr(DEFAULT_CLIENT_SECRET),
        api_generation="streaming",
        retry=RetryPolicy(backoff_base=0.01),
    )
    return sandbox, client


def test_webhook_over_mutual_tls_lands_each_message_once_beside_the_pull_feed(
    equinix: tuple[EquinixSandbox, EquinixClient],
    receiving: Any,
    tls_files: TLSFiles,
    landing: Path,
    db_path: Path,
) -> None:
    sandbox, client = equinix
    sandbox.webhook_verify = tls_files.cert_pem  # the receiver's certificate (self-signed here)
    config = ReceiverConfig(
        equinix={
            "paris": EquinixPush(
                account="eqx", client_certificate_sha256=[fingerprint(sandbox.webhook_certificate)]
            )
        }
    )
    rx = receiving(config, tls=tls_files, client_ca=sandbox.webhook_certificate.certfile)
    channel = {
        "channelType": "WEBHOOK",
        "webhookChannelConfiguration": {
            "url": f"{rx.server.url}/equinix/paris",
            "batchSize": 5,
            "numberOfRetries": 1,
        },
    }
    subscription = client.create_streaming_subscription({"messageType": FAMILIES, "channel": channel})
    sent = sandbox.emit(subscription.id, 33)

    assert [d.messages for d in sandbox.deliveries] == [5, 5, 5, 5, 5, 5, 3]  # doc: batchSize
    assert all(d.ok and d.attempts == 1 for d in sandbox.deliveries), sandbox.deliveries
    parsed = [SubscriptionMessage.model_validate(m) for m in sent]
    readings = [m for m in parsed if not m.is_heartbeat]
    assert len(parsed) - len(readings) == 33 // 14  # heartbeats: acknowledged, not landed
    landed = wait_for(lambda: len(events(landing)) == len(readings) and events(landing), what="landing")
    assert {r["stream"] for r in landed} == {subscription.id} == {r["subscription_id"] for r in landed}
    assert {r["event_id"] for r in landed} == {m.message_id for m in readings}
    assert {r["account"] for r in landed} == {"eqx"} and all(r["occurred_at"] for r in landed)

    store = load_landing(landing, db_path)
    with client:
        pulled = drain_equinix(store, client, "eqx")  # the same messages, pulled: each stays once
    assert pulled.received == 33 and pulled.loaded == 0 and pulled.duplicates == len(readings)
    rows = store.query("SELECT vendor, stream, event_id FROM events")
    assert len(rows) == len(readings) and set(rows["stream"]) == {subscription.id}


def test_webhook_refuses_a_sender_without_the_pinned_certificate(
    equinix: tuple[EquinixSandbox, EquinixClient],
    receiving: Any,
    tls_files: TLSFiles,
    tmp_path: Path,
    landing: Path,
) -> None:
    sandbox, _ = equinix
    stranger = self_signed(tmp_path / "stranger", common_name="not-equinix")
    both = tmp_path / "both.pem"  # the TLS layer trusts both; the route pins only Equinix's
    both.write_text(sandbox.webhook_certificate.cert_pem + stranger.cert_pem)
    config = ReceiverConfig(
        equinix={"paris": EquinixPush(client_certificate_sha256=[fingerprint(sandbox.webhook_certificate)])}
    )
    rx = receiving(config, tls=tls_files, client_ca=both)
    url = f"{rx.server.url}/equinix/paris"
    message = [
        {
            "type": "environmental",
            "data": {"ibx": "PA4", "streamId": "s", "readingTime": "2023-10-03 13:09:32"},
        }
    ]

    def post(cert: TLSFiles | None) -> httpx.Response:
        context = ssl.create_default_context(cadata=tls_files.cert_pem)
        if cert is not None:
            context.load_cert_chain(str(cert.certfile), str(cert.keyfile))
        return httpx.post(url, json=message, verify=context)

    assert post(None).status_code == 401  # no client certificate
    stranger_answer = post(stranger)
    assert stranger_answer.status_code == 401 and stranger_answer.json()["error"] == "client_certificate"
    assert events(landing) == []
    assert post(sandbox.webhook_certificate).status_code == 200
    assert len(events(landing)) == 1


def test_the_channels_ssl_certificate_is_what_equinix_checks_the_receiver_against(
    equinix: tuple[EquinixSandbox, EquinixClient], receiving: Any, tls_files: TLSFiles, tmp_path: Path
) -> None:
    sandbox, client = equinix  # webhook_verify stays the system CAs: only sslCertificate can vouch here
    config = ReceiverConfig(
        equinix={"paris": EquinixPush(client_certificate_sha256=[fingerprint(sandbox.webhook_certificate)])}
    )
    rx = receiving(config, tls=tls_files, client_ca=sandbox.webhook_certificate.certfile)
    other = self_signed(tmp_path / "other", common_name="other-receiver")
    for pinned, delivered in ((tls_files.cert_pem, True), (other.cert_pem, False)):
        sandbox.deliveries.clear()
        webhook = {
            "url": f"{rx.server.url}/equinix/paris",
            "sslCertificate": base64.b64encode(pinned.encode()).decode(),  # doc: base64
            "numberOfRetries": 1,
        }
        subscription = client.create_streaming_subscription(
            {
                "messageType": FAMILIES,
                "channel": {"channelType": "WEBHOOK", "webhookChannelConfiguration": webhook},
            }
        )
        sandbox.emit(subscription.id, 3)
        assert [d.ok for d in sandbox.deliveries] == [delivered], sandbox.deliveries
        client.delete_streaming_subscription(subscription.id)


def test_the_seed_apis_push_carries_its_token(
    equinix: tuple[EquinixSandbox, EquinixClient], receiving: Any, landing: Path
) -> None:
    sandbox, client = equinix
    rx = receiving(ReceiverConfig(equinix={"org": EquinixPush(account="eqx-org", token=SecretStr(TOKEN))}))
    url = f"{rx.server.url}/equinix/org"
    body = {
        "environment": [{"accountNo": "133724", "ibx": "PA4"}],
        "config": {"method": "PUSH", "provider": "GOOGLE", "url": url, "token": TOKEN},
    }
    subscription = client.create_streams_subscription(body)
    sandbox.emit(subscription.subscription_id, 12)
    assert [(d.channel, d.ok) for d in sandbox.deliveries] == [("PUSH", True), ("PUSH", True)]
    landed = events(landing)
    assert len(landed) == 12 and {r["stream"] for r in landed} == {subscription.subscription_id}
    assert {r["account"] for r in landed} == {"eqx-org"}

    client.update_streams_subscription(
        subscription.subscription_id, {**body, "config": {**body["config"], "token": "S3NTINEL-wrong"}}
    )
    sandbox.deliveries.clear()
    sandbox.emit(subscription.subscription_id, 1)
    assert [(d.status, d.attempts) for d in sandbox.deliveries] == [(401, 1)]  # a 401 is not tried again
    assert len(events(landing)) == 12
    for text in [p.read_text() for p in landing.rglob("*.json")]:
        assert TOKEN not in text


def test_bad_bodies_are_400_and_heartbeats_are_acknowledged_without_landing(
    receiving: Any, landing: Path
) -> None:
    rx = receiving(ReceiverConfig(equinix={"org": EquinixPush(token=SecretStr(TOKEN))}))
    url = f"{rx.server.url}/equinix/org"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for bad in (b"[]", b"{}", b'[{"type": "power"}]', b'{"type": 3, "data": {}}', b"not json"):
        assert httpx.post(url, content=bad, headers=auth).status_code == 400, bad
    assert httpx.post(f"{rx.server.url}/equinix/nobody", json=[], headers=auth).status_code == 404
    beats = [
        {"type": "system-alert", "data": {"ibx": "PA4", "heartbeat": True}},  # the definition
        {"type": "custom-alert", "heartbeat": "true", "data": {"ibx": "PA4"}},  # the prose docs
    ]
    answer = httpx.post(url, json=beats, headers=auth)
    assert answer.status_code == 200 and answer.json()["heartbeats"] == 2 and answer.json()["event_ids"] == []
    assert events(landing) == []


@pytest.mark.slow
def test_the_demo_provisions_a_webhook_channel_and_receives_by_webhook_and_by_pull(
    prefect_api: None, tmp_path: Path
) -> None:
    from flows import demo
    from streamkeeper.sandbox.runner import Sandbox
    from streamkeeper.spec import load_spec
    from streamkeeper.store import HistoryStore

    lines: list[str] = []
    with (
        Sandbox.start(state_dir=tmp_path / "sandbox", stream={"auto_authorize": True}) as sandbox,
        demo.open_stage(
            sandbox,
            demo.Credentials(),
            tmp_path / "landing",
            lines.append,
            prefix="eqdemo",
            receiver_port=0,
            db_path=str(tmp_path / "history.duckdb"),
            work_dir=tmp_path,
        ) as stage,
    ):
        spec = load_spec(stage.spec)
        [connection] = spec.equinix
        channels = {s.channel.type for s in connection.subscriptions if s.channel}
        assert connection.api == "streaming" and channels == {"WEBHOOK"}  # a type the definition allows
        demo.apply(stage, lines.append)
        held: Any = sandbox.apps["equinix"]
        assert {r["channel"]["channelType"] for r in held.streaming.values()} == {"WEBHOOK"}
        sent = demo.send_events(stage, lines.append)
        webhooks = [d for d in held.deliveries if d.channel == "WEBHOOK"]
        assert webhooks and all(d.ok for d in webhooks), webhooks  # over mutual TLS, pinned both ways
        assert stage.receiver.counts["equinix.accepted"] == len(webhooks)
        summary = demo.ingest(stage, lines.append)
        messages = {sub: len(m) for sub, m in sent.equinix.items()}
        assert len(messages) == 2 and sum(messages.values()) == 40
        rows = HistoryStore(stage.db_path).query(
            "SELECT stream, count(*) AS n FROM events WHERE vendor = 'equinix' GROUP BY stream"
        )
        assert dict(zip(rows["stream"], rows["n"], strict=True)) == messages  # each message once
        assert summary.duplicates >= 40  # the pull feed re-read every message the webhook had landed


def test_routes_come_from_the_spec_and_bad_route_configs_are_named() -> None:
    from streamkeeper.errors import ConfigError
    from streamkeeper.receiver.config import config_from_spec
    from streamkeeper.spec import load_spec_text
    from streamkeeper.yamlspec import load_yaml_text

    spec = load_spec_text(
        """
equinix:
  - connection: eqx-org
    subscriptions:
      - name: org
        families: {power: [{account: "1", ibx: PA4}]}
        config: {method: PUSH, provider: GOOGLE, url: "https://rx.example.com/equinix/org", token_block: eq-push}
"""
    )
    config = config_from_spec(spec, {"eq-push": TOKEN}.__getitem__)
    route = config.equinix["org"]
    assert route.account == "eqx-org" and route.token is not None and route.token.get_secret_value() == TOKEN
    assert TOKEN in config.secrets() and TOKEN not in repr(config)
    for text, expected in (
        ("equinix: {a: {}}", "give either token (a streams PUSH) or client_certificate_sha256"),
        ("equinix: {a: {token: t, client_certificate_sha256: ['" + "0" * 64 + "']}}", "give either token"),
        ("equinix: {a: {client_certificate_sha256: ['abc']}}", "each fingerprint is 64 hex digits"),
    ):
        with pytest.raises(ConfigError) as refused:
            load_yaml_text(text, ReceiverConfig, source="rx.yaml")
        assert str(refused.value).startswith("rx.yaml:1: equinix.a") and expected in str(refused.value)
