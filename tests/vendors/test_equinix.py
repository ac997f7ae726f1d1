"""Contract tests: the Equinix SmartView client against the emulator over loopback HTTP."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.equinix import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, EquinixSandbox
from streamkeeper.vendors.equinix import (
    EquinixClient,
    StreamingSubscription,
    StreamsSubscription,
    StreamsSubscriptionRequest,
    SubscriptionMessage,
)
from streamkeeper.vendors.http import (
    AuthenticationFailed,
    Conflict,
    MalformedResponse,
    NotFound,
    RateLimited,
    RequestInvalid,
    RetryPolicy,
    VendorError,
    VendorHTTPError,
)
from streamkeeper.vendors.http.paginate import Page, offset_pages

STREAMS = "/smartview/v2/streams/subscriptions"
STREAMING = "/smartview/v2/streaming/subscriptions"
TOKEN = "POST /oauth2/v1/token"
FAST = RetryPolicy(backoff_base=0.01, backoff_max=0.02)

STREAMS_BODY: dict[str, Any] = {
    "alarm": [
        {
            "accountNo": "133724",
            "alarmType": ["ABSOLUTE"],
            "assetClassification": ["ELECTRICAL"],
            "conditionName": ["ALARM"],
            "ibx": "PA4",
            "region": ["EMEA"],
        }
    ],
    "alert": [{"accountNo": "133724", "ibx": "PA4"}],
    "asset": [{"accountNo": "133724", "classification": ["ELECTRICAL"], "ibx": "PA4"}],
    "environment": [{"accountNo": "133724", "granularity": ["IBX"], "ibx": "PA4"}],
    "power": [{"accountNo": "133724", "ibx": "PA4"}],
    "config": {"method": "PULL", "provider": "AWS_IOT", "region": "EMEA", "url": "x-ats.iot.amazonaws.com"},
}
WEBHOOK = "https://127.0.0.1:9/eq"
STREAMING_BODY: dict[str, Any] = {
    "messageType": {
        "environmental": [{"accountNumber": "116710", "ibx": ["LD9"], "level": ["CAGE"]}],
        "power": [{"accountNumber": "116710", "ibx": ["LD9", "LD5"]}],
    },
    # a closed loopback port: the emulator's pushes fail at once (no lookup of an outside name)
    "channel": {"channelType": "WEBHOOK", "webhookChannelConfiguration": {"url": WEBHOOK}},
}
IOT_CHANNEL = {
    "channelType": "AWS_IOT_CORE",
    "awsIotCoreChannelConfiguration": {"url": "https://x.iot.example"},
}


@pytest.fixture
def sandbox() -> EquinixSandbox:
    return EquinixSandbox()


@pytest.fixture
def server(serve: Callable[..., SandboxServer], sandbox: EquinixSandbox) -> SandboxServer:
    return serve(sandbox)


@pytest.fixture
def make_client(server: SandboxServer) -> Iterator[Callable[..., EquinixClient]]:
    clients: list[EquinixClient] = []

    def make(**kwargs: Any) -> EquinixClient:
        kwargs.setdefault("client_id", DEFAULT_CLIENT_ID)
        kwargs.setdefault("client_secret", SecretStr(DEFAULT_CLIENT_SECRET))
        kwargs.setdefault("retry", FAST)
        client = EquinixClient(server.url, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., EquinixClient]) -> EquinixClient:
    return make_client()


def calls(sandbox: EquinixSandbox, route: str) -> int:
    return int(sandbox.requests.snapshot()["by_route"].get(route, 0))


# -- auth --------------------------------------------------------------------------------------------------
def test_token_is_fetched_once_and_reused(client: EquinixClient, sandbox: EquinixSandbox) -> None:
    assert client.list_streaming_subscriptions() == []
    assert client.list_streaming_subscriptions() == []
    assert calls(sandbox, TOKEN) == 1
    assert client.token_auth.refreshes == 1


def test_bad_client_secret_is_the_token_apis_400_and_an_authentication_failure(
    make_client: Callable[..., EquinixClient], sandbox: EquinixSandbox
) -> None:
    client = make_client(client_secret=SecretStr("not-the-secret"))
    with pytest.raises(AuthenticationFailed) as caught:
        client.list_streaming_subscriptions()
    assert caught.value.status == 400  # doc: the token API's Oauth2TokenErrorResponse
    assert caught.value.code == "invalid_client"  # error_code
    detail = caught.value.detail or ""
    assert "valid client id/client secret" in detail  # error_message
    assert "developer_message: " in detail and "error_title: Invalid credentials" in detail
    assert caught.value.vendor == "equinix" and caught.value.operation == "get_token"
    assert calls(sandbox, TOKEN) == 1  # a refused credential is not asked for again


def test_token_answer_carries_user_name(client: EquinixClient, sandbox: EquinixSandbox) -> None:
    response = httpx.post(
        f"{sandbox.url}/oauth2/v1/token",
        json={
            "grant_type": "client_credentials",
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
        },
    )
    body = response.json()
    assert set(body) == {"access_token", "token_timeout", "token_type", "user_name"}
    assert body["token_timeout"] == "3599" and body["token_type"] == "Bearer" and body["user_name"]


def test_token_expiry_refreshes_once_on_401(client: EquinixClient, sandbox: EquinixSandbox) -> None:
    client.list_streaming_subscriptions()
    sandbox.faults.set(rate=1.0, kinds=["token_expiry"], limit=1, path="streaming")
    assert client.list_streaming_subscriptions() == []
    assert calls(sandbox, TOKEN) == 2
    assert calls(sandbox, f"GET {STREAMING}") == 3  # the refused one was sent again once


def test_a_token_refused_again_after_the_refresh_fails(
    client: EquinixClient, sandbox: EquinixSandbox
) -> None:
    sandbox.token_ttl = 0  # every token is born expired: the one refresh cannot help
    with pytest.raises(AuthenticationFailed) as caught:
        client.list_streaming_subscriptions()
    assert caught.value.code == "EQ-3000022"
    assert calls(sandbox, TOKEN) == 2
    assert calls(sandbox, f"GET {STREAMING}") == 2


def test_token_is_refreshed_before_it_expires(
    make_client: Callable[..., EquinixClient], sandbox: EquinixSandbox
) -> None:
    now = [1_000_000.0]
    client = make_client(clock=lambda: now[0])
    client.list_streaming_subscriptions()
    first = client.token_auth.token
    now[0] += 3599 - 61  # more than 60 s left: kept
    client.list_streaming_subscriptions()
    assert client.token_auth.token is first
    now[0] += 2  # under 60 s left: renewed before sending, without a 401
    client.list_streaming_subscriptions()
    assert client.token_auth.token is not first
    assert calls(sandbox, TOKEN) == 2
    assert calls(sandbox, f"GET {STREAMING}") == 3


# -- the seed API ("streams") ------------------------------------------------------------------------------
def test_streams_subscription_lifecycle(client: EquinixClient, sandbox: EquinixSandbox) -> None:
    assert client.get_org_subscription() is None

    created = client.create_streams_subscription(STREAMS_BODY)
    assert isinstance(created, StreamsSubscription)
    assert created.status == "OK"  # seed
    assert created.subscription_name and created.subscription_id
    assert created.alarm[0].model_extra == {
        "alarmType": ["ABSOLUTE"],
        "assetClassification": ["ELECTRICAL"],
        "conditionName": ["ALARM"],
        "region": ["EMEA"],
    }
    assert created.config is not None and created.config.provider == "AWS_IOT"
    assert created.errors == [] and created.connection_string is None

    listed = client.get_org_subscription()  # the list GET answers one object
    assert listed is not None and listed.subscription_id == created.subscription_id
    assert listed.status == "OK" and listed.errors == []
    assert client.get_streams_subscription(created.subscription_id).environment[0].ibx == "PA4"

    changed = {**STREAMS_BODY, "power": [{"accountNo": "133724", "ibx": "PA5"}]}
    updated = client.update_streams_subscription(created.subscription_id, changed)
    assert [p.ibx for p in updated.power] == ["PA5"]

    with pytest.raises(Conflict) as caught:  # one subscription per organisation
        client.create_streams_subscription(STREAMS_BODY)
    assert caught.value.status == 409 and caught.value.code == "SUBSCRIPTION_EXISTS"

    closed = client.delete_streams_subscription()  # seed: DELETE without an id
    assert closed.subscription_id == created.subscription_id and closed.status == "DELETED"
    assert client.get_org_subscription() is None
    with pytest.raises(NotFound):
        client.get_streams_subscription(created.subscription_id)


def test_streams_delete_by_id(client: EquinixClient, sandbox: EquinixSandbox) -> None:
    created = client.create_streams_subscription(StreamsSubscriptionRequest.model_validate(STREAMS_BODY))
    with pytest.raises(NotFound) as caught:
        client.delete_streams_subscription("000000000000000000000000")
    assert caught.value.code == "NOT_FOUND"
    assert client.delete_streams_subscription(created.subscription_id).status == "DELETED"
    assert sandbox.subscriptions() == []


def test_streams_azure_connection_strings_are_secret(client: EquinixClient) -> None:
    body = {**STREAMS_BODY, "config": {"method": "PULL", "provider": "AZURE"}}
    created = client.create_streams_subscription(body)
    assert created.connection_string is not None
    assert "SharedAccessKey" in created.connection_string.get_secret_value()
    assert "SharedAccessKey" not in repr(created)


def test_streams_errors_map_the_errors_shape(client: EquinixClient) -> None:
    bad = {**STREAMS_BODY, "power": [{"accountNo": "133724"}]}  # no ibx; sent raw past our validation
    with pytest.raises(VendorHTTPError) as caught:
        client.request("POST", STREAMS, operation="raw_create", json=bad)
    assert caught.value.status == 400
    assert caught.value.code == "INVALID_REQUEST"
    assert "power[0].ibx" in (caught.value.detail or "")
    with pytest.raises(NotFound):
        client.update_streams_subscription("000000000000000000000000", STREAMS_BODY)


# -- the current API ("streaming") -------------------------------------------------------------------------
def test_streaming_subscription_lifecycle(client: EquinixClient, sandbox: EquinixSandbox) -> None:
    assert client.list_streaming_subscriptions() == []
    created = client.create_streaming_subscription(STREAMING_BODY)
    assert isinstance(created, StreamingSubscription)
    assert created.status == "ACTIVE" and created.org_id == "org-sandbox"
    assert created.channel is not None and created.channel.channel_type == "WEBHOOK"
    assert created.channel.webhook_url() == WEBHOOK
    assert created.message_type is not None
    assert created.message_type.power[0].ibx == ["LD9", "LD5"]
    assert [s.id for s in client.list_streaming_subscriptions()] == [created.id]

    changed = {
        **STREAMING_BODY,
        "messageType": {"systemAlert": [{"accountNumber": "116710", "ibx": ["LD9"]}]},
    }
    assert client.update_streaming_subscription(created.id, changed) is None
    fetched = client.get_streaming_subscription(created.id)
    assert fetched.message_type is not None
    assert fetched.message_type.power == [] and fetched.message_type.system_alert[0].ibx == ["LD9"]

    assert client.delete_streaming_subscription(created.id) is None
    assert client.list_streaming_subscriptions() == []
    with pytest.raises(NotFound) as caught:
        client.get_streaming_subscription(created.id)
    assert caught.value.status == 404 and caught.value.code == "EQ-4040001"


def test_streaming_create_answers_201_with_location(client: EquinixClient, sandbox: EquinixSandbox) -> None:
    response = client.request("POST", STREAMING, operation="raw_create", json=STREAMING_BODY)
    assert response.status_code == 201
    subscription_id = response.headers["Location"].rsplit("/", 1)[-1]
    assert response.headers["Location"] == f"{STREAMING}/{subscription_id}"
    assert client.get_streaming_subscription(subscription_id).id == subscription_id


def test_one_channel_type_per_organization_is_422(client: EquinixClient) -> None:
    first = client.create_streaming_subscription(STREAMING_BODY)
    second_type = {**STREAMING_BODY, "channel": IOT_CHANNEL}
    with pytest.raises(Conflict) as caught:
        client.create_streaming_subscription(second_type)
    error = caught.value
    assert error.status == 422
    assert error.code == "EQ-4220002"  # errorCode
    detail = error.detail or ""
    assert "Only one channel type per organization" in detail  # errorMessage
    assert "already uses channelType WEBHOOK" in detail  # details
    # doc: additionalInfo is an object {constraintCode, reason}
    assert "additionalInfo: OneChannelTypePerOrganization: channel.channelType must be WEBHOOK" in detail
    assert "correlationId: " in detail
    assert str(error).startswith("equinix create_streaming_subscription: HTTP 422 EQ-4220002")

    client.update_streaming_subscription(first.id, second_type)  # the only one may change type
    assert client.get_streaming_subscription(first.id).channel.channel_type == "AWS_IOT_CORE"  # type: ignore[union-attr]


def test_streaming_rules_and_shape_errors(client: EquinixClient) -> None:
    no_types = {"messageType": {"power": []}, "channel": STREAMING_BODY["channel"]}
    with pytest.raises(Conflict) as caught:
        client.request("POST", STREAMING, operation="raw_create", json=no_types)
    assert caught.value.status == 422 and caught.value.code == "EQ-4220001"
    two_channels = {**STREAMING_BODY, "channel": {**IOT_CHANNEL, **STREAMING_BODY["channel"]}}
    with pytest.raises(Conflict):
        client.request("POST", STREAMING, operation="raw_create", json=two_channels)
    bad_ibx = {**STREAMING_BODY, "messageType": {"power": [{"accountNumber": "1", "ibx": "LD9"}]}}
    with pytest.raises(VendorHTTPError) as shape:
        client.request("POST", STREAMING, operation="raw_create", json=bad_ibx)
    assert shape.value.status == 400 and shape.value.code == "EQ-4000001"
    assert "power[0].ibx" in (shape.value.detail or "")


def test_unknown_ids_are_404(client: EquinixClient) -> None:
    missing = "000000000000000000000000"
    for call in (
        lambda: client.get_streams_subscription(missing),
        lambda: client.get_streaming_subscription(missing),
        lambda: client.update_streaming_subscription(missing, STREAMING_BODY),
        lambda: client.delete_streaming_subscription(missing),
        lambda: client.get_subscription_data(missing),
    ):
        with pytest.raises(NotFound) as caught:
            call()
        assert caught.value.status == 404


def test_other_organisations_subscriptions_are_invisible(
    make_client: Callable[..., EquinixClient], sandbox: EquinixSandbox
) -> None:
    sandbox.add_client("other-client", "other-secret-value", "org-other")
    ours = make_client().create_streaming_subscription(STREAMING_BODY)
    theirs = make_client(client_id="other-client", client_secret=SecretStr("other-secret-value"))
    assert theirs.list_streaming_subscriptions() == []
    with pytest.raises(NotFound):
        theirs.get_streaming_subscription(ours.id)
    # another organisation may use another channel type
    assert theirs.create_streaming_subscription({**STREAMING_BODY, "channel": IOT_CHANNEL}).id


def test_request_invalid_names_the_field_and_sends_nothing(
    client: EquinixClient, sandbox: EquinixSandbox
) -> None:
    cases = [
        (client.create_streams_subscription, {"alarm": [{"ibx": "PA4"}]}, "alarm[0].accountNo"),
        (
            client.create_streams_subscription,
            {"power": [{"accountNo": "1", "ibx": "PA4", "x": 1}]},
            "power[0].x",
        ),
        (client.create_streams_subscription, {**STREAMS_BODY, "config": {"method": "POLL"}}, "config.method"),
        (
            client.create_streaming_subscription,
            {**STREAMING_BODY, "channel": {"channelType": "WEBHOOK"}},
            "channel",
        ),
        (client.create_streaming_subscription, {"messageType": STREAMING_BODY["messageType"]}, "channel"),
    ]
    for method, body, field in cases:
        with pytest.raises(RequestInvalid) as caught:
            method(body)
        assert field in str(caught.value), str(caught.value)
    assert sandbox.requests.total == 0


# -- rate limiting -----------------------------------------------------------------------------------------
def test_429_waits_retry_after_then_succeeds(
    make_client: Callable[..., EquinixClient], sandbox: EquinixSandbox
) -> None:
    waits: list[float] = []
    client = make_client(sleep=waits.append)
    client.create_streaming_subscription(STREAMING_BODY)
    sandbox.faults.set(rate=1.0, kinds=["429"], limit=2, retry_after="7", path="streaming")
    assert len(client.list_streaming_subscriptions()) == 1
    assert waits == [7.0, 7.0]
    assert calls(sandbox, f"GET {STREAMING}") == 3


def test_429_after_the_retries_is_rate_limited(
    make_client: Callable[..., EquinixClient], sandbox: EquinixSandbox
) -> None:
    waits: list[float] = []
    client = make_client(sleep=waits.append, retry=RetryPolicy(max_attempts=3))
    client.list_streaming_subscriptions()
    sandbox.faults.set(rate=1.0, kinds=["429"], retry_after="2", path="streaming")
    with pytest.raises(RateLimited) as caught:
        client.create_streaming_subscription(STREAMING_BODY)  # a POST is retried on 429 too
    assert caught.value.status == 429
    assert waits == [2.0, 2.0]
    assert sandbox.subscriptions() == []


# -- creates whose answer is lost --------------------------------------------------------------------------
@pytest.mark.parametrize("api", ["streams", "streaming"])
def test_create_with_lost_answer_creates_once(
    client: EquinixClient, sandbox: EquinixSandbox, api: str
) -> None:
    client.list_streaming_subscriptions()  # token first, so the fault hits the create
    sandbox.faults.set(rate=1.0, kinds=["drop_after"], limit=1, method="POST", path="subscriptions")
    if api == "streams":
        created: Any = client.create_streams_subscription(STREAMS_BODY)
        assert created.subscription_id == sandbox.subscriptions()[0]["subscriptionId"]
    else:
        created = client.create_streaming_subscription(STREAMING_BODY)
        assert created.id == sandbox.subscriptions()[0]["id"]
    assert sandbox.faults.injected == {"drop_after": 1}
    assert len(sandbox.subscriptions()) == 1
    assert calls(sandbox, f"POST {STREAMS if api == 'streams' else STREAMING}") == 1


# -- subscription data -------------------------------------------------------------------------------------
def test_pages_resume_from_a_stored_offset_without_gaps_or_repeats(
    client: EquinixClient, sandbox: EquinixSandbox
) -> None:
    subscription = client.create_streaming_subscription(STREAMING_BODY)
    sandbox.emit(subscription.id, 53)

    seen: list[str] = []
    cursor = 0
    for page in client.iter_subscription_data(subscription.id, offset=cursor, limit=10):
        assert page.offset == cursor
        seen += [m.message_id for m in page.items]
        cursor = page.next_offset  # "committed"
        if len(seen) >= 20:
            break  # the run stops half-way
    assert cursor == 20

    sandbox.emit(subscription.id, 12)  # more arrive meanwhile
    pages = list(client.iter_subscription_data(subscription.id, offset=cursor, limit=10))
    assert [p.offset for p in pages] == [20, 30, 40, 50, 60]
    assert pages[-1].total == 65 and pages[-1].is_last
    seen += [m.message_id for p in pages for m in p.items]

    expected = [SubscriptionMessage.model_validate(m).message_id for m in sandbox.feed(subscription.id)]
    assert len(seen) == len(set(seen)) == 65
    assert Counter(seen) == Counter(expected)
    assert list(client.iter_subscription_data(subscription.id, offset=65)) == []


def test_subscription_data_shape_filters_and_heartbeats(
    client: EquinixClient, sandbox: EquinixSandbox
) -> None:
    streams = client.create_streams_subscription(STREAMS_BODY)  # the seed API's pull feed is served too
    sandbox.emit_step = timedelta(days=1)
    sandbox.emit(streams.subscription_id, 100)

    data = client.get_subscription_data(streams.subscription_id)
    assert data.pagination is not None
    assert (data.pagination.limit, data.pagination.offset, data.pagination.total) == (250, 0, 100)
    assert data.pagination.next is None and data.pagination.previous is None
    messages = data.messages()
    assert {m.type for m in messages} <= {
        "system-alert",
        "custom-alert",
        "environmental",
        "power",
        "metered-power",
        "tag-point",
    }
    heartbeats = [m for m in messages if m.is_heartbeat]
    assert len(heartbeats) == 14  # a week of emulated time is 7 messages apart
    readings = [m for m in messages if not m.is_heartbeat]
    assert all(m.occurred_at is not None for m in readings)
    environmental = [m for m in data.environment_message_data if not m.is_heartbeat]
    assert environmental
    for message in environmental:
        assert set(message.data) >= {
            "asset",
            "dataQuality",
            "ibx",
            "reading",
            "readingTime",
            "streamId",
            "tag",
        }
        assert set(message.data["reading"]) == {"unit", "value"}
        assert message.data["ibx"] == "PA4"

    only = client.get_subscription_data(streams.subscription_id, message_types=["ENVIRONMENTAL"], limit=5)
    assert {m.type for m in only.messages()} == {"environmental"}
    assert only.pagination is not None and only.pagination.next is not None
    with pytest.raises(VendorHTTPError) as caught:
        client.get_subscription_data(streams.subscription_id, limit=0)
    assert caught.value.status == 400 and "limit" in (caught.value.detail or "")


def test_offset_pages_stops_at_the_end() -> None:
    items = list(range(23))

    def fetch(offset: int, limit: int) -> Page[int]:
        return Page(items=items[offset : offset + limit], offset=offset, limit=limit)

    assert [p.offset for p in offset_pages(fetch, limit=10)] == [0, 10, 20]
    assert [p.offset for p in offset_pages(fetch, offset=20, limit=3)] == [20]
    assert list(offset_pages(fetch, offset=23)) == []
    assert len(list(offset_pages(fetch, limit=5, max_pages=2))) == 2
    with pytest.raises(ValueError):
        list(offset_pages(fetch, limit=0))


# -- tolerance and malformed answers -----------------------------------------------------------------------
def test_unknown_extra_response_fields_parse(client: EquinixClient, sandbox: EquinixSandbox) -> None:
    sandbox.extra_fields = {"futureField": {"nested": [1, 2]}, "anotherOne": "x"}
    streams = client.create_streams_subscription(STREAMS_BODY)
    streaming = client.create_streaming_subscription(STREAMING_BODY)
    assert streams.model_extra == {"futureField": {"nested": [1, 2]}, "anotherOne": "x"}
    assert client.list_streaming_subscriptions()[0].model_extra == streams.model_extra
    assert streaming.model_extra is not None and streaming.model_extra["anotherOne"] == "x"


def test_malformed_responses_raise_naming_vendor_and_operation(
    client: EquinixClient, sandbox: EquinixSandbox
) -> None:
    client.create_streaming_subscription(STREAMING_BODY)
    sandbox.faults.set(rate=1.0, kinds=["malformed"], limit=1, path="streaming")
    with pytest.raises(MalformedResponse) as truncated:
        client.list_streaming_subscriptions()
    assert str(truncated.value).startswith("equinix list_streaming_subscriptions: body is not valid JSON")

    client.create_streams_subscription(STREAMS_BODY)
    sandbox.extra_fields = {"subscriptionId": None}
    with pytest.raises(MalformedResponse) as shape:
        client.get_org_subscription()
    assert shape.value.vendor == "equinix" and shape.value.operation == "get_org_subscription"
    assert "subscriptionId" in str(shape.value)


# -- secrets -----------------------------------------------------------------------------------------------
def test_secrets_never_reach_exceptions_or_logs(
    make_client: Callable[..., EquinixClient], sandbox: EquinixSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client_secret = "SENTINEL-client-secret-4f9a"
    config_token = "SENTINEL-config-token-77c1"
    sandbox.add_client("sentinel-client", client_secret, "org-sentinel")
    client = make_client(client_id="sentinel-client", client_secret=SecretStr(client_secret))
    body = {**STREAMS_BODY, "config": {**STREAMS_BODY["config"], "token": config_token}}
    texts: list[str] = []

    created = client.create_streams_subscription(body)
    assert sandbox.streams_token[created.subscription_id] == config_token  # it was sent...
    assert created.config is not None and created.config.token is None  # ...and never echoed back
    raw = httpx.get(
        f"{sandbox.url}{STREAMS}",
        headers={"Authorization": f"Bearer {client.token_auth.token.value.get_secret_value()}"},  # type: ignore[union-attr]
    )
    assert config_token not in raw.text
    texts += [repr(created), repr(StreamsSubscriptionRequest.model_validate(body))]

    failures: list[Callable[[], object]] = [
        lambda: client.create_streams_subscription(body),  # 409
        lambda: client.create_streams_subscription({**body, "alarm": [{"ibx": config_token}]}),  # invalid
        lambda: client.request("POST", STREAMS, operation="raw", json={"config": {"token": config_token}}),
        lambda: make_client(
            client_id="nobody", client_secret=SecretStr(client_secret)
        ).get_org_subscription(),
    ]
    for failure in failures:
        with pytest.raises(VendorError) as caught:
            failure()
        texts += [str(caught.value), repr(caught.value), str(getattr(caught.value, "detail", ""))]

    texts += [caplog.text, *(r.getMessage() for r in caplog.records)]
    for text in texts:
        assert client_secret not in text
        assert config_token not in text


# -- the Prefect block -------------------------------------------------------------------------------------
def test_credentials_block_builds_a_working_client(server: SandboxServer) -> None:
    from blocks.equinix import EquinixCredentials

    block = EquinixCredentials(
        base_url=server.url,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=SecretStr(DEFAULT_CLIENT_SECRET),
        api_generation="streaming",
    )
    assert DEFAULT_CLIENT_SECRET not in repr(block)
    with block.get_client() as client:
        assert client.api_generation == "streaming"
        assert client.list_streaming_subscriptions() == []
        assert len(client.recorder) == 2  # token + list
    assert EquinixCredentials.model_fields["api_generation"].default == "streams"


# -- what the published definition changed -----------------------------------------------------------------
def test_a_200_with_errors_or_a_failed_status_raises_refused(
    client: EquinixClient, sandbox: EquinixSandbox
) -> None:
    from streamkeeper.vendors.equinix import SubscriptionRefused

    sandbox.refusals = [{"code": "E42", "message": "no access to paid view", "more_info": "PA8", "data": {}}]
    with pytest.raises(SubscriptionRefused) as streams:
        client.create_streams_subscription(STREAMS_BODY)
    text = str(streams.value)
    assert text.startswith("equinix create_streams_subscription: the vendor answered 2xx but refused")
    assert "status FAILED" in text and "E42: no access to paid view (PA8)" in text
    assert isinstance(streams.value.subscription, StreamsSubscription)
    with pytest.raises(SubscriptionRefused, match="status FAILED"):
        client.create_streaming_subscription(STREAMING_BODY)
    sandbox.refusals = []
    held = client.get_org_subscription()
    assert held is not None and held.status == "FAILED"  # kept on the subscription: the audit sees it
    assert client.update_streams_subscription(held.subscription_id, STREAMS_BODY).status == "OK"


def test_channel_bounds_and_types_of_the_definition_are_checked_before_sending(
    client: EquinixClient, sandbox: EquinixSandbox
) -> None:
    webhook = STREAMING_BODY["channel"]["webhookChannelConfiguration"]
    for setting, bad in (
        ("batchSize", 4),
        ("batchSize", 21),
        ("numberOfConcurrentCalls", 51),
        ("numberOfRetries", 0),
    ):
        body = {
            **STREAMING_BODY,
            "channel": {
                **STREAMING_BODY["channel"],
                "webhookChannelConfiguration": {**webhook, setting: bad},
            },
        }
        with pytest.raises(RequestInvalid):
            client.create_streaming_subscription(body)
        with pytest.raises(Conflict) as raw:  # sent past our validation: the emulator refuses it too
            client.request("POST", STREAMING, operation="raw_create", json=body)
        assert raw.value.status == 422 and setting in (raw.value.detail or "")
    with pytest.raises(RequestInvalid, match="channelType"):
        client.create_streaming_subscription({**STREAMING_BODY, "channel": {"channelType": "REST"}})
    assert sandbox.subscriptions() == []


def test_messages_parse_string_and_number_readings_and_both_heartbeat_forms() -> None:
    prose = SubscriptionMessage.model_validate({"type": "system-alert", "heartbeat": "true", "data": {}})
    definition = SubscriptionMessage.model_validate({"type": "system-alert", "data": {"heartbeat": True}})
    neither = SubscriptionMessage.model_validate({"type": "system-alert", "data": {"heartbeat": False}})
    assert prose.is_heartbeat and definition.is_heartbeat and not neither.is_heartbeat
    text = SubscriptionMessage.model_validate(
        {
            "type": "environmental",
            "data": {"reading": {"unit": "PERCENT", "value": "50.045"}, "readingTime": "2023-10-03 13:09:32"},
        }
    )
    number = SubscriptionMessage.model_validate(
        {"type": "environmental", "data": {"reading": {"value": 50.045}}}
    )
    power = SubscriptionMessage.model_validate(
        {"type": "power", "data": {"realPower": {"unit": "kW", "value": "7.36"}}}
    )
    assert (
        text.reading_value() == number.reading_value() == 50.045 and power.reading_value("realPower") == 7.36
    )
    assert text.occurred_at is not None and text.occurred_at.isoformat() == "2023-10-03T13:09:32+00:00"
    alarm = SubscriptionMessage.model_validate(
        {"type": "system-alert", "data": {"triggeredTime": "2023-10-03T13:09:32"}}
    )
    assert alarm.occurred_at == text.occurred_at
