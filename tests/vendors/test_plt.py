"""Contract tests: the real `PLTClient` against the PLT emulator over loopback HTTP."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator

import httpx
import pytest
from pydantic import SecretStr

from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.plt import DEFAULT_PARTNER_ID, DEFAULT_TENANT_ID, SECOND_TENANT_ID, PLTSandbox
from streamkeeper.sandbox.pubnub import PubNubEmulator
from streamkeeper.vendors.http import (
    AuthenticationFailed,
    MalformedResponse,
    NotFound,
    PermissionDenied,
    RateLimited,
    RequestInvalid,
    RetryPolicy,
    ServerError,
    VendorError,
    VendorUnreachable,
)
from streamkeeper.vendors.plt import PLTClient, StreamMetadata

FAST = RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_max=0.05)
SENTINEL = "sentinel-partner-7f3e9c1a-0b5d-4e21-9a8f-3c6d2e1b4a70"


@pytest.fixture
def pubnub() -> PubNubEmulator:
    return PubNubEmulator()


@pytest.fixture
def sandbox(serve: Callable[..., SandboxServer], pubnub: PubNubEmulator) -> PLTSandbox:
    plt = PLTSandbox(pubnub, seed=7)
    serve(plt)
    return plt


@pytest.fixture
def connect(sandbox: PLTSandbox) -> Iterator[Callable[..., PLTClient]]:
    clients: list[PLTClient] = []

    def make(partner_id: str = DEFAULT_PARTNER_ID, **options: object) -> PLTClient:
        options.setdefault("retry", FAST)
        options.setdefault("timeout", 5.0)
        client = PLTClient(sandbox.url, partner_id=SecretStr(partner_id), **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(connect: Callable[..., PLTClient]) -> PLTClient:
    return connect()


def _stream_of(client: PLTClient, tenant_id: str, name: str) -> str:
    return next(
        s.stream_id for s in client.list_streams() if s.tenant_id == tenant_id and s.stream_name == name
    )


# -- operations ------------------------------------------------------------------------------------------
def test_list_streams_returns_one_item_per_tenant_and_stream(client: PLTClient) -> None:
    streams = client.list_streams()

    assert {(s.tenant_id, s.stream_name) for s in streams} == {
        (DEFAULT_TENANT_ID, "QUICKDISCONNECT"),
        (DEFAULT_TENANT_ID, "HEADSET_EVENTS"),
        (SECOND_TENANT_ID, "QUICKDISCONNECT"),
        (SECOND_TENANT_ID, "CALL_EVENTS"),
    }
    assert all(s.subscription_id and s.stream_id and s.tenant_name and not s.started for s in streams)
    assert len({s.stream_id for s in streams}) == 4


def test_get_stream_returns_the_pubnub_metadata(client: PLTClient) -> None:
    stream_id = _stream_of(client, DEFAULT_TENANT_ID, "QUICKDISCONNECT")

    meta = client.get_stream(stream_id)

    assert isinstance(meta, StreamMetadata)
    assert meta.type_id == "3e39258f-c888-4cfa-a6d1-63f4ccb77ac7"
    assert meta.stream_name == "QUICKDISCONNECT"
    assert meta.notification_type == "pubnub"
    assert meta.pub_key is None and meta.pub_channel is None
    assert meta.sub_key.startswith("sub-c-")
    assert meta.sub_channel == [f"{DEFAULT_PARTNER_ID}_sub1", f"{DEFAULT_PARTNER_ID}_sub2"]
    assert meta.is_publish_only is False and meta.is_subscribe_only is False
    assert meta.tenant_id == DEFAULT_TENANT_ID
    assert meta.partner_id is not None and meta.partner_id.get_secret_value() == DEFAULT_PARTNER_ID
    assert DEFAULT_PARTNER_ID not in repr(meta.partner_id)


def test_start_and_stop_are_per_tenant_and_idempotent(
    client: PLTClient, sandbox: PLTSandbox, pubnub: PubNubEmulator
) -> None:
    stream_id = _stream_of(client, DEFAULT_TENANT_ID, "QUICKDISCONNECT")
    channels = client.get_stream(stream_id).sub_channel
    assert sandbox.emit(stream_id, DEFAULT_TENANT_ID, 3) == []  # not started: PLT publishes nothing

    for _ in range(2):
        state = client.start_stream(stream_id, DEFAULT_TENANT_ID)
        assert (state.stream_id, state.tenant_id, state.started) == (stream_id, DEFAULT_TENANT_ID, True)
    started = {s.stream_id for s in client.list_streams() if s.started}
    assert started == {stream_id}

    timetokens = sandbox.emit(stream_id, DEFAULT_TENANT_ID, 4)
    assert len(timetokens) == 4 and timetokens == sorted(timetokens)
    published = [m for ch in channels for m in pubnub.history(ch)]
    assert sorted(m.timetoken for m in published) == timetokens
    assert {m.channel for m in published} == set(channels)  # round robin over the stream's channels
    for message in published:
        event = message.payload
        assert event["eventType"] == "isConnected" and event["isConnected"] == "false"
        assert event["tenantId"] == DEFAULT_TENANT_ID
        assert set(event["product"]) == {"headset", "baseId"}
        assert event["timeStamp"].endswith("Z")

    for _ in range(2):
        assert client.stop_stream(stream_id, DEFAULT_TENANT_ID).started is False
    assert not any(s.started for s in client.list_streams())
    assert sandbox.emit(stream_id, DEFAULT_TENANT_ID, 1) == []


def test_start_validates_the_tenant_before_sending(client: PLTClient, sandbox: PLTSandbox) -> None:
    stream_id = _stream_of(client, DEFAULT_TENANT_ID, "QUICKDISCONNECT")
    before = sandbox.requests.snapshot()["total"]

    with pytest.raises(RequestInvalid, match="plt start_stream: invalid request: tenantId"):
        client.start_stream(stream_id, "")

    assert sandbox.requests.snapshot()["total"] == before


def test_calls_are_recorded_with_path_templates(client: PLTClient) -> None:
    stream_id = _stream_of(client, SECOND_TENANT_ID, "CALL_EVENTS")
    client.get_stream(stream_id)
    client.start_stream(stream_id, SECOND_TENANT_ID)

    paths = {(c.operation, c.method, c.path, c.status) for c in client.recorder.drain()}

    assert ("get_stream", "GET", "/v1/realtime/streams/{streamId}", 200) in paths
    assert ("start_stream", "POST", "/v1/realtime/streams/{streamId}/start", 200) in paths
    assert ("list_streams", "GET", "/v1/realtime/streams", 200) in paths


def test_tests_can_add_partners_tenants_and_streams(
    sandbox: PLTSandbox, connect: Callable[..., PLTClient]
) -> None:
    partner = sandbox.add_partner(name="Other Partner")
    tenant = sandbox.add_tenant(partner.partner_id, name="Other Tenant")
    stream = sandbox.add_stream(partner.partner_id, tenant.tenant_id, "HEADSET_EVENTS", channels=3)
    client = connect(partner.partner_id)

    [item] = client.list_streams()
    meta = client.get_stream(stream.stream_id)

    assert (item.stream_id, item.tenant_name, item.stream_name) == (
        stream.stream_id,
        "Other Tenant",
        "HEADSET_EVENTS",
    )
    assert meta.sub_channel == [f"{partner.partner_id}_sub{n}" for n in (1, 2, 3)]
    assert meta.sub_key == partner.sub_key
    with pytest.raises(NotFound):  # the default partner's streams are not this partner's
        client.get_stream(_stream_of(connect(), DEFAULT_TENANT_ID, "QUICKDISCONNECT"))


def test_emit_admin_route_publishes_for_started_streams(client: PLTClient, sandbox: PLTSandbox) -> None:
    stream_id = _stream_of(client, SECOND_TENANT_ID, "CALL_EVENTS")
    client.start_stream(stream_id, SECOND_TENANT_ID)

    answer = httpx.post(
        f"{sandbox.url}/_sandbox/emit", json={"streamId": stream_id, "tenantId": SECOND_TENANT_ID, "count": 2}
    )

    assert answer.status_code == 200
    timetokens = answer.json()["timetokens"]
    assert len(timetokens) == 2 and all(len(tt) == 17 for tt in timetokens)
    assert (
        httpx.post(f"{sandbox.url}/_sandbox/emit", json={"streamId": "nope", "tenantId": "x"}).status_code
        == 404
    )


# -- errors ----------------------------------------------------------------------------------------------
def test_missing_partner_id_is_401(connect: Callable[..., PLTClient]) -> None:
    client = connect("")

    with pytest.raises(AuthenticationFailed) as caught:
        client.list_streams()

    assert caught.value.status == 401
    assert caught.value.code == "unauthorized"
    assert str(caught.value) == "plt list_streams: HTTP 401 unauthorized: the partner_id header is required"


def test_unknown_partner_id_is_403(connect: Callable[..., PLTClient]) -> None:
    with pytest.raises(PermissionDenied) as caught:
        connect(SENTINEL).list_streams()

    assert (caught.value.status, caught.value.code, caught.value.detail) == (
        403,
        "forbidden",
        "unknown partner_id",
    )


def test_unknown_stream_is_404(client: PLTClient) -> None:
    with pytest.raises(NotFound) as caught:
        client.get_stream("no-such-stream")
    assert caught.value.operation == "get_stream"
    assert caught.value.detail == "no stream no-such-stream"

    with pytest.raises(NotFound):
        client.start_stream("no-such-stream", DEFAULT_TENANT_ID)
    stream_id = _stream_of(client, DEFAULT_TENANT_ID, "QUICKDISCONNECT")
    with pytest.raises(NotFound, match="for tenant"):  # a stream of another tenant
        client.stop_stream(stream_id, SECOND_TENANT_ID)


def test_unknown_fields_in_answers_are_accepted(client: PLTClient, sandbox: PLTSandbox) -> None:
    sandbox.extra_fields = {"region": "eu-west-1", "labels": {"tier": "gold"}}

    [first, *_] = client.list_streams()
    meta = client.get_stream(first.stream_id)

    assert first.model_extra == {"region": "eu-west-1", "labels": {"tier": "gold"}}
    assert meta.model_extra is not None and meta.model_extra["region"] == "eu-west-1"


def test_unparseable_body_is_malformed_response(client: PLTClient, sandbox: PLTSandbox) -> None:
    sandbox.faults.set(rate=1.0, kinds=["malformed"])

    with pytest.raises(MalformedResponse) as caught:
        client.list_streams()

    assert (caught.value.vendor, caught.value.operation) == ("plt", "list_streams")
    assert str(caught.value).startswith("plt list_streams: body is not valid JSON")


def test_wrong_shape_is_malformed_response_naming_the_field(client: PLTClient, sandbox: PLTSandbox) -> None:
    stream_id = client.list_streams()[0].stream_id
    sandbox.extra_fields = {"subChannel": "not-a-list"}

    with pytest.raises(MalformedResponse) as caught:
        client.get_stream(stream_id)

    assert (caught.value.vendor, caught.value.operation) == ("plt", "get_stream")
    assert "unexpected response shape: subChannel" in str(caught.value)


@pytest.mark.parametrize("kind", ["429", "5xx"])
def test_injected_429_and_5xx_are_retried(client: PLTClient, sandbox: PLTSandbox, kind: str) -> None:
    stream_id = client.list_streams()[0].stream_id
    tenant_id = client.list_streams()[0].tenant_id
    client.recorder.drain()

    for operation in (client.list_streams, lambda: client.get_stream(stream_id)):
        sandbox.faults.set(rate=1.0, kinds=[kind], limit=2, retry_after="0")
        operation()
    sandbox.faults.set(rate=1.0, kinds=[kind], limit=2, retry_after="0", method="POST")
    assert client.start_stream(stream_id, tenant_id).started is True

    calls = client.recorder.drain()
    assert [c.attempt for c in calls] == [1, 2, 3] * 3
    assert all(c.status != 200 for c in calls if c.attempt < 3)
    assert sandbox.faults.injected[kind] == 6


def test_persistent_429_and_5xx_give_up(client: PLTClient, sandbox: PLTSandbox) -> None:
    sandbox.faults.set(rate=1.0, kinds=["429"], retry_after="0")
    with pytest.raises(RateLimited):
        client.list_streams()
    sandbox.faults.set(rate=1.0, kinds=["5xx"])
    with pytest.raises(ServerError):
        client.list_streams()
    assert sandbox.faults.injected == {"429": FAST.max_attempts, "5xx": FAST.max_attempts}


def test_partner_id_never_reaches_exceptions_or_logs(
    sandbox: PLTSandbox, connect: Callable[..., PLTClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[VendorError] = []
    with pytest.raises(PermissionDenied) as denied:  # unknown partner
        connect(SENTINEL).list_streams()
    errors.append(denied.value)

    partner = sandbox.add_partner(SENTINEL)  # now a known partner: 404s, shape errors, no answer
    tenant = sandbox.add_tenant(partner.partner_id)
    stream = sandbox.add_stream(partner.partner_id, tenant.tenant_id)
    client = connect(SENTINEL)
    assert client.get_stream(stream.stream_id).sub_channel == [f"{SENTINEL}_sub1"]
    with pytest.raises(NotFound) as missing:
        client.start_stream("nope", tenant.tenant_id)
    errors.append(missing.value)
    sandbox.extra_fields = {"partnerId": 42, "subChannel": [SENTINEL, 7]}
    with pytest.raises(MalformedResponse) as malformed:
        client.get_stream(stream.stream_id)
    errors.append(malformed.value)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with (
        PLTClient(f"http://127.0.0.1:{port}", partner_id=SecretStr(SENTINEL), retry=FAST) as nowhere,
        pytest.raises(VendorUnreachable) as unreachable,
    ):
        nowhere.list_streams()
    errors.append(unreachable.value)

    for error in errors:
        assert SENTINEL not in str(error)
        assert SENTINEL not in repr(error)
        assert SENTINEL not in repr(vars(error))
    assert caplog.records, "expected the HTTP stack to log something at DEBUG"
    for record in caplog.records:
        assert SENTINEL not in record.getMessage()
