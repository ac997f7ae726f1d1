"""The receiver with the real emulators pushing to it over loopback: DMA, ThingSpace, Stream."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from rxkit import (
    DMA_PASSWORD,
    DMA_USER,
    STREAM_SECRET,
    TS_PASSWORD,
    TS_TOKEN,
    TS_USER,
    Running,
    assert_no_secrets,
    events,
    gaps,
    load_landing,
    receiver_config,
    wait_for,
)

from streamkeeper.errors import ConfigError
from streamkeeper.receiver import create_app
from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.dma import DMASandbox
from streamkeeper.sandbox.stream import StreamSandbox
from streamkeeper.sandbox.thingspace import (
    DEFAULT_ACCOUNT,
    DEFAULT_APP_KEY,
    DEFAULT_APP_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    ThingSpaceSandbox,
)
from streamkeeper.sandbox.tls import TLSFiles
from streamkeeper.vendors.dma import DMAClient
from streamkeeper.vendors.http import RetryPolicy, VendorHTTPError, tls_verify
from streamkeeper.vendors.stream import webhook_signature
from streamkeeper.vendors.thingspace import CreateTargetRequest, ThingSpaceClient

FAST = RetryPolicy(backoff_base=0.01, max_attempts=3)


def dma_client(server: SandboxServer, tls: TLSFiles) -> DMAClient:
    return DMAClient(
        server.url + "/api/rest",
        username="provisioner",
        password=SecretStr("provisioner-pass"),
        verify=tls_verify(tls.cert_pem),
        retry=FAST,
        timeout=5,
    )


def subscribe(client: DMAClient, subject: str, consumer_url: str, password: str = DMA_PASSWORD) -> str:
    created = client.create_subscription(
        subject,
        {
            "consumer_url": consumer_url,
            "time_to_live": 600,
            "username": DMA_USER,
            "password": SecretStr(password),
            "passback": f"{subject}-{password[-4:]}",
        },
    )
    assert created.subscription_identifier
    return created.subscription_identifier


def dma_ids(landing: Path, subscription_id: str) -> list[str]:
    return [
        e["event_id"]
        for e in sorted(events(landing), key=lambda e: e["received_at"])
        if e["vendor"] == "dma" and e["subscription_id"] == subscription_id
    ]


# -- DMA ---------------------------------------------------------------------------------------------------
def test_dma_notifications_credentials_restart_and_repeats(
    serve: Callable[..., SandboxServer],
    start_receiver: Callable[..., Running],
    tls_files: TLSFiles,
    landing: Path,
    db_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    rx = start_receiver()
    dma = DMASandbox()  # validates each consumer URL with a GET before accepting the subscription
    client = dma_client(serve(dma, tls=tls_files), tls_files)
    good = subscribe(client, "conferences/1", f"{rx.url}/dma/conf")
    bad = subscribe(client, "conferences/1/participants", f"{rx.url}/dma/conf", password="wrong-password")
    with pytest.raises(VendorHTTPError, match="did not answer 200"):  # the GET validation: 404
        subscribe(client, "conferences/2", f"{rx.url}/dma/nope")

    for _ in range(3):
        statuses = {d.subscription_id: d.status for d in dma.emit("1")}
        assert statuses == {good: 200, bad: 401}
    first_run = dma_ids(landing, good)
    assert len(first_run) == 3 and dma_ids(landing, bad) == []
    epoch = first_run[0].split(":")[1]
    assert first_run == [f"{good}:{epoch}:{n}" for n in (1, 2, 3)]
    record = events(landing)[0]
    assert (record["stream"], record["account"], record["event_type"]) == ("conf", "dma-test", "UPDATE")
    assert record["payload"]["sequenceNumber"] == 1 and record["occurred_at"] is None

    # send-update-notification-now: the DMA restarts at 1; the receiver starts a new epoch, no collision
    client.send_update_notification_now(good)
    wait_for(lambda: len(dma_ids(landing, good)) == 4, what="the restarted notification")
    dma.emit("1")
    ids = dma_ids(landing, good)
    new_epoch = ids[3].split(":")[1]
    assert int(new_epoch) > int(epoch)
    assert ids[3:] == [f"{good}:{new_epoch}:1", f"{good}:{new_epoch}:2"]
    assert len(set(ids)) == 5 and gaps(landing) == []

    # the sender repeats the last notification: it lands again under the same event id
    last = next(e for e in events(landing) if e["event_id"] == ids[-1])
    repeat = httpx.post(f"{rx.url}/dma/conf", json=last["payload"], auth=(DMA_USER, DMA_PASSWORD))
    assert repeat.status_code == 200 and repeat.json() == {
        "status": "accepted",
        "event_ids": [ids[-1]],
        "repeat": True,
    }
    assert len(dma_ids(landing, good)) == 6 and len(set(dma_ids(landing, good))) == 5
    store = load_landing(landing, db_path)
    counted = store.query(
        "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM events WHERE vendor='dma'"
    )
    assert (int(counted.n[0]), int(counted.d[0])) == (5, 5)
    assert_no_secrets(landing, caplog.text)


def test_dma_gap_while_the_receiver_was_down_is_recorded(
    serve: Callable[..., SandboxServer],
    start_receiver: Callable[..., Running],
    tls_files: TLSFiles,
    landing: Path,
    db_path: Path,
) -> None:
    first = start_receiver()
    dma = DMASandbox()
    client = dma_client(serve(dma, tls=tls_files), tls_files)
    sub = subscribe(client, "conferences/2", f"{first.url}/dma/conf")
    assert [d.status for d in dma.emit("2")] == [200]

    first.stop()  # the receiver is down: the DMA's notification 2 is lost (the DMA does not retry)
    assert [d.status for d in dma.emit("2")] == [None]
    second = start_receiver(port=first.server.port)  # a new process on the same landing area
    assert [d.status for d in dma.emit("2")] == [200]

    ids = dma_ids(landing, sub)
    epoch = ids[0].split(":")[1]
    assert ids == [f"{sub}:{epoch}:1", f"{sub}:{epoch}:3"]  # the state survived: same epoch
    [gap] = gaps(landing)
    assert (gap["vendor"], gap["stream"], gap["subscription_id"]) == ("dma", "conf", sub)
    assert (gap["expected"], gap["received"]) == (2, 3)
    assert second.receiver.counts["dma.gaps"] == 1

    store = load_landing(landing, db_path)
    rows = store.query("SELECT vendor, subscription_id, expected, received FROM event_gaps")
    assert rows.values.tolist() == [["dma", sub, 2, 3]]
    assert int(store.query("SELECT count(*) AS n FROM events").n[0]) == 2


# -- ThingSpace --------------------------------------------------------------------------------------------
def test_thingspace_streamrest_deliveries_over_https(
    serve: Callable[..., SandboxServer],
    start_receiver: Callable[..., Running],
    tls_files: TLSFiles,
    landing: Path,
    db_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    rx = start_receiver(tls=tls_files)
    ts = ThingSpaceSandbox(seed=3)
    ts.delivery_verify = tls_verify(tls_files.cert_pem)
    client = ThingSpaceClient(
        serve(ts).url,
        app_key=DEFAULT_APP_KEY,
        app_secret=SecretStr(DEFAULT_APP_SECRET),
        username=DEFAULT_USERNAME,
        password=SecretStr(DEFAULT_PASSWORD),
        account_name=DEFAULT_ACCOUNT,
        retry=FAST,
        timeout=5,
    )

    def target(name: str, path: str, **credentials: Any) -> str:
        request = CreateTargetRequest.streamrest(name, f"{rx.url}/thingspace/{path}", **credentials)
        return client.create_target(request).id

    def subscription(target_id: str, kind: str) -> str:
        body = {"name": kind, "streamkind": kind, "targetid": target_id, "allowaggregation": False}
        return client.create_subscription(body).id

    basic = target("rx", "devices", username=TS_USER, password=SecretStr(TS_PASSWORD))
    events_sub = subscription(basic, "ts.event")
    subscription(
        target("rx-wrong", "devices", username=TS_USER, password=SecretStr("nope")), "ts.event.diagnostics"
    )
    subscription(target("rx-bearer", "tokens", bearer_token=SecretStr(TS_TOKEN)), "ts.event.configuration")

    sent = ts.emit(DEFAULT_ACCOUNT, 3)
    assert [(d.ok, d.status) for d in sent] == [(True, 200)] * 3
    landed = events(landing)
    # the target is part of each event's identity (the same data.id on another target is another event)
    assert sorted(e["event_id"] for e in landed) == sorted(f"devices:{i}" for d in sent for i in d.event_ids)
    assert all(e["previous_event_id"] == e["event_id"].removeprefix("devices:") for e in landed)
    one = landed[0]
    assert (one["vendor"], one["stream"], one["event_type"], one["account"]) == (
        "thingspace",
        "ts.event",
        "create",
        DEFAULT_ACCOUNT,
    )
    assert one["occurred_at"] and f"devices:{one['payload']['data']['id']}" == one["event_id"]
    assert one["route"] == "/thingspace/devices"

    client.update_subscription({"id": events_sub, "allowaggregation": True})
    [aggregated] = ts.emit(DEFAULT_ACCOUNT, 4)  # one message holding a list of 4 events
    assert aggregated.ok and len(events(landing)) == 7
    assert {f"devices:{i}" for i in aggregated.event_ids} <= {e["event_id"] for e in events(landing)}

    refused = ts.emit(DEFAULT_ACCOUNT, 2, "ts.event.diagnostics")
    assert [(d.ok, d.status) for d in refused] == [(False, 401)] * 2
    assert not [e for e in events(landing) if e["stream"] == "ts.event.diagnostics"]
    assert all(d.ok for d in ts.emit(DEFAULT_ACCOUNT, 2, "ts.event.configuration"))
    assert len([e for e in events(landing) if e["stream"] == "ts.event.configuration"]) == 2

    # ThingSpace sends a message again (the sender's retry): one event id, loaded once
    again = httpx.post(
        f"{rx.url}/thingspace/devices",
        json=one["payload"],
        auth=(TS_USER, TS_PASSWORD),
        verify=tls_verify(tls_files.cert_pem),
    )
    assert again.status_code == 200 and again.json()["event_ids"] == [one["event_id"]]
    assert len(events(landing)) == 10 and len({e["event_id"] for e in events(landing)}) == 9
    store = load_landing(landing, db_path)
    assert int(store.query("SELECT count(*) AS n FROM events WHERE vendor='thingspace'").n[0]) == 9
    assert_no_secrets(landing, caplog.text, *(d.model_dump_json() for d in ts.deliveries))


# -- Stream ------------------------------------------------------------------------------------------------
def test_stream_webhooks_signed_and_repeated(
    start_receiver: Callable[..., Running], landing: Path, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rx = start_receiver()
    stream = StreamSandbox()
    url = f"{rx.url}/stream/orders"
    order = stream.webhook_event("order.created", {"order_id": "o-1", "location_id": "loc-1"})
    assert stream.send_webhook(url, STREAM_SECRET, order) == 200
    assert stream.send_webhook(url, STREAM_SECRET, order) == 200  # Stream repeats the delivery
    assert stream.send_webhook(url, "not-the-secret", stream.webhook_event("order.updated", {})) == 401
    unsigned = httpx.post(url, json=stream.webhook_event("order.updated", {}))
    assert unsigned.status_code == 401

    landed = events(landing)
    assert len(landed) == 2 and {e["event_id"] for e in landed} == {order["id"]}
    record = landed[0]
    assert (record["vendor"], record["stream"], record["event_type"], record["account"]) == (
        "stream",
        "orders",
        "order.created",
        "org-1",
    )
    assert record["payload"] == order and record["occurred_at"].endswith("+00:00")
    store = load_landing(landing, db_path)
    assert store.query("SELECT event_id FROM events").event_id.tolist() == [order["id"]]
    assert rx.receiver.counts["stream.401"] == 2
    assert_no_secrets(landing, caplog.text)


# -- refusals ----------------------------------------------------------------------------------------------
def raw_exchange(port: int, head: bytes, body_chunks: list[bytes] = ()) -> bytes:  # type: ignore[assignment]
    """Send a request head (and chunks) on a raw socket; return the answer up to the server's close."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        for chunk in body_chunks:
            sock.sendall(chunk)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_refused_deliveries_land_nothing(start_receiver: Callable[..., Running], landing: Path) -> None:
    rx = start_receiver(receiver_config(max_body_bytes=4096))
    dma_auth = (DMA_USER, DMA_PASSWORD)
    notification = {"subscriptionUrl": "https://dma/api/rest/subscriptions/1", "sequenceNumber": 1}

    def stream_post(body: bytes) -> httpx.Response:
        signature = webhook_signature(body, STREAM_SECRET)
        return httpx.post(f"{rx.url}/stream/orders", content=body, headers={"X-Stream-Signature": signature})

    cases: list[tuple[int, Callable[[], httpx.Response]]] = [
        # 401: no, wrong or malformed credentials
        (401, lambda: httpx.post(f"{rx.url}/dma/conf", json=notification)),
        (401, lambda: httpx.post(f"{rx.url}/dma/conf", json=notification, auth=(DMA_USER, "x"))),
        (401, lambda: httpx.post(f"{rx.url}/dma/conf", json=notification, auth=("x", DMA_PASSWORD))),
        (
            401,
            lambda: httpx.post(
                f"{rx.url}/dma/conf", json=notification, headers={"Authorization": "Basic !!"}
            ),
        ),
        (401, lambda: httpx.post(f"{rx.url}/thingspace/devices", json={"data": {}}, auth=(TS_USER, "x"))),
        (
            401,
            lambda: httpx.post(f"{rx.url}/thingspace/tokens", json={"data": {}}, auth=(TS_USER, TS_PASSWORD)),
        ),
        (
            401,
            lambda: httpx.post(
                f"{rx.url}/stream/orders", content=b"{}", headers={"X-Stream-Signature": "ab"}
            ),
        ),
        # 400: malformed JSON, or JSON that is not the vendor's shape
        (400, lambda: httpx.post(f"{rx.url}/dma/conf", content=b"{not json", auth=dma_auth)),
        (400, lambda: httpx.post(f"{rx.url}/dma/conf", content=b'{"sequenceNumber": NaN}', auth=dma_auth)),
        (400, lambda: httpx.post(f"{rx.url}/dma/conf", json={"sequenceNumber": 1}, auth=dma_auth)),
        (
            400,
            lambda: httpx.post(
                f"{rx.url}/dma/conf", json={**notification, "sequenceNumber": 0}, auth=dma_auth
            ),
        ),
        (400, lambda: httpx.post(f"{rx.url}/dma/conf", json=[notification], auth=dma_auth)),
        (
            400,
            lambda: httpx.post(
                f"{rx.url}/thingspace/devices", content=b"\xff\xfe", auth=(TS_USER, TS_PASSWORD)
            ),
        ),
        (400, lambda: httpx.post(f"{rx.url}/thingspace/devices", json=[], auth=(TS_USER, TS_PASSWORD))),
        (
            400,
            lambda: httpx.post(
                f"{rx.url}/thingspace/devices", json=[{"data": {"id": "1"}}, 3], auth=(TS_USER, TS_PASSWORD)
            ),
        ),
        (400, lambda: stream_post(b'{"id": "evt_1", ')),
        (400, lambda: stream_post(b'["evt_1"]')),
        # 413: over the limit, declared or not
        (413, lambda: stream_post(json.dumps({"id": "big", "data": "x" * 5000}).encode())),
        (
            413,
            lambda: httpx.post(f"{rx.url}/dma/conf", json={**notification, "pad": "x" * 5000}, auth=dma_auth),
        ),
        # unknown names and methods
        (404, lambda: httpx.post(f"{rx.url}/stream/nope", content=b"{}")),
        (404, lambda: httpx.get(f"{rx.url}/dma/nope")),
        (405, lambda: httpx.get(f"{rx.url}/stream/orders")),
    ]
    for expected, send in cases:
        response = send()
        assert response.status_code == expected, (expected, response.text)
        if expected in (400, 401, 413):
            assert set(response.json()) == {"error", "message"}
    assert httpx.get(f"{rx.url}/dma/conf").status_code == 200  # the DMA's validation GET

    # 413 from the declared length alone: the answer comes although no byte of the body was sent
    head = b"POST /stream/orders HTTP/1.1\r\nHost: rx\r\nContent-Type: application/json\r\n"
    answer = raw_exchange(rx.server.port, head + b"Content-Length: 100000000\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413") and b"connection: close" in answer.lower()
    # 413 while streaming: a chunked body is cut off as soon as it passes the limit
    chunk = b"800\r\n" + b"a" * 0x800 + b"\r\n"
    answer = raw_exchange(rx.server.port, head + b"Transfer-Encoding: chunked\r\n\r\n", [chunk] * 3)
    assert answer.startswith(b"HTTP/1.1 413")

    assert not list(landing.glob("*/*/*"))  # nothing landed, not even a temporary file
    counts = rx.receiver.counts
    assert (counts["dma.401"], counts["stream.413"], counts["thingspace.400"]) == (4, 3, 3)
    # the receiver still works after all that
    assert stream_post(json.dumps({"id": "evt_ok", "type": "t"}).encode()).status_code == 200
    assert [e["event_id"] for e in events(landing)] == ["evt_ok"]


def test_one_receiver_per_landing_directory(start_receiver: Callable[..., Running], landing: Path) -> None:
    start_receiver()
    with pytest.raises(ConfigError, match="another receiver"):
        create_app(receiver_config(), landing=landing)
