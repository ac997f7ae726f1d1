"""Contract tests: the ThingSpace client against the ThingSpace emulator over HTTP on loopback."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.thingspace import SESSION_IDLE, TOKEN_LIFETIME, ThingSpaceSandbox
from streamkeeper.vendors.http import (
    AuthenticationFailed,
    Conflict,
    MalformedResponse,
    NotFound,
    RequestInvalid,
    RetryPolicy,
    VendorHTTPError,
)
from streamkeeper.vendors.thingspace import (
    STREAM_KINDS,
    CreateTargetRequest,
    Subscription,
    Target,
    TargetOAuth,
    ThingSpaceClient,
)

FAST = RetryPolicy(backoff_base=0.01, max_attempts=4)
ACCOUNT = "1223334444-00001"
APP_KEY = "contract-app-key"
APP_SECRET = "S3NTINEL-app-secret"
USERNAME = "contract-uws-user"
PASSWORD = "S3NTINEL-uws-password"
RX_USER = "receiver-user"
RX_PASSWORD = "S3NTINEL-receiver-password"
RX_TOKEN = "S3NTINEL-receiver-refresh-token"
QUERY_TARGETS = "POST /api/cc/v1/targets/actions/query"
SENTINELS = (
    APP_SECRET,
    PASSWORD,
    RX_PASSWORD,
    RX_TOKEN,
    base64.b64encode(f"{APP_KEY}:{APP_SECRET}".encode()).decode(),
    base64.b64encode(f"{RX_USER}:{RX_PASSWORD}".encode()).decode(),
)


class Recording(httpx.HTTPTransport):
    """A real HTTP transport that also keeps every request and response body it carried."""

    def __init__(self) -> None:
        super().__init__()
        self.exchanges: list[tuple[httpx.Request, int, bytes]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        response.read()
        self.exchanges.append((request, response.status_code, response.content))
        return response


@pytest.fixture
def ts() -> ThingSpaceSandbox:
    sandbox = ThingSpaceSandbox(seed=7)
    sandbox.add_app(APP_KEY, APP_SECRET)
    sandbox.add_user(USERNAME, PASSWORD, [ACCOUNT])
    return sandbox


@pytest.fixture
def server(serve: Callable[..., SandboxServer], ts: ThingSpaceSandbox) -> SandboxServer:
    return serve(ts)


def client_for(server: SandboxServer, **overrides: Any) -> ThingSpaceClient:
    settings: dict[str, Any] = {
        "app_key": APP_KEY,
        "app_secret": SecretStr(APP_SECRET),
        "username": USERNAME,
        "password": SecretStr(PASSWORD),
        "account_name": ACCOUNT,
        "retry": FAST,
        "timeout": 5,
    }
    settings.update(overrides)
    return ThingSpaceClient(server.url, **settings)


def rest_target(name: str = "receiver", address: str = "127.0.0.1:9443") -> CreateTargetRequest:
    return CreateTargetRequest.streamrest(name, address, username=RX_USER, password=SecretStr(RX_PASSWORD))


def subscription(target: Target, kind: str = "ts.event", **more: Any) -> dict[str, Any]:
    return {
        "name": f"{kind} feed",
        "streamkind": kind,
        "targetid": target.id,
        "allowaggregation": False,
        **more,
    }


def statuses(client: ThingSpaceClient, operation: str) -> list[int | None]:
    return [c.status for c in client.recorder.drain() if c.operation == operation]


def raw_post(client: ThingSpaceClient, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    """A request the client would refuse to build, sent with the client's own tokens."""
    return client._http.post(path, json=body, auth=client.auth, **kwargs)


# -- operations ------------------------------------------------------------------------------------------------
def test_every_operation_round_trips(server: SandboxServer, ts: ThingSpaceSandbox) -> None:
    recording = Recording()
    client = client_for(server, transport=recording)
    rest = client.create_target(rest_target())
    assert (rest.addressscheme, rest.address, rest.billingaccountid) == (
        "streamrest",
        "127.0.0.1:9443",
        ACCOUNT,
    )
    external_id = client.new_external_id()
    iot = client.create_target(
        CreateTargetRequest.streamawsiot(
            "aws iot", "arn:aws:iam::252156542789:role/ThingSpace", region="us-east-1", externalid=external_id
        )
    )
    sqs = client.create_target(
        CreateTargetRequest.streamawssqs(
            "queue", "https://sqs.us-east-1.amazonaws.com/1/q", region="us-east-1"
        )
    )
    assert {t.id for t in client.query_targets()} == {rest.id, iot.id, sqs.id}
    assert [t.name for t in client.query_targets(target_id=iot.id)] == ["aws iot"]
    assert [t.id for t in client.query_targets(selection={"addressscheme": "streamawssqs"})] == [sqs.id]

    stored = ts.targets[rest.id]  # the receiver's credentials are kept, to be used for delivery
    assert (
        stored.headers["Authorization"]
        == "Basic " + base64.b64encode(f"{RX_USER}:{RX_PASSWORD}".encode()).decode()
    )
    sub = client.create_subscription(subscription(rest, email="ops@example.com"))
    assert (sub.streamkind, sub.targetid, sub.kind, sub.targettype) == (
        "ts.event",
        rest.id,
        "ts.subscription",
        "REST",
    )
    assert sub.laststreamingtime is not None and sub.laststreamingtime.year == 1  # seed: never streamed yet
    updated = client.update_subscription({"id": sub.id, "disabled": True, "targetid": iot.id})
    assert updated.disabled and updated.targetid == iot.id and updated.versionid != sub.versionid
    assert [s.id for s in client.query_subscriptions(subscription_id=sub.id)] == [sub.id]
    assert client.query_subscriptions(selection={"disabled": "false"}) == []

    client.delete_subscription(sub.id)
    client.delete_target(rest.id)
    assert client.query_subscriptions() == []
    assert {t.id for t in client.query_targets()} == {iot.id, sqs.id}
    # the stored receiver credentials never come back in any answer
    assert all(s not in body.decode() for _, _, body in recording.exchanges for s in SENTINELS)
    # the queries and token requests are not writes
    assert ts.requests.writes == 8  # 3 targets, 1 external id, create + update + 2 deletes


def test_both_tokens_on_every_cloud_connector_call(server: SandboxServer, ts: ThingSpaceSandbox) -> None:
    recording = Recording()
    client = client_for(server, transport=recording)
    target = client.create_target(rest_target())
    client.create_subscription(subscription(target))
    client.query_subscriptions()
    ts.expire_tokens()  # a second pair of tokens, after a 401
    client.query_targets()

    [bearer] = ts.bearers
    [session] = ts.sessions
    cc_calls = [r for r, _, _ in recording.exchanges if r.url.path.startswith("/api/cc/v1/")]
    assert len(cc_calls) == 5
    for request in cc_calls:
        assert request.headers["Authorization"].startswith("Bearer ")
        assert request.headers["VZ-M2M-Token"]
    assert cc_calls[-1].headers["Authorization"] == f"Bearer {bearer}"
    assert cc_calls[-1].headers["VZ-M2M-Token"] == session
    token_calls = [r for r, _, _ in recording.exchanges if r.url.path == "/api/ts/v1/oauth2/token"]
    assert len(token_calls) == 2 and all(r.headers["Authorization"].startswith("Basic ") for r in token_calls)
    assert all(r.content == b"grant_type=client_credentials" for r in token_calls)
    logins = [r for r, _, _ in recording.exchanges if r.url.path == "/api/m2m/v1/session/login"]
    assert len(logins) == 2 and all(r.headers["Authorization"].startswith("Bearer ") for r in logins)
    assert all("VZ-M2M-Token" not in r.headers for r in logins)


# -- auth --------------------------------------------------------------------------------------------------------
def test_gateway_fault_and_session_errors(server: SandboxServer, ts: ThingSpaceSandbox) -> None:
    client = client_for(server)
    client.authenticate()
    token = client.token_auth.token
    assert token is not None
    bearer = token.value.get_secret_value()
    session = token.extra["session"].get_secret_value()
    path = server.url + "/api/cc/v1/targets/actions/query"
    body = {"accountidentifier": {"billingaccountid": ACCOUNT}}

    missing = httpx.post(path, json=body)
    assert missing.status_code == 401 and missing.json()["fault"]["code"] == "900902"
    wrong = httpx.post(path, json=body, headers={"Authorization": "Bearer nope", "VZ-M2M-Token": session})
    assert wrong.status_code == 401
    assert wrong.json()["fault"] == {
        "code": "900901",
        "message": "Invalid Credentials",
        "description": "Make sure you have given the correct access token",
    }
    error = client.error_for(wrong, "query_targets")
    assert isinstance(error, AuthenticationFailed) and error.code == "900901"
    assert "Invalid Credentials" in str(error)
    no_session = httpx.post(path, json=body, headers={"Authorization": f"Bearer {bearer}"})
    assert no_session.status_code == 401 and no_session.json()["error"] == "unauthorized"
    assert set(no_session.json()) == {"error", "error_description", "cause"}
    ok = httpx.post(path, json=body, headers={"Authorization": f"Bearer {bearer}", "VZ-M2M-Token": session})
    assert ok.status_code == 200 and ok.json() == []

    ts.advance(TOKEN_LIFETIME + 1)  # the bearer dies after an hour: the gateway fault again
    expired = httpx.post(
        path, json=body, headers={"Authorization": f"Bearer {bearer}", "VZ-M2M-Token": session}
    )
    assert expired.status_code == 401 and expired.json()["fault"]["code"] == "900901"


def test_token_expiry_refreshes_token_and_session_once(server: SandboxServer, ts: ThingSpaceSandbox) -> None:
    client = client_for(server)
    client.authenticate()
    first = client.token_auth.token
    ts.faults.set(rate=1.0, kinds=["token_expiry"], path=r"^/api/cc/", limit=1)
    assert client.query_targets() == []
    assert client.token_auth.refreshes == 2
    assert client.token_auth.token is not first
    routes = ts.requests.snapshot()["by_route"]
    assert routes["POST /api/ts/v1/oauth2/token"] == 2 and routes["POST /api/m2m/v1/session/login"] == 2
    assert routes[QUERY_TARGETS] == 2  # refused once, resent once (inside one recorded call)

    # still refused after the one refresh: AuthenticationFailed, and no third attempt
    ts.faults.set(rate=1.0, kinds=["token_expiry"], path=r"^/api/cc/", limit=2)
    with pytest.raises(AuthenticationFailed) as info:
        client.query_targets()
    assert info.value.code == "900901"
    assert ts.requests.snapshot()["by_route"][QUERY_TARGETS] == 4


def test_idle_session_is_renewed_with_the_same_bearer(server: SandboxServer, ts: ThingSpaceSandbox) -> None:
    client = client_for(server)
    client.query_targets()
    bearer = next(iter(ts.bearers))
    ts.advance(SESSION_IDLE + 1)  # doc: 20 minutes without use ends the session, the bearer still lives
    assert client.query_targets() == []
    assert ts.requests.snapshot()["by_route"][QUERY_TARGETS] == 3
    assert list(ts.bearers) == [bearer]  # doc: the same bearer for the rest of its hour
    assert client.token_auth.token is not None and client.token_auth.token.value.get_secret_value() == bearer


def test_a_bearer_about_to_expire_is_revoked_and_replaced(
    server: SandboxServer, ts: ThingSpaceSandbox
) -> None:
    client = client_for(server, clock=lambda: ts.now())
    client.authenticate()
    old = next(iter(ts.bearers))
    ts.advance(TOKEN_LIFETIME - 30)  # the vendor would hand back the same bearer with 30 s left
    client.query_targets()
    assert ts.requests.snapshot()["by_route"]["POST /api/ts/v1/oauth2/revoke"] == 1
    token = client.token_auth.token
    assert token is not None and token.value.get_secret_value() != old
    assert token.expires_at - ts.now() > 600
    client.query_targets()
    assert client.token_auth.refreshes == 2  # no refresh storm in the bearer's last minute


def test_bad_credentials_and_lockout(server: SandboxServer, ts: ThingSpaceSandbox) -> None:
    with pytest.raises(AuthenticationFailed) as app:
        client_for(server, app_secret=SecretStr("S3NTINEL-wrong-secret")).authenticate()
    assert (app.value.operation, app.value.code) == ("get_token", "invalid_client")
    wrong = client_for(server, password=SecretStr("S3NTINEL-wrong-password"))
    for _ in range(5):
        with pytest.raises(AuthenticationFailed) as login:
            wrong.authenticate()
        # doc: the session API answers 400 {errorCode, errorMessage}, the code "<service>.<code>"
        assert (login.value.operation, login.value.status) == ("login", 400)
        assert login.value.code == "UnifiedWebService.REQUEST_FAILED.LoginFailed"
        assert login.value.detail == "Invalid username or password"
    with pytest.raises(AuthenticationFailed, match="locked") as locked:  # doc: 5 failed logins lock the user
        client_for(server).authenticate()
    assert locked.value.status == 400


def test_logout_ends_the_session_and_the_next_call_logs_in_again(
    server: SandboxServer, ts: ThingSpaceSandbox
) -> None:
    client = client_for(server)
    assert client.logout() is False  # no session yet
    client.query_targets()
    [session] = list(ts.sessions)
    assert client.logout() is True
    assert session not in ts.sessions and ts.sessions == {}
    assert client.query_targets() == []  # logged in again, transparently
    assert len(ts.sessions) == 1
    calls = ts.requests.snapshot()["by_route"]
    assert calls["POST /api/m2m/v1/session/logout"] == 1 and calls["POST /api/m2m/v1/session/login"] == 2
    stale = {"Authorization": f"Bearer {next(iter(ts.bearers))}", "VZ-M2M-Token": session}
    answer = httpx.post(f"{server.url}/api/m2m/v1/session/logout", headers=stale)
    assert answer.status_code == 400 and set(answer.json()) == {"errorCode", "errorMessage"}


def test_streamazureiot_targets_are_created_with_their_shared_access_signature(
    server: SandboxServer, ts: ThingSpaceSandbox
) -> None:
    client = client_for(server)
    sas = "sr=d1f9b6bf&sig=S3NTINEL-azure-sig&skn=TSCCtoken&se=1648827260410"
    target = client.create_target(
        CreateTargetRequest.streamazureiot(
            "iot-central",
            "https://your_IoT_Central_Application.azureiotcentral.com",
            shared_access_signature=SecretStr(sas),
            devicetypes=["cHeAssetTracker", "tgAssetTracker"],
        )
    )
    assert target.addressscheme == "streamazureiot"
    assert "S3NTINEL" not in json.dumps(ts.target_view(ts.targets[target.id]))  # the signature is never shown
    assert ts.targets[target.id].headers == {"Authorization": f"SharedAccessSignature {sas}"}
    created = client.create_subscription(subscription(target))
    assert created.targettype == "Azure IoT Central"
    with pytest.raises(VendorHTTPError) as not_https:
        client.request(
            "POST",
            "/api/cc/v1/targets",
            operation="raw",
            json={
                "accountidentifier": {"billingaccountid": ACCOUNT},
                "address": "azureiotcentral.com:443",
                "addressscheme": "streamazureiot",
            },
        )
    assert not_https.value.status == 400


# -- documented rules and errors ------------------------------------------------------------------------------
def test_documented_errors(server: SandboxServer, ts: ThingSpaceSandbox) -> None:
    client = client_for(server)
    target = client.create_target(rest_target())

    with pytest.raises(VendorHTTPError) as no_target:  # seed: the target must exist first
        client.create_subscription(subscription(target) | {"targetid": str(uuid.uuid4())})
    assert (no_target.value.status, no_target.value.code) == (400, "bad_request")
    assert "targetid" in str(no_target.value)

    first = client.create_subscription(subscription(target))
    with pytest.raises(Conflict) as twice:  # seed: one subscription per streamkind per account
        client.create_subscription(subscription(target) | {"name": "another"})
    assert twice.value.status == 409 and first.id in str(twice.value)
    for kind in STREAM_KINDS[1:]:  # the other three kinds are each still free
        client.create_subscription(subscription(target, kind))
    with pytest.raises(Conflict):
        client.update_subscription({"id": first.id, "streamkind": "ts.event.security"})

    with pytest.raises(Conflict, match="used by subscription"):  # ours: a target in use stays
        client.delete_target(target.id)
    for operation in (client.delete_subscription, client.delete_target):
        with pytest.raises(NotFound) as missing:
            operation(str(uuid.uuid4()))
        assert (missing.value.status, missing.value.code) == (404, "not_found")
        operation(str(uuid.uuid4()), missing_ok=True)
    with pytest.raises(NotFound):
        client.update_subscription({"id": str(uuid.uuid4()), "disabled": True})

    with pytest.raises(VendorHTTPError) as bad_address:
        client.create_target(CreateTargetRequest.streamrest("x", "ftp://example.com"))
    assert (bad_address.value.status, bad_address.value.code) == (400, "bad_request")
    assert "address" in str(bad_address.value)

    # the client validates before sending, naming the field ...
    writes = ts.requests.writes
    with pytest.raises(RequestInvalid, match="streamkind"):
        client.create_subscription(subscription(target, "ts.bogus"))
    with pytest.raises(RequestInvalid, match="targetid"):
        client.create_subscription(subscription(target) | {"targetid": "not-a-uuid"})
    with pytest.raises(RequestInvalid, match="streamrest"):
        client.create_target(
            {
                "name": "q",
                "address": "arn:aws:sqs:us-east-1:1:q",
                "addressscheme": "streamawssqs",
                "key1": "x",
            }
        )
    assert ts.requests.writes == writes
    # ... and the emulator refuses what a careless client would send
    no_account = raw_post(
        client, "/api/cc/v1/subscriptions", {"streamkind": "ts.event", "targetid": target.id}
    )
    assert no_account.status_code == 400 and no_account.json()["error"] == "bad_request"
    assert "accountidentifier" in no_account.json()["error_description"]
    as_form = client._http.post("/api/cc/v1/targets/actions/query", content=b"x=1", auth=client.auth)
    assert as_form.status_code == 400 and "application/json" in as_form.json()["error_description"]
    other_account = raw_post(
        client, "/api/cc/v1/targets/actions/query", {"accountidentifier": {"billingaccountid": "9"}}
    )
    assert other_account.status_code == 403


# -- resilience ------------------------------------------------------------------------------------------------
def test_retries_on_429_and_5xx(server: SandboxServer, ts: ThingSpaceSandbox) -> None:
    client = client_for(server)
    client.authenticate()
    client.recorder.drain()
    ts.faults.set(rate=1.0, kinds=["429"], retry_after="0.01", path=r"/targets$", limit=2)
    client.create_target(rest_target())  # a create is retried on 429: nothing was done
    assert statuses(client, "create_target") == [429, 429, 200]
    ts.faults.set(rate=1.0, kinds=["5xx"], path=r"/actions/query$", limit=2)
    assert len(client.query_targets()) == 1
    assert [s and s >= 500 for s in statuses(client, "query_targets")] == [True, True, False]
    ts.faults.set(rate=1.0, kinds=["5xx"], path=r"/targets$", limit=1)
    client.create_target(rest_target("second"))  # a 5xx create: looked up (absent), then sent again
    assert len(ts.targets) == 2


@pytest.mark.parametrize("path", [r"/targets$", r"/subscriptions$"])
def test_a_create_whose_answer_is_lost_is_not_repeated(
    server: SandboxServer, ts: ThingSpaceSandbox, path: str
) -> None:
    client = client_for(server)
    client.authenticate()
    setup = client.create_target(rest_target("setup"))
    ts.faults.set(rate=1.0, kinds=["drop_after"], method="POST", path=path, limit=1)
    target = client.create_target(rest_target("lost"))
    sub = client.create_subscription(subscription(setup if path == r"/targets$" else target))
    assert ts.faults.injected == {"drop_after": 1}
    assert [t["name"] for t in (x.public for x in ts.targets.values())] == ["setup", "lost"]
    assert list(ts.subscriptions) == [sub.id]
    assert target.name == "lost"


def test_unknown_fields_parse_and_malformed_is_named(server: SandboxServer, ts: ThingSpaceSandbox) -> None:
    ts.extra_fields = {"futurefield": {"a": 1}}  # a vendor that added a field since our models were written
    client = client_for(server)
    target = client.create_target(rest_target())
    assert target.model_extra == {"futurefield": {"a": 1}}
    sub = client.create_subscription(subscription(target))
    assert isinstance(sub, Subscription) and sub.model_extra == {"futurefield": {"a": 1}}
    ts.faults.set(rate=1.0, kinds=["malformed"], path=r"/actions/query$", limit=1)
    with pytest.raises(MalformedResponse, match="thingspace query_subscriptions"):
        client.query_subscriptions()


# -- events ------------------------------------------------------------------------------------------------------
class Receiver:
    """A tiny streamrest receiver: Basic at /basic, an OAuth2 token endpoint and Bearer at /bearer."""

    def __init__(self) -> None:
        self.received: list[tuple[str, Any]] = []
        basic = "Basic " + base64.b64encode(f"{RX_USER}:{RX_PASSWORD}".encode()).decode()
        self.expected = {"/basic": basic, "/bearer": "Bearer rx-access-token"}
        self.app = Starlette(
            routes=[
                Route("/basic", self.events, methods=["POST"]),
                Route("/bearer", self.events, methods=["POST"]),
                Route("/token", self.token, methods=["POST"]),
            ]
        )

    async def events(self, request: Request) -> Response:
        if request.headers.get("authorization") != self.expected[request.url.path]:
            return Response(status_code=401)
        self.received.append((request.url.path, await request.json()))
        return Response(status_code=204)

    async def token(self, request: Request) -> Response:
        form = (await request.body()).decode()
        if f"refresh_token={RX_TOKEN}" not in form or request.headers.get("x-client") != "ts":
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        return JSONResponse({"access_token": "rx-access-token", "expires_in": 3600})


def test_events_reach_the_receiver_with_its_credentials(
    server: SandboxServer, ts: ThingSpaceSandbox, serve: Callable[..., SandboxServer]
) -> None:
    receiver = Receiver()
    rx = serve(receiver.app)  # type: ignore[arg-type]
    client = client_for(server)
    good = client.create_target(rest_target("rx", f"{rx.url}/basic"))
    sub = client.create_subscription(subscription(good))

    deliveries = ts.emit(ACCOUNT, 3)
    assert [(d.ok, d.status, len(d.event_ids)) for d in deliveries] == [(True, 204, 1)] * 3
    assert [path for path, _ in receiver.received] == ["/basic"] * 3
    messages = [body for _, body in receiver.received]
    assert all(m["kind"] == "ts.event" and m["action"] == "create" for m in messages)  # one event a message
    data = messages[0]["data"]
    assert {"id", "deviceid", "fields", "createdon", "state", "tagids", "transactionid"} <= set(data)
    assert [m["data"]["id"] for m in messages] == [i for d in deliveries for i in d.event_ids]
    assert client.query_subscriptions(subscription_id=sub.id)[0].laststreamingstatus == "success"

    client.update_subscription({"id": sub.id, "allowaggregation": True})
    over_http = httpx.post(f"{server.url}/_sandbox/emit", json={"account": ACCOUNT, "count": 3})
    assert [d["ok"] for d in over_http.json()["deliveries"]] == [True]
    assert (
        isinstance(receiver.received[-1][1], list) and len(receiver.received[-1][1]) == 3
    )  # ours: aggregated

    client.update_subscription({"id": sub.id, "disabled": True})
    assert ts.emit(ACCOUNT, 2) == []  # a disabled subscription sends nothing

    # wrong receiver password: the delivery fails and counts as a configuration failure
    wrong = CreateTargetRequest.streamrest(
        "rx2", f"{rx.url}/basic", username=RX_USER, password=SecretStr("nope")
    )
    diag = client.create_subscription(subscription(client.create_target(wrong), "ts.event.diagnostics"))
    [refused] = ts.emit(ACCOUNT, 1, "ts.event.diagnostics")
    assert (refused.ok, refused.status) == (False, 401)
    seen = client.query_subscriptions(subscription_id=diag.id)[0]
    assert (seen.laststreamingstatus, seen.configurationfailures) == ("fail", 1)

    # OAuth2: the emulator gets a token from the receiver's token endpoint with the refresh token
    oauth = TargetOAuth.model_validate(
        {
            "body": {
                "refresh_token": SecretStr(RX_TOKEN),
                "headers": {"X-Client": SecretStr("ts")},
                "host": {"hostandpath": f"{rx.url}/token"},
            }
        }
    )
    oauth_target = client.create_target(
        CreateTargetRequest.streamrest("rx3", f"{rx.url}/bearer", oauth=oauth)
    )
    client.create_subscription(subscription(oauth_target, "ts.event.configuration"))
    assert [d.ok for d in ts.emit(ACCOUNT, 2, "ts.event.configuration")] == [True, True]
    assert [path for path, _ in receiver.received[-2:]] == ["/bearer", "/bearer"]

    # streamawssqs goes through the pluggable sink
    sunk: list[tuple[str, str | None, list[dict[str, Any]]]] = []
    ts.sqs_sink = lambda address, region, messages: sunk.append((address, region, messages))
    queue = client.create_target(
        CreateTargetRequest.streamawssqs("q", "http://127.0.0.1:9/q", region="us-east-1")
    )
    client.create_subscription(subscription(queue, "ts.event.security"))
    [to_queue] = ts.emit(ACCOUNT, 1, "ts.event.security")
    assert to_queue.ok and sunk[0][:2] == ("http://127.0.0.1:9/q", "us-east-1")
    assert sunk[0][2][0]["data"]["id"] == to_queue.event_ids[0]


def test_secrets_never_reach_exceptions_or_logs(
    server: SandboxServer,
    ts: ThingSpaceSandbox,
    serve: Callable[..., SandboxServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = Receiver()
    rx = serve(receiver.app)  # type: ignore[arg-type]
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        client = client_for(server)
        target = client.create_target(rest_target("rx", f"{rx.url}/basic"))
        client.create_subscription(subscription(target))
        ts.faults.set(rate=1.0, kinds=["token_expiry"], path=r"^/api/cc/", limit=1)
        texts.append(repr(client.query_targets()))
        texts.extend(repr(d) for d in ts.emit(ACCOUNT, 1))
        texts.append(repr(rest_target()))
        failures: list[Exception] = []
        for call in (
            lambda: client_for(server, password=SecretStr(PASSWORD + "x")).authenticate(),
            lambda: client_for(server, app_secret=SecretStr(APP_SECRET + "x")).authenticate(),
            lambda: CreateTargetRequest.streamrest(
                "", "h:1", username=RX_USER, password=SecretStr(RX_PASSWORD)
            ),
            lambda: client.create_target(
                CreateTargetRequest.streamrest(
                    "x", "ftp://h", username=RX_USER, password=SecretStr(RX_PASSWORD)
                )
            ),
            lambda: CreateTargetRequest.streamrest("x", "h:1", password=SecretStr(RX_PASSWORD)),
            lambda: client.create_target(
                {**rest_target().model_dump(), "fields": {"httpheaders": RX_PASSWORD}}
            ),
        ):
            with pytest.raises(Exception) as info:
                call()
            failures.append(info.value)
    assert [type(f).__name__ for f in failures] == [
        "AuthenticationFailed",
        "AuthenticationFailed",
        "RequestInvalid",
        "VendorHTTPError",
        "RequestInvalid",
        "RequestInvalid",
    ]
    texts.extend(str(f) for f in failures)
    texts.extend(r.getMessage() for r in caplog.records)
    assert caplog.records  # httpx did log the calls
    leaks = [(s, t) for t in texts for s in SENTINELS if s in t]
    assert leaks == []


def test_credentials_block_builds_a_working_client(server: SandboxServer) -> None:
    from blocks.thingspace import ThingSpaceCredentials

    block = ThingSpaceCredentials(
        base_url=server.url,
        app_key=APP_KEY,
        app_secret=APP_SECRET,
        username=USERNAME,
        password=PASSWORD,
        account_name=ACCOUNT,
        timeout_seconds=5,
    )
    assert APP_SECRET not in repr(block) and PASSWORD not in repr(block)
    fields = ThingSpaceCredentials.model_fields
    assert all(f.description and f.description.endswith(".") for f in fields.values())
    client = block.get_client()
    assert client.query_targets() == [] and client.account_name == ACCOUNT


def test_emit_without_a_server() -> None:
    sandbox = ThingSpaceSandbox()
    assert sandbox.emit(count=1) == []  # no subscriptions yet; runs on a loop of its own
    with pytest.raises(ValueError, match="unknown billing account"):
        sandbox.emit("no-such-account")
