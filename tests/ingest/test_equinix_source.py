"""The Equinix pull feed: the real client against the emulator, offsets committed with the rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from pydantic import SecretStr

from streamkeeper.ingest import drain_equinix, pull_subscriptions
from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.equinix import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, EquinixSandbox
from streamkeeper.store import HistoryStore
from streamkeeper.vendors.equinix import EquinixClient, SubscriptionMessage
from streamkeeper.vendors.http import RetryPolicy

PULL = {
    "messageType": {
        "environmental": [{"accountNumber": "116710", "ibx": ["LD9"], "level": ["CAGE"]}],
        "power": [{"accountNumber": "116710", "ibx": ["LD9", "LD5"]}],
        "systemAlert": [{"accountNumber": "116710", "ibx": ["LD9"]}],  # doc: heartbeats come with alerts
    },
    # a closed loopback port: the emulator's pushes fail at once (no lookup of an outside name)
    "channel": {"channelType": "WEBHOOK", "webhookChannelConfiguration": {"url": "https://127.0.0.1:9/eq"}},
}


@pytest.mark.parametrize("heartbeat_style", ["data", "message"])
def test_pull_feed_pages_from_the_stored_offset_and_skips_heartbeats(
    serve: Callable[..., SandboxServer], store: HistoryStore, heartbeat_style: str
) -> None:
    sandbox = EquinixSandbox()
    sandbox.heartbeat_style = heartbeat_style  # type: ignore[assignment]  # the definition's, the prose's
    sandbox.emit_step = timedelta(days=1)  # a heartbeat every 7 messages
    server = serve(sandbox)
    client = EquinixClient(
        server.url,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=SecretStr(DEFAULT_CLIENT_SECRET),
        api_generation="streaming",
        retry=RetryPolicy(backoff_base=0.01),
    )
    with client:
        subscription = client.create_streaming_subscription(PULL)
        assert pull_subscriptions(client) == [subscription.id]
        sandbox.emit(subscription.id, 90)

        first = drain_equinix(store, client, "equinix-org", max_events=40, page_size=20)
        assert first.received == 40 and first.batches == 2
        assert store.cursors("equinix:") == {f"equinix:{subscription.id}": "40"}

        sandbox.emit(subscription.id, 35)  # more arrive meanwhile
        second = drain_equinix(store, client, "equinix-org", page_size=20)
        assert second.received == 85 and second.duplicates == 0
        assert drain_equinix(store, client, "equinix-org").received == 0

    feed = [SubscriptionMessage.model_validate(m) for m in sandbox.feed(subscription.id)]
    readings = [m for m in feed if not m.is_heartbeat]
    assert first.skipped + second.skipped == len(feed) - len(readings) > 0
    rows = store.query("SELECT * FROM events")
    assert len(rows) == len(readings) == first.loaded + second.loaded
    assert set(rows["event_id"]) == {m.message_id for m in readings}
    assert set(rows["vendor"]) == {"equinix"} and set(rows["stream"]) == {subscription.id}
    assert set(rows["account"]) == {"equinix-org"}
    assert set(rows["event_type"]) <= {"environmental", "power", "metered-power", "system-alert"}
    assert rows["occurred_at"].notna().all()
    # the definition's string values are stored as they came, and its "2023-10-03 13:09:32" times parse
    payloads = [json.loads(p) for p in rows["payload"]]
    readings = [p["data"]["reading"]["value"] for p in payloads if "reading" in p["data"]]
    assert readings and all(isinstance(v, str) for v in readings)
    by_id = {m.message_id: m for m in feed}
    for event_id, occurred in zip(rows["event_id"], rows["occurred_at"], strict=True):
        assert occurred.to_pydatetime() == by_id[event_id].occurred_at
    assert store.cursors("equinix:") == {f"equinix:{subscription.id}": str(len(feed))}
