"""What a hostile sender or an odd vendor sends the receiver: never a 5xx, never a forged log line, and
everything acknowledged loads (issue 11, classes 1 to 5)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from rxkit import (
    DMA_PASSWORD,
    DMA_USER,
    STREAM_SECRET,
    TS_PASSWORD,
    TS_TOKEN,
    TS_USER,
    Running,
    events,
    load_landing,
    receiver_config,
)

from streamkeeper.sandbox.stream import StreamSandbox
from streamkeeper.vendors.stream import webhook_signature

DMA_AUTH = (DMA_USER, DMA_PASSWORD)
TS_AUTH = (TS_USER, TS_PASSWORD)
NOTIFICATION = {"subscriptionUrl": "https://dma.test/api/rest/subscriptions/77", "notificationType": "UPDATE"}


def signed_post(url: str, body: bytes, signature: bytes | None = None) -> httpx.Response:
    value = signature or webhook_signature(body, STREAM_SECRET).encode()
    return httpx.post(url, content=body, headers=[(b"X-Stream-Signature", value)])


# -- class 1: a vendor's odd timestamp is data, the event loads ------------------------------------------
def test_odd_vendor_times_are_acknowledged_and_loaded_with_a_null_time(
    start_receiver: Callable[..., Running], landing: Path, db_path: Path
) -> None:
    rx = start_receiver()
    never = {
        "kind": "ts.event",
        "action": "create",
        "data": {"id": "ts-never", "createdon": "0001-01-01T00:00:00Z"},
    }
    assert httpx.post(f"{rx.url}/thingspace/devices", json=never, auth=TS_AUTH).status_code == 200
    stream = StreamSandbox()
    url = f"{rx.url}/stream/orders"
    for created_at in (0, 86400, "1969-07-20T20:17:40Z", -1, 10**30):
        event = {**stream.webhook_event("order.created", {"n": str(created_at)}), "created_at": created_at}
        assert stream.send_webhook(url, STREAM_SECRET, event) == 200

    store = load_landing(landing, db_path)  # every record the receiver wrote loads: none is rejected
    rows = store.query("SELECT vendor, occurred_at, payload FROM events ORDER BY vendor, received_at")
    assert len(rows) == 6 and rows["occurred_at"].isna().all()
    raw = [json.loads(p) for p in rows["payload"]]
    assert raw[0]["created_at"] == 0 and raw[-1]["data"]["createdon"] == "0001-01-01T00:00:00Z"  # kept


# -- class 2: what a typed column cannot hold is refused before the 2xx ----------------------------------
def test_a_sequence_number_beyond_a_bigint_is_refused_before_anything_lands(
    start_receiver: Callable[..., Running], landing: Path
) -> None:
    rx = start_receiver()
    for seq in (2**63, 2**64 + 5, "18446744073709551621", "9" * 5000, 1.5, True, "\u00b2", "\u0663"):
        answer = httpx.post(f"{rx.url}/dma/conf", json={**NOTIFICATION, "sequenceNumber": seq}, auth=DMA_AUTH)
        assert answer.status_code == 400, (seq, answer.text)
        assert answer.json()["error"] == "not_a_notification"
    assert not list(landing.glob("*/*/*"))
    top = httpx.post(f"{rx.url}/dma/conf", json={**NOTIFICATION, "sequenceNumber": 2**63 - 1}, auth=DMA_AUTH)
    assert top.status_code == 200  # the largest BIGINT is fine, and its gap record loads


# -- class 3: the same id from two targets is two events -----------------------------------------------
def test_the_same_thingspace_id_on_two_targets_is_two_events(
    start_receiver: Callable[..., Running], landing: Path, db_path: Path
) -> None:
    config = receiver_config(
        thingspace={
            "devices": {"account": "0000000000-00001", "username": TS_USER, "password": TS_PASSWORD},
            "tokens": {"account": "0000000000-00002", "bearer_token": TS_TOKEN},
        }
    )
    rx = start_receiver(config)
    message = {
        "kind": "ts.event",
        "action": "create",
        "data": {"id": "evt-1", "createdon": "2026-01-01T00:00:00Z"},
    }
    no_id = {"kind": "ts.event", "action": "update", "data": {"state": "on"}}  # the content hash is its id
    headers = {"Authorization": f"Bearer {TS_TOKEN}"}
    for body in (message, no_id):
        assert httpx.post(f"{rx.url}/thingspace/devices", json=body, auth=TS_AUTH).status_code == 200
        assert httpx.post(f"{rx.url}/thingspace/tokens", json=body, headers=headers).status_code == 200
    assert (
        httpx.post(f"{rx.url}/thingspace/devices", json=message, auth=TS_AUTH).status_code == 200
    )  # a retry

    store = load_landing(landing, db_path)
    rows = store.query("SELECT account, event_id FROM events ORDER BY account, event_id")
    assert rows["account"].tolist() == ["0000000000-00001"] * 2 + ["0000000000-00002"] * 2
    assert {e.split(":", 1)[0] for e in rows["event_id"]} == {"devices", "tokens"}
    assert "devices:evt-1" in rows["event_id"].tolist() and "tokens:evt-1" in rows["event_id"].tolist()


# -- class 4: a sender's mistake is a 4xx, never a 500 ----------------------------------------------------
def test_what_used_to_be_a_500_is_a_4xx_and_lands_nothing(
    start_receiver: Callable[..., Running], landing: Path
) -> None:
    rx = start_receiver()
    stream_url = f"{rx.url}/stream/orders"
    good = json.dumps({"id": "evt_1", "type": "order.created"}).encode()
    lone = b'{"id": "evt_2", "note": "\\ud800 alone"}'
    reversed_pair = b'{"id": "evt_3", "note": "\\udc00\\ud800"}'
    cases = [
        # a non-ASCII signature (no credentials needed to reach it): cannot match
        (401, lambda: signed_post(stream_url, good, "\u00e9".encode() * 64)),
        (401, lambda: httpx.post(stream_url, content=good, headers=[(b"X-Stream-Signature", b"\xff\xfe")])),
        (
            401,
            lambda: httpx.post(
                f"{rx.url}/dma/conf", json=NOTIFICATION, headers=[(b"Authorization", b"Basic \xe9")]
            ),
        ),
        # unpaired UTF-16 surrogates, escaped in the JSON text or raw in its bytes
        (400, lambda: signed_post(stream_url, lone)),
        (400, lambda: signed_post(stream_url, reversed_pair)),
        (
            400,
            lambda: signed_post(
                stream_url, '{"id": "evt_4", "k": "x\ud800"}'.encode("utf-8", "surrogatepass")
            ),
        ),
        (
            400,
            lambda: httpx.post(
                f"{rx.url}/dma/conf",
                content=b'{"subscriptionIdentifier": "\\udfff", "sequenceNumber": 1}',
                auth=DMA_AUTH,
            ),
        ),
        (
            400,
            lambda: httpx.post(
                f"{rx.url}/thingspace/devices", content=b'{"data": {"\\ud800": 1}}', auth=TS_AUTH
            ),
        ),
        # non-ASCII digits in a DMA sequence number
        (
            400,
            lambda: httpx.post(
                f"{rx.url}/dma/conf", json={**NOTIFICATION, "sequenceNumber": "\u00b2"}, auth=DMA_AUTH
            ),
        ),
        # numbers beyond a double, and ids and kinds of the wrong type
        (400, lambda: signed_post(stream_url, b'{"id": "evt_5", "amount": 1e999}')),
        (
            400,
            lambda: httpx.post(
                f"{rx.url}/dma/conf", json={**NOTIFICATION, "subscriptionUrl": "http://[::1"}, auth=DMA_AUTH
            ),
        ),
        (
            400,
            lambda: httpx.post(
                f"{rx.url}/thingspace/devices", json={"kind": ["x"], "data": {}}, auth=TS_AUTH
            ),
        ),
    ]
    for expected, send in cases:
        answer = send()
        assert answer.status_code == expected, (expected, answer.status_code, answer.text)
        assert set(answer.json()) == {"error", "message"}
    assert not list(landing.glob("*/*/*"))
    # a surrogate pair (an emoji written as two escapes) is fine
    assert signed_post(stream_url, b'{"id": "evt_6", "note": "\\ud83d\\ude00"}').status_code == 200
    assert [e["payload"]["note"] for e in events(landing)] == ["\U0001f600"]


# -- class 5: untrusted values never forge a log line ---------------------------------------------------
def test_untrusted_values_are_logged_escaped(
    start_receiver: Callable[..., Running], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streamkeeper.receiver")
    rx = start_receiver()
    forged = "x\n2026-01-01 00:00:00 WARNING streamkeeper.receiver: all good\x1b[2J"
    assert httpx.post(f"{rx.url}/dma/x%0aFAKE%20LINE%1b%5b31m", json={}).status_code == 404
    assert httpx.post(f"{rx.url}/stream/evil%0d%0aINFO%20ok", content=b"{}").status_code == 404
    # an authenticated DMA whose subscription id holds a newline: its gap warning is one line
    body = {"subscriptionIdentifier": forged, "sequenceNumber": 5}
    assert httpx.post(f"{rx.url}/dma/conf", json=body, auth=DMA_AUTH).status_code == 200

    lines = [r.getMessage() for r in caplog.records if r.name == "streamkeeper.receiver"]
    assert len(lines) == 3, lines
    for line in lines:
        assert "\n" not in line and "\r" not in line and "\x1b" not in line, line
    assert r"'x\nFAKE LINE\x1b[31m'" in lines[0] and r"\r\nINFO ok" in lines[1]
    assert r"'x\n2026-01-01" in lines[2] and "notifications 1..4 not received" in lines[2]
