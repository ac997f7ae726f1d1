"""Contract tests: the DMA client against the DMA emulator over HTTPS on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from streamkeeper.errors import ConfigError
from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.dma import DMASandbox
from streamkeeper.sandbox.tls import TLSFiles, self_signed
from streamkeeper.vendors.dma import MAX_TIME_TO_LIVE, DMAClient
from streamkeeper.vendors.http import (
    AuthenticationFailed,
    Conflict,
    MalformedResponse,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    RequestInvalid,
    RetryPolicy,
    VendorUnreachable,
    tls_verify,
)

FAST = RetryPolicy(backoff_base=0.01, max_attempts=4)


@pytest.fixture
def dma() -> DMASandbox:
    return DMASandbox(validate_consumer_url=False)


@pytest.fixture
def server(serve: Callable[..., SandboxServer], dma: DMASandbox, tls_files: TLSFiles) -> SandboxServer:
    return serve(dma, tls=tls_files)


def client_for(
    server: SandboxServer,
    tls: TLSFiles,
    user: str = "provisioner",
    password: str | None = None,
    fmt: str = "json",
    version: str = "v1",
    **kwargs: Any,
) -> DMAClient:
    return DMAClient(
        server.url + "/api/rest",
        username=user,
        password=SecretStr(password or f"{user}-pass"),
        verify=tls_verify(tls.cert_pem),
        media_format=fmt,  # type: ignore[arg-type]
        media_version=version,  # type: ignore[arg-type]
        retry=FAST,
        timeout=5,
        **kwargs,
    )


def new_sub(name: str, ttl: int = 600) -> dict:
    return {"consumer_url": "http://127.0.0.1:9/consumer", "time_to_live": ttl, "passback": name}


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_create_get_list_update_delete(
    server: SandboxServer, tls_files: TLSFiles, fmt: str, version: str
) -> None:
    client = client_for(server, tls_files, fmt=fmt, version=version)
    created = client.create_subscription("conferences", new_sub("all"))
    assert created.time_to_live == 600
    assert created.subject_resource_url and created.subject_resource_url.endswith("/conferences")
    one = client.create_subscription("conferences/2", new_sub("one"))
    parts = client.create_subscription("conferences/2/participants", new_sub("parts"))
    assert parts.subject_resource_url and parts.subject_resource_url.endswith("/conferences/2/participants")

    listing = client.list_subscriptions()
    assert listing is not None and listing.etag
    assert {s.passback for s in listing.subscriptions} == {"all", "one", "parts"}
    assert client.list_subscriptions(etag=listing.etag) is None  # 304

    got = client.get_subscription(one.subscription_identifier)
    assert got is not None and got.entity_tag
    assert client.get_subscription(one.subscription_identifier, etag=got.entity_tag) is None  # 304

    new_etag = client.update_time_to_live(one.subscription_identifier, 1200, got.entity_tag)
    after = client.get_subscription(one.subscription_identifier)
    assert after is not None and after.time_to_live == 1200 and after.entity_tag == new_etag
    assert after.calculated_expiration_date and got.calculated_expiration_date
    assert after.calculated_expiration_date > got.calculated_expiration_date
    changed = client.list_subscriptions(etag=listing.etag)
    assert changed is not None and changed.etag != listing.etag

    client.delete_subscription(one.subscription_identifier)
    with pytest.raises(NotFound):
        client.get_subscription(one.subscription_identifier)
    client.delete_subscription(one.subscription_identifier, missing_ok=True)


def test_time_to_live_zero_is_the_maximum_and_out_of_range_is_409(
    server: SandboxServer, tls_files: TLSFiles, dma: DMASandbox
) -> None:
    client = client_for(server, tls_files)
    sub = client.create_subscription("conferences", new_sub("max", ttl=0))
    assert sub.time_to_live == MAX_TIME_TO_LIVE
    # the client checks the range before sending ...
    with pytest.raises(RequestInvalid, match="time_to_live"):
        client.update_time_to_live(sub.subscription_identifier, MAX_TIME_TO_LIVE + 1, sub.entity_tag or "")
    writes = dma.requests.writes
    assert dma.requests.writes == writes
    # ... and the emulator answers 409 to a raw request that ignores the rule
    response = client._http.put(
        f"/subscriptions/{sub.subscription_identifier}",
        json={"timeToLive": 93601, "entityTag": sub.entity_tag},
        auth=client.auth,
    )
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/vnd.plcm.plcm-error+json")


def test_clamp_setting(serve: Callable[..., SandboxServer], tls_files: TLSFiles) -> None:
    server = serve(DMASandbox(ttl_out_of_range="clamp", validate_consumer_url=False), tls=tls_files)
    client = client_for(server, tls_files)
    sub = client.create_subscription("conferences", new_sub("c"))
    response = client._http.put(
        f"/subscriptions/{sub.subscription_identifier}",
        json={"timeToLive": 200000, "entityTag": sub.entity_tag},
        auth=client.auth,
    )
    assert response.status_code == 204
    got = client.get_subscription(sub.subscription_identifier)
    assert got is not None and got.time_to_live == MAX_TIME_TO_LIVE


def test_put_without_etag_is_428_and_stale_etag_is_412(server: SandboxServer, tls_files: TLSFiles) -> None:
    client = client_for(server, tls_files)
    sub = client.create_subscription("conferences", new_sub("e"))
    response = client._http.put(
        f"/subscriptions/{sub.subscription_identifier}", json={"timeToLive": 300}, auth=client.auth
    )
    assert response.status_code == 428
    client.update_time_to_live(sub.subscription_identifier, 300, sub.entity_tag or "")
    with pytest.raises(PreconditionFailed) as info:
        client.update_time_to_live(sub.subscription_identifier, 300, sub.entity_tag or "")
    assert info.value.status == 412


def test_roles(server: SandboxServer, tls_files: TLSFiles) -> None:
    operator = client_for(server, tls_files, user="operator")
    admin = client_for(server, tls_files, user="admin")
    mine = operator.create_subscription("conferences", new_sub("mine"))
    theirs = admin.create_subscription("conferences", new_sub("theirs"))
    seen = operator.list_subscriptions()
    assert seen is not None and [s.passback for s in seen.subscriptions] == ["mine"]
    everything = admin.list_subscriptions()
    assert everything is not None and len(everything.subscriptions) == 2
    with pytest.raises(PermissionDenied):
        operator.get_subscription(theirs.subscription_identifier)
    with pytest.raises(PermissionDenied):
        operator.delete_subscription(theirs.subscription_identifier)
    assert admin.get_subscription(mine.subscription_identifier) is not None


def test_errors(server: SandboxServer, tls_files: TLSFiles, caplog: pytest.LogCaptureFixture) -> None:
    sentinel = "S3NTINEL-dma-password"
    bad = client_for(server, tls_files, password=sentinel)
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthenticationFailed) as info:
        bad.list_subscriptions()
    assert info.value.status == 401
    client = client_for(server, tls_files)
    with pytest.raises(NotFound) as missing:
        client.get_subscription("999")
    assert "No such subscription" in str(missing.value)
    with pytest.raises(NotFound, match="conference"):
        client.create_subscription("conferences/77", new_sub("x"))
    with pytest.raises(RequestInvalid, match="consumer_url"):
        client.create_subscription("conferences", {"consumer_url": "ftp://x", "time_to_live": 5})
    with pytest.raises(RequestInvalid, match="subject"):
        client.create_subscription("meetings", new_sub("x"))
    texts = [str(info.value), str(missing.value), *(r.getMessage() for r in caplog.records)]
    assert all(sentinel not in t for t in texts)


def test_untrusted_certificate_is_refused(server: SandboxServer, tmp_path) -> None:
    other = self_signed(tmp_path, common_name="someone-else")
    client = client_for(server, other)
    with pytest.raises(VendorUnreachable, match="not trusted"):
        client.list_subscriptions()
    with pytest.raises(ConfigError, match="CA bundle"):
        tls_verify("not a certificate")


def test_retries_and_lost_create(server: SandboxServer, tls_files: TLSFiles, dma: DMASandbox) -> None:
    client = client_for(server, tls_files)
    dma.faults.set(rate=1.0, kinds=["429"], retry_after="0", limit=2)
    assert client.list_subscriptions() is not None
    dma.faults.set(rate=1.0, kinds=["5xx"], limit=2)
    assert client.list_subscriptions() is not None
    # the create reaches the DMA, but the answer is lost: the client finds it by passback, no twin
    dma.faults.set(rate=1.0, kinds=["drop_after"], method="POST", limit=1)
    sub = client.create_subscription("conferences", new_sub("once"))
    assert sub.passback == "once"
    assert len(dma.subscriptions) == 1


def test_unknown_fields_parse_and_malformed_is_named(
    server: SandboxServer, tls_files: TLSFiles, dma: DMASandbox
) -> None:
    client = client_for(server, tls_files)
    client.create_subscription("conferences", new_sub("x"))
    listing = client.list_subscriptions()
    assert listing is not None
    assert listing.subscriptions[0].model_extra == {}  # our emulator adds nothing ...
    extra = listing.subscriptions[0].model_validate({**listing.subscriptions[0].model_dump(), "newField": 1})
    assert extra.model_extra == {"newField": 1}  # ... but a vendor's new field would parse
    dma.faults.set(rate=1.0, kinds=["malformed"], limit=1)
    with pytest.raises(MalformedResponse, match="dma list_subscriptions"):
        client.list_subscriptions()


def test_expiry_and_notifications(serve: Callable[..., SandboxServer], tls_files: TLSFiles) -> None:
    received: list[tuple[dict, str | None]] = []

    async def consumer(scope, receive, send):  # a minimal consumer: answers GET, records POSTs
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = dict(scope["headers"])
        if scope["method"] == "POST":
            received.append((json.loads(body), headers.get(b"authorization", b"").decode() or None))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    sink = SandboxServer(consumer).start()
    try:
        dma = DMASandbox(validate_consumer_url=True)
        server = serve(dma, tls=tls_files)
        client = client_for(server, tls_files)
        sub = client.create_subscription(
            "conferences/1",
            {"consumer_url": sink.url + "/dma", "time_to_live": 60, "username": "rx", "password": "rx-pass"},
        )
        assert [d.sequence_number for d in dma.emit("1")] == [1]
        assert [d.sequence_number for d in dma.emit("1")] == [2]
        client.send_update_notification_now(sub.subscription_identifier)
        deadline = time.monotonic() + 10
        while len(received) < 3 and time.monotonic() < deadline:  # the notify-now delivery is async
            dma.call_in_loop(asyncio.sleep(0.01))
        assert [r[0]["sequenceNumber"] for r in received] == [1, 2, 1]
        assert all(r[1] and r[1].startswith("Basic ") for r in received)
        assert len(dma.subscriptions) == 1
        dma.advance(61)
        with pytest.raises(NotFound):
            client.get_subscription(sub.subscription_identifier)
        raw = httpx.post(
            server.url + "/api/rest/conferences",
            json={"consumerUrl": sink.url, "timeToLive": -5},
            auth=("admin", "admin-pass"),
            verify=tls_verify(tls_files.cert_pem),
        )
        assert raw.status_code == 409
        assert isinstance(client.error_for(raw, "create_subscription"), Conflict)
    finally:
        sink.stop()


# -- the v1 and v2 representations (seed: plcm-subscription[-v2]+json|+xml, lists likewise) ------------------
class Recording(httpx.HTTPTransport):
    """A real transport that keeps each request's and response's media types and bodies."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seen: list[tuple[str, str, str | None, str | None, bytes, str | None, bytes]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        response.read()
        self.seen.append(
            (
                request.method,
                request.url.path,
                request.headers.get("accept"),
                request.headers.get("content-type"),
                request.content,
                response.headers.get("content-type"),
                response.content,
            )
        )
        return response


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_each_version_and_format_is_negotiated_on_the_wire(
    server: SandboxServer, tls_files: TLSFiles, dma: DMASandbox, fmt: str, version: str
) -> None:
    recording = Recording(verify=tls_verify(tls_files.cert_pem))
    client = client_for(server, tls_files, fmt=fmt, version=version, transport=recording)
    body = new_sub("negotiated") | (
        {"parameters": {"region": "emea", "tier": "gold"}} if version == "v2" else {}
    )
    created = client.create_subscription("conferences", body)
    listing = client.list_subscriptions()
    assert listing is not None
    client.update_time_to_live(created.subscription_identifier, 900, created.entity_tag or "")
    suffix = "-v2" if version == "v2" else ""
    for method, path, accept, ctype, sent, answered, received in recording.seen:
        kind = "subscription-list" if method == "GET" and path.endswith("/subscriptions") else "subscription"
        if method in ("GET", "PUT") or (method == "POST" and sent):
            assert accept == f"application/vnd.plcm.plcm-{kind}{suffix}+{fmt}", (method, path)
        if sent:
            assert ctype == f"application/vnd.plcm.plcm-subscription{suffix}+{fmt}", (method, path)
            if fmt == "xml":
                assert ET.fromstring(sent).tag.endswith(f"plcm-subscription{suffix}")
            else:
                assert json.loads(sent)["timeToLive"] in (600, 900)
        if received:
            assert answered == f"application/vnd.plcm.plcm-{kind}{suffix}+{fmt}", (method, path)
            if fmt == "xml":
                root = ET.fromstring(received)
                assert root.tag.endswith(f"plcm-{kind}{suffix}"), root.tag
                assert (
                    root.tag
                    == "{urn:com:polycom:api:rest:plcm-" + f"{kind}{suffix}" + "}" + f"plcm-{kind}{suffix}"
                )
    held = dma.subscriptions[created.subscription_identifier]
    if version == "v2":  # doc: the v2 representation carries the subscription parameters, both ways
        assert held.parameters == {"region": "emea", "tier": "gold"}
        assert created.parameters == listing.subscriptions[0].parameters == held.parameters
    else:
        assert held.parameters is None and created.parameters is None
    # one subscription, both representations: v1 never shows the parameters
    other = client_for(server, tls_files, fmt="xml" if fmt == "json" else "json", version="v1")
    assert other.get_subscription(created.subscription_identifier).parameters is None  # type: ignore[union-attr]


def test_unsupported_media_types_are_406_and_415(server: SandboxServer, tls_files: TLSFiles) -> None:
    client = client_for(server, tls_files)
    created = client.create_subscription("conferences", new_sub("media"))
    url = f"{server.url}/api/rest/subscriptions/{created.subscription_identifier}"
    auth = ("provisioner", "provisioner-pass")
    with httpx.Client(verify=tls_verify(tls_files.cert_pem), auth=auth) as http:
        assert http.get(url, headers={"Accept": "text/html"}).status_code == 406  # ours
        plain = http.get(url, headers={"Accept": "application/json"})  # plain JSON: the v1 representation
        assert plain.headers["content-type"] == "application/vnd.plcm.plcm-subscription+json"
        weighted = http.get(
            url,
            headers={
                "Accept": "application/vnd.plcm.plcm-subscription+json;q=0.5, application/vnd.plcm.plcm-subscription-v2+xml"
            },
        )
        assert weighted.headers["content-type"] == "application/vnd.plcm.plcm-subscription-v2+xml"
        refused = http.put(
            url,
            content=b"time-to-live=5",
            headers={"Content-Type": "text/plain", "If-Match": created.entity_tag or ""},
        )
        assert refused.status_code == 415  # ours
    with pytest.raises(RequestInvalid, match="media_version v2"):  # parameters exist only in v2
        client.create_subscription("conferences", new_sub("v1") | {"parameters": {"a": "b"}})


def test_the_emulator_does_not_use_the_clients_codec() -> None:
    import streamkeeper.sandbox.dma as emulator

    source = Path(emulator.__file__).read_text()
    assert "streamkeeper.vendors.dma" not in source  # its own encoding, so a wire bug cannot be shared
