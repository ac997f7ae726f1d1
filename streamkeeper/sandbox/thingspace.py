"""Emulator of Verizon ThingSpace: the token endpoint, the M2M session login, and the Cloud Connector.

What it enforces (source in brackets; see docs/vendors/thingspace.md):

- ``POST /api/ts/v1/oauth2/token``: Basic ``app_key:app_secret``, form ``grant_type=client_credentials``; a
  bearer valid one hour, and the same bearer again while it lives (doc).
- ``POST /api/m2m/v1/session/login`` ``{username, password}`` -> ``{sessionToken}``, with a bearer; a session
  expires after 20 minutes without use, and 5 failed logins in a row lock the user (doc);
  ``POST /api/m2m/v1/session/logout`` with both tokens ends the session -> ``{sessionToken}`` (doc). The
  session API answers its own errors as 400 ``{errorCode, errorMessage}`` (doc: Verizon's SDK, whose codes
  are ``<service>.<code>``; the codes here are ours).
- Cloud Connector under ``/api/cc/v1`` needs both ``Authorization: Bearer`` and ``VZ-M2M-Token`` (seed). An
  unknown or expired bearer gets the API gateway's fault 900901, a missing one 900902 (doc), both 401; a
  missing or dead session gets 401 ``unauthorized``.
- A target must exist before its subscription, one subscription per ``streamkind`` per account (seed).
  Target schemes: ``streamrest``, ``streamawsiot`` (doc), ``streamazureiot`` (doc: the SDK's Create Target
  example, an Azure IoT Central URL with a ``SharedAccessSignature`` in ``fields.httpheaders``) and
  ``streamawssqs`` (ours).
- Errors are ``{"error", "error_description", "cause"}`` (seed): 400 ``bad_request``, 404 ``not_found``.
- Receiver credentials a target was given are stored, used for delivery, and never returned.

`emit` makes ``ts.event`` messages and delivers them to each enabled subscription's target: ``streamrest``
by an HTTP POST with the target's credentials, ``streamawssqs`` through `ThingSpaceSandbox.sqs_sink`.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import random
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from streamkeeper.sandbox.base import VendorSandbox
from streamkeeper.validation import describe

DEFAULT_APP_KEY = "sandbox-thingspace-app-key"
DEFAULT_APP_SECRET = "sandbox-thingspace-app-secret"
DEFAULT_USERNAME = "sandbox-uws-user"
DEFAULT_PASSWORD = "sandbox-uws-password"
DEFAULT_ACCOUNT = "0000000000-00001"

TOKEN_LIFETIME = 3600  # doc: a bearer is valid one hour
SESSION_IDLE = 20 * 60  # doc: a session expires after 20 minutes without use
MAX_FAILED_LOGINS = 5  # doc: the user is locked after 5 failed logins in a row
AGGREGATE_MAX = 10  # ours: events per message when a subscription allows aggregation
DEVICES_PER_ACCOUNT = 3  # ours
STREAM_KINDS = ("ts.event", "ts.event.diagnostics", "ts.event.configuration", "ts.event.security")
TARGET_TYPES = {
    "streamrest": "REST",  # ours
    "streamawsiot": "Amazon Web Services",  # doc (query example)
    "streamazureiot": "Azure IoT Central",  # ours
    "streamawssqs": "Amazon SQS",  # ours
}
HEADER_SCHEMES = frozenset({"streamrest", "streamazureiot"})  # targets that take receiver headers
SESSION_SERVICE = "UnifiedWebService"  # doc: a session error code is "<service>.<code>"
SESSION_HEADER = "VZ-M2M-Token"
_CC = "/api/cc/v1"
_NO_TIME = "0001-01-01T00:00:00Z"  # seed: laststreamingtime before any streaming

SqsSink = Callable[[str, str | None, list[dict[str, Any]]], object]
"""``sink(queue_address, region, messages)``: puts the messages of one delivery on an SQS queue."""


# -- request bodies as the emulator validates them -------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # ours: unknown fields are refused, to catch client mistakes


class _AccountId(_Strict):
    billingaccountid: str = Field(min_length=1)


class _ResourceId(_Strict):
    id: str = Field(min_length=1)
    imei: str | None = None


class _Fields(_Strict):
    httpheaders: dict[str, str] | None = None
    devicetypes: list[str] | None = None


class _OAuthHost(_Strict):
    hostandpath: str = Field(min_length=1)


class _OAuthBody(_Strict):
    grant_type: Literal["refresh_token", "client_credentials"]
    refresh_token: str | None = None
    headers: dict[str, str] | None = None
    host: _OAuthHost
    scope: str | None = None


class _OAuth(_Strict):
    body: _OAuthBody
    version: str | None = None


class _CCBody(_Strict):
    accountidentifier: _AccountId
    billingaccountid: str | None = None  # seed: the example sends it beside accountidentifier


class _TargetIn(_CCBody):
    kind: Literal["ts.target"] | None = None
    name: str | None = None
    description: str | None = None
    address: str = Field(min_length=1)  # ours: required (the doc marks it optional)
    addressscheme: Literal["streamrest", "streamawsiot", "streamazureiot", "streamawssqs"]
    region: str | None = None
    externalid: str | None = None
    fields: _Fields | None = None
    key1: str | None = None
    oauth: _OAuth | None = None


class _SubscriptionIn(_CCBody):
    name: str | None = None
    description: str | None = None
    disabled: bool | None = None
    email: str | None = None
    filter: str | None = None
    streamkind: Literal[STREAM_KINDS]  # type: ignore[valid-type]
    targetid: str = Field(min_length=1)
    allowaggregation: bool


class _SubscriptionPatch(_CCBody):
    id: str = Field(min_length=1)
    name: str | None = None
    description: str | None = None
    disabled: bool | None = None
    email: str | None = None
    filter: str | None = None
    streamkind: Literal[STREAM_KINDS] | None = None  # type: ignore[valid-type]
    targetid: str | None = None
    allowaggregation: bool | None = None


class _Query(_CCBody):
    resourceidentifier: _ResourceId | None = None
    selection: dict[str, str] | None = Field(None, alias="$selection")


class _Delete(_CCBody):
    resourceidentifier: _ResourceId


class _Login(_Strict):
    username: str = Field(min_length=1)
    password: str = Field(min_length=1)


class _EmitIn(_Strict):
    account: str = DEFAULT_ACCOUNT
    count: int = Field(1, ge=0, le=10_000)
    streamkind: Literal[STREAM_KINDS] = "ts.event"  # type: ignore[valid-type]


B = TypeVar("B", bound=BaseModel)


# -- state ----------------------------------------------------------------------------------------------------
@dataclass
class _User:
    password: str
    accounts: set[str]
    failed_logins: int = 0


@dataclass
class _Expiring:
    owner: str  # the app key of a bearer, the user name of a session
    expires_at: float


@dataclass
class _Target:
    public: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)  # secret: sent to the receiver, never returned
    key1: str | None = None  # secret
    oauth: dict[str, Any] | None = None  # secret
    oauth_token: tuple[str, float] | None = None


class Delivery(BaseModel):
    """One message sent (or not) to a subscription's target by `ThingSpaceSandbox.emit`."""

    subscription_id: str
    target_id: str
    addressscheme: str
    address: str
    event_ids: list[str]
    status: int | None = None
    ok: bool = False
    error: str | None = None


class ThingSpaceSandbox(VendorSandbox):
    """In-memory ThingSpace: apps, users, accounts, tokens, sessions, targets and subscriptions.

    Attributes:
        sqs_sink: delivers ``streamawssqs`` messages (unset: such deliveries fail as misconfigured).
        delivery_verify: TLS verification of ``streamrest`` receivers (a context trusting a test CA).
        extra_fields: merged into every target and subscription answer (vendors add fields).
        deliveries: every delivery `emit` made since the last reset.
    """

    name: ClassVar[str] = "thingspace"
    read_only: ClassVar[tuple[str, ...]] = (
        r"^/api/ts/v1/oauth2/token$",
        r"^/api/m2m/v1/session/login$",
        r"/actions/query$",
    )

    def __init__(self, *, seed: int | None = None) -> None:
        self.sqs_sink: SqsSink | None = None
        self.delivery_verify: Any = True
        self.delivery_timeout = 10.0
        self.extra_fields: dict[str, Any] = {}
        self._seed = seed
        super().__init__()

    # -- state and set-up --------------------------------------------------------------------------------------
    def reset_state(self) -> None:
        self.rng = random.Random(self._seed)
        self.apps: dict[str, str] = {DEFAULT_APP_KEY: DEFAULT_APP_SECRET}
        self.users: dict[str, _User] = {}
        self.accounts: dict[str, list[str]] = {}  # billing account id -> device ids
        self.bearers: dict[str, _Expiring] = {}
        self.sessions: dict[str, _Expiring] = {}
        self.targets: dict[str, _Target] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.external_ids: dict[str, set[str]] = {}
        self.deliveries: list[Delivery] = []
        self.add_user(DEFAULT_USERNAME, DEFAULT_PASSWORD, [DEFAULT_ACCOUNT])

    def add_app(self, app_key: str, app_secret: str) -> None:
        """Register a ThingSpace application key and secret."""
        self.apps[app_key] = app_secret

    def add_account(self, account: str) -> None:
        """Create a billing account (with a few devices that `emit` reports from)."""
        if account not in self.accounts:
            self.accounts[account] = [self._uuid() for _ in range(DEVICES_PER_ACCOUNT)]

    def add_user(self, username: str, password: str, accounts: list[str]) -> None:
        """Create a UWS user allowed to use the given billing accounts (created if new)."""
        for account in accounts:
            self.add_account(account)
        self.users[username] = _User(password=password, accounts=set(accounts))

    def expire_tokens(self) -> None:
        """Revoke every bearer and every session."""
        self.bearers.clear()
        self.sessions.clear()

    def error_body(self, status: int, code: str, message: str) -> tuple[bytes, str]:
        return _error_json(code, message, ""), "application/json"

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/ts/v1/oauth2/token", self._token, methods=["POST"]),
            Route("/api/ts/v1/oauth2/revoke", self._revoke, methods=["POST"]),
            Route("/api/m2m/v1/session/login", self._login, methods=["POST"]),
            Route("/api/m2m/v1/session/logout", self._logout, methods=["POST"]),
            Route(f"{_CC}/targets", self._create_target, methods=["POST"]),
            Route(f"{_CC}/targets/actions/query", self._query_targets, methods=["POST"]),
            Route(f"{_CC}/targets/actions/delete", self._delete_target, methods=["POST"]),
            Route(f"{_CC}/targets/actions/newextid", self._new_external_id, methods=["POST"]),
            Route(f"{_CC}/subscriptions", self._create_subscription, methods=["POST"]),
            Route(f"{_CC}/subscriptions", self._update_subscription, methods=["PATCH"]),
            Route(f"{_CC}/subscriptions/actions/query", self._query_subscriptions, methods=["POST"]),
            Route(f"{_CC}/subscriptions/actions/delete", self._delete_subscription, methods=["POST"]),
            Route("/_sandbox/emit", self._emit_route, methods=["POST"]),  # admin, not the vendor's
        ]

    # -- token and session -------------------------------------------------------------------------------------
    async def _token(self, request: Request) -> Response:
        app_key = self._basic_app(request)
        if app_key is None:
            return self._fail(
                401, "invalid_client", "Client authentication failed", "Basic app_key:app_secret"
            )
        form = parse_qs((await request.body()).decode(errors="replace"))
        if form.get("grant_type") != ["client_credentials"]:
            return self._fail(400, "unsupported_grant_type", "grant_type must be client_credentials")
        now = self.now()
        for token, held in self.bearers.items():
            if (
                held.owner == app_key and held.expires_at > now
            ):  # doc: the same token for the rest of its hour
                return JSONResponse(_token_json(token, held.expires_at - now))
        token = _secret_token()
        self.bearers[token] = _Expiring(app_key, now + TOKEN_LIFETIME)
        return JSONResponse(_token_json(token, TOKEN_LIFETIME))

    async def _revoke(self, request: Request) -> Response:
        app_key = self._basic_app(request)
        if app_key is None:
            return self._fail(
                401, "invalid_client", "Client authentication failed", "Basic app_key:app_secret"
            )
        form = parse_qs((await request.body()).decode(errors="replace"))
        for token in form.get("token", []):
            held = self.bearers.get(token)
            if held is not None and held.owner == app_key:
                del self.bearers[token]
        return Response(status_code=200)  # RFC 7009: unknown tokens are not an error

    async def _login(self, request: Request) -> Response:
        denied = self._check_bearer(request)
        if denied is not None:
            return denied
        body = await self._body(request, _Login, self._session_fail)
        if isinstance(body, Response):
            return body
        user = self.users.get(body.username)
        if user is not None and user.failed_logins >= MAX_FAILED_LOGINS:
            return self._session_fail(
                "REQUEST_FAILED.UserLocked",
                "The user is locked after 5 failed logins; Verizon Support unlocks",
            )
        if user is None or not hmac.compare_digest(user.password.encode(), body.password.encode()):
            if user is not None:
                user.failed_logins += 1
            return self._session_fail("REQUEST_FAILED.LoginFailed", "Invalid username or password")
        user.failed_logins = 0
        token = _secret_token()
        self.sessions[token] = _Expiring(body.username, self.now() + SESSION_IDLE)
        return JSONResponse({"sessionToken": token})

    async def _logout(self, request: Request) -> Response:
        """doc: ends the session named by ``VZ-M2M-Token``; answers its token (the SDK's LogOutRequest)."""
        denied = self._check_bearer(request)
        if denied is not None:
            return denied
        token = request.headers.get(SESSION_HEADER, "")
        session = self.sessions.pop(token, None)
        if session is None or session.expires_at <= self.now():
            return self._session_fail(
                "REQUEST_FAILED.SessionToken.Invalid", "VZ-M2M-Token is invalid or expired"
            )
        return JSONResponse({"sessionToken": token})

    def _session_fail(self, code: str, message: str) -> Response:
        """The session API's error (doc: 400 ``{errorCode, errorMessage}``)."""
        body = {"errorCode": f"{SESSION_SERVICE}.{code}", "errorMessage": message}
        return JSONResponse(body, status_code=400)

    def _basic_app(self, request: Request) -> str | None:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            key, _, secret = base64.b64decode(credential, validate=True).decode().partition(":")
        except ValueError:
            return None
        known = self.apps.get(key)
        if known is None or not hmac.compare_digest(known.encode(), secret.encode()):
            return None
        return key

    def _check_bearer(self, request: Request) -> Response | None:
        header = request.headers.get("authorization")
        if not header:
            return _fault(
                "900902", "Missing Credentials", "Send a header 'Authorization: Bearer ACCESS_TOKEN'"
            )
        scheme, _, token = header.partition(" ")
        held = self.bearers.get(token) if scheme.lower() == "bearer" else None
        if held is None or held.expires_at <= self.now():
            self.bearers.pop(token, None)
            return _fault(
                "900901", "Invalid Credentials", "Make sure you have given the correct access token"
            )
        return None

    def _check_session(self, request: Request) -> _User | Response:
        denied = self._check_bearer(request)
        if denied is not None:
            return denied
        token = request.headers.get(SESSION_HEADER)
        if not token:
            return self._fail(401, "unauthorized", "VZ-M2M-Token header is missing", "POST /session/login")
        session = self.sessions.get(token)
        now = self.now()
        if session is None or session.expires_at <= now:
            self.sessions.pop(token, None)
            return self._fail(401, "unauthorized", "VZ-M2M-Token is invalid or expired", "log in again")
        session.expires_at = now + SESSION_IDLE  # doc: a session lives as long as it is used
        return self.users[session.owner]

    # -- request plumbing --------------------------------------------------------------------------------------
    async def _body(
        self, request: Request, model: type[B], fail: Callable[[str, str], Response] | None = None
    ) -> B | Response:
        refuse = fail or (lambda code, message: self._fail(400, "bad_request", message, "validation"))
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":  # seed: the content type must be JSON
            return refuse("INPUT_INVALID.ContentType", "Content-Type must be application/json")
        try:
            data = json.loads(await request.body())
        except ValueError:
            return refuse("INPUT_INVALID.Json", "The request body is not valid JSON")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            return refuse("INPUT_INVALID.Body", f"Invalid request: {describe(exc)}")

    async def _cc(self, request: Request, model: type[B]) -> tuple[B, str] | Response:
        """Authenticate a Cloud Connector call, validate its body, and check its billing account."""
        user = self._check_session(request)
        if isinstance(user, Response):
            return user
        body = await self._body(request, model)
        if isinstance(body, Response):
            return body
        account = body.accountidentifier.billingaccountid  # type: ignore[attr-defined]
        if body.billingaccountid not in (None, account):  # type: ignore[attr-defined]
            return self._fail(400, "bad_request", "billingaccountid differs from accountidentifier")
        if account not in user.accounts:  # ours: 403 for an account the user may not use
            return self._fail(403, "forbidden", f"No access to billing account {account}")
        return body, account

    def _fail(self, status: int, code: str, description: str, cause: str = "") -> Response:
        return Response(
            _error_json(code, description, cause), status_code=status, media_type="application/json"
        )

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _now(self) -> str:
        return _iso(self.now())

    # -- targets -----------------------------------------------------------------------------------------------
    async def _create_target(self, request: Request) -> Response:
        checked = await self._cc(request, _TargetIn)
        if isinstance(checked, Response):
            return checked
        body, account = checked
        problem = _address_problem(body.addressscheme, body.address)
        if problem:
            return self._fail(
                400, "bad_request", f"Invalid address for {body.addressscheme}: {problem}", "address"
            )
        headers = (body.fields.httpheaders if body.fields else None) or {}
        if body.addressscheme not in HEADER_SCHEMES and headers:  # ours
            return self._fail(400, "bad_request", "httpheaders are for streamrest and streamazureiot targets")
        if body.addressscheme != "streamrest" and (body.key1 or body.oauth):  # ours
            return self._fail(400, "bad_request", "key1 and oauth are for streamrest targets only")
        if body.externalid is not None and body.externalid not in self.external_ids.get(account, set()):
            return self._fail(
                400, "bad_request", "Unknown externalid", "get one from /targets/actions/newextid"
            )
        now = self._now()
        public: dict[str, Any] = {
            "id": self._uuid(),
            "kind": "ts.target",
            "name": body.name,
            "description": body.description,
            "address": body.address,
            "addressscheme": body.addressscheme,
            "billingaccountid": account,
            "region": body.region,
            "externalid": body.externalid,
            "createdon": now,
            "lastupdated": now,
            "version": "1.0",
            "versionid": self._uuid(),
        }
        if body.fields and body.fields.devicetypes:
            public["fields"] = {"devicetypes": list(body.fields.devicetypes)}
        target = _Target(
            public={k: v for k, v in public.items() if v is not None},
            headers=dict(headers),
            key1=body.key1,
            oauth=body.oauth.model_dump(exclude_none=True) if body.oauth else None,
        )
        self.targets[target.public["id"]] = target
        return JSONResponse(self.target_view(target))

    async def _query_targets(self, request: Request) -> Response:
        checked = await self._cc(request, _Query)
        if isinstance(checked, Response):
            return checked
        body, account = checked
        found = [t.public for t in self.targets.values() if t.public["billingaccountid"] == account]
        views = [self.target_view(self.targets[p["id"]]) for p in _select(found, body)]
        return JSONResponse(views)

    async def _delete_target(self, request: Request) -> Response:
        checked = await self._cc(request, _Delete)
        if isinstance(checked, Response):
            return checked
        body, account = checked
        target_id = body.resourceidentifier.id
        target = self.targets.get(target_id)
        if target is None or target.public["billingaccountid"] != account:
            return self._fail(404, "not_found", f"Target {target_id} not found")
        users = sorted(s["id"] for s in self.subscriptions.values() if s["targetid"] == target_id)
        if users:  # ours: a target still used by a subscription is not deleted
            return self._fail(409, "conflict", f"Target {target_id} is used by subscription {users[0]}")
        del self.targets[target_id]
        return Response(status_code=200)

    async def _new_external_id(self, request: Request) -> Response:
        checked = await self._cc(request, _CCBody)
        if isinstance(checked, Response):
            return checked
        _, account = checked
        external_id = base64.urlsafe_b64encode(secrets.token_bytes(52)).decode()
        self.external_ids.setdefault(account, set()).add(external_id)
        return JSONResponse({"externalid": external_id})

    def target_view(self, target: _Target) -> dict[str, Any]:
        """A target as the API returns it: never its receiver credentials."""
        return {**json.loads(json.dumps(target.public)), **self.extra_fields}

    # -- subscriptions -----------------------------------------------------------------------------------------
    async def _create_subscription(self, request: Request) -> Response:
        checked = await self._cc(request, _SubscriptionIn)
        if isinstance(checked, Response):
            return checked
        body, account = checked
        refused = self._target_refusal(body.targetid, account)
        if refused is not None:
            return refused
        clash = self._streamkind_owner(account, body.streamkind)
        if clash is not None:
            return self._clash(body.streamkind, clash)
        now = self._now()
        subscription = {
            "configurationfailures": 0,
            "createdon": now,
            "delegateid": "00000000-0000-0000-0000-000000000000",
            "description": body.description,
            "disabled": bool(body.disabled),
            "email": body.email,
            "filter": body.filter,  # ours: stored, not applied to emitted events
            "id": self._uuid(),
            "kind": "ts.subscription",
            "laststreamingstatus": "",
            "laststreamingtime": _NO_TIME,
            "lastupdated": now,
            "name": body.name,
            "networkfailures": 0,
            "streamfailures": 0,
            "streamkind": body.streamkind,
            "targetid": body.targetid,
            "targettype": TARGET_TYPES[self.targets[body.targetid].public["addressscheme"]],
            "version": "1.0",
            "versionid": self._uuid(),
            "allowaggregation": body.allowaggregation,  # ours: returned so that audits can compare it
            "billingaccountid": account,
        }
        subscription = {k: v for k, v in subscription.items() if v is not None}
        self.subscriptions[subscription["id"]] = subscription
        return JSONResponse(self.subscription_view(subscription))

    async def _query_subscriptions(self, request: Request) -> Response:
        checked = await self._cc(request, _Query)
        if isinstance(checked, Response):
            return checked
        body, account = checked
        found = [s for s in self.subscriptions.values() if s["billingaccountid"] == account]
        return JSONResponse([self.subscription_view(s) for s in _select(found, body)])

    async def _update_subscription(self, request: Request) -> Response:
        checked = await self._cc(request, _SubscriptionPatch)
        if isinstance(checked, Response):
            return checked
        body, account = checked
        subscription = self.subscriptions.get(body.id)
        if subscription is None or subscription["billingaccountid"] != account:
            return self._fail(404, "not_found", f"Subscription {body.id} not found")
        changes = {
            k: v
            for k, v in body.model_dump(exclude={"accountidentifier", "billingaccountid", "id"}).items()
            if v is not None  # ours: null means "leave as is"
        }
        if "targetid" in changes:
            refused = self._target_refusal(changes["targetid"], account)
            if refused is not None:
                return refused
            changes["targettype"] = TARGET_TYPES[self.targets[changes["targetid"]].public["addressscheme"]]
        if "streamkind" in changes:
            clash = self._streamkind_owner(account, changes["streamkind"])
            if clash is not None and clash != body.id:
                return self._clash(changes["streamkind"], clash)
        subscription.update(changes, lastupdated=self._now(), versionid=self._uuid())
        return JSONResponse(self.subscription_view(subscription))

    async def _delete_subscription(self, request: Request) -> Response:
        checked = await self._cc(request, _Delete)
        if isinstance(checked, Response):
            return checked
        body, account = checked
        subscription_id = body.resourceidentifier.id
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None or subscription["billingaccountid"] != account:
            return self._fail(404, "not_found", f"Subscription {subscription_id} not found")
        del self.subscriptions[subscription_id]
        return Response(status_code=200)

    def subscription_view(self, subscription: dict[str, Any]) -> dict[str, Any]:
        """A subscription as the API returns it."""
        return {**subscription, **self.extra_fields}

    def _target_refusal(self, target_id: str, account: str) -> Response | None:
        target = self.targets.get(target_id)
        if target is None or target.public["billingaccountid"] != account:
            # seed: the target must be created before its subscription; the 400 is ours
            return self._fail(
                400,
                "bad_request",
                f"targetid {target_id} is not a target of this account",
                "create the target first",
            )
        return None

    def _streamkind_owner(self, account: str, streamkind: str) -> str | None:
        for subscription in self.subscriptions.values():
            if subscription["billingaccountid"] == account and subscription["streamkind"] == streamkind:
                return str(subscription["id"])
        return None

    def _clash(self, streamkind: str, owner: str) -> Response:
        # seed: no two subscriptions of an account may have the same streamkind; the 409 is ours
        return self._fail(
            409, "conflict", f"The account already has a {streamkind} subscription ({owner})", "streamkind"
        )

    # -- events ------------------------------------------------------------------------------------------------
    def emit(
        self, account: str = DEFAULT_ACCOUNT, count: int = 1, streamkind: str = "ts.event"
    ) -> list[Delivery]:
        """Make `count` events in `account` and deliver them to its enabled `streamkind` subscriptions.

        Callable from any thread; returns once every delivery is done (each is also kept in `deliveries`).
        Over HTTP: ``POST /_sandbox/emit`` with ``{"account", "count", "streamkind"}``.
        """
        if self.server is None:
            return asyncio.run(self.emit_async(account, count, streamkind))
        result: list[Delivery] = self.call_in_loop(
            self.emit_async(account, count, streamkind), timeout=self.delivery_timeout * max(1, count) + 10
        )
        return result

    async def _emit_route(self, request: Request) -> Response:
        try:
            spec = _EmitIn.model_validate(json.loads(await request.body() or b"{}"))
            deliveries = await self.emit_async(spec.account, spec.count, spec.streamkind)
        except (ValueError, ValidationError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"deliveries": [d.model_dump() for d in deliveries]})

    async def emit_async(
        self, account: str = DEFAULT_ACCOUNT, count: int = 1, streamkind: str = "ts.event"
    ) -> list[Delivery]:
        """`emit`, on the running event loop."""
        if account not in self.accounts:
            raise ValueError(f"unknown billing account {account!r}")
        messages = [self._event(account, streamkind) for _ in range(count)]
        subscriptions = [
            s
            for s in self.subscriptions.values()
            if s["billingaccountid"] == account and s["streamkind"] == streamkind and not s["disabled"]
        ]
        async with httpx.AsyncClient(verify=self.delivery_verify, timeout=self.delivery_timeout) as http:
            done = await asyncio.gather(*(self._deliver_all(http, s, messages) for s in subscriptions))
        deliveries = [d for per_subscription in done for d in per_subscription]
        self.deliveries.extend(deliveries)
        return deliveries

    def _event(self, account: str, streamkind: str) -> dict[str, Any]:
        """One message, as ThingSpace streams it (doc, partial; the sensor fields are ours)."""
        rng = self.rng
        now = self._now()
        fields = {
            "temperature": round(rng.uniform(-10.0, 45.0), 1),
            "humidity": round(rng.uniform(10.0, 95.0), 1),
            "battery": rng.randint(5, 100),
            "acceleration": {axis: round(rng.uniform(-2.0, 2.0), 3) for axis in ("x", "y", "z")},
            "location": {
                "latitude": round(40.7128 + rng.uniform(-0.5, 0.5), 6),
                "longitude": round(-74.0060 + rng.uniform(-0.5, 0.5), 6),
            },
        }
        data = {
            "id": self._uuid(),
            "kind": streamkind,
            "version": "1.0",
            "versionid": self._uuid(),
            "deviceid": rng.choice(self.accounts[account]),
            "fields": fields,
            "createdon": now,
            "lastupdated": now,
            "state": "update",  # ours
            "tagids": [],
            "transactionid": self._uuid(),
        }
        return {"kind": streamkind, "action": "create", "data": data}

    async def _deliver_all(
        self, http: httpx.AsyncClient, subscription: dict[str, Any], messages: list[dict[str, Any]]
    ) -> list[Delivery]:
        """Deliver in order: one event a message unless the subscription allows aggregation."""
        target = self.targets.get(subscription["targetid"])
        if target is None:
            return []
        size = AGGREGATE_MAX if subscription["allowaggregation"] else 1
        deliveries = []
        for start in range(0, len(messages), size):
            batch = messages[start : start + size]
            delivery, failure = await self._deliver(http, subscription, target, batch)
            self._record_streaming(subscription["id"], failure)
            deliveries.append(delivery)
        return deliveries

    async def _deliver(
        self,
        http: httpx.AsyncClient,
        subscription: dict[str, Any],
        target: _Target,
        batch: list[dict[str, Any]],
    ) -> tuple[Delivery, str | None]:
        """Send one message; returns the delivery and which failure counter it adds to, if any."""
        scheme = target.public["addressscheme"]
        address = target.public["address"]
        delivery = Delivery(
            subscription_id=subscription["id"],
            target_id=target.public["id"],
            addressscheme=scheme,
            address=address,
            event_ids=[m["data"]["id"] for m in batch],
        )
        payload: Any = batch if subscription["allowaggregation"] else batch[0]  # ours: a list when aggregated
        try:
            if scheme == "streamrest":
                headers = await self._receiver_headers(http, target)
                response = await http.post(_rest_url(address), json=payload, headers=headers)
                delivery.status = response.status_code
                delivery.ok = response.is_success
                if not delivery.ok:
                    delivery.error = f"receiver answered HTTP {response.status_code}"
                    failure = (
                        "configurationfailures" if response.status_code in (401, 403) else "streamfailures"
                    )
                    return delivery, failure
            elif scheme == "streamawssqs" and self.sqs_sink is not None:
                await asyncio.to_thread(self.sqs_sink, address, target.public.get("region"), batch)
                delivery.ok = True
            else:
                delivery.error = f"no {scheme} delivery in this sandbox (set sqs_sink for streamawssqs)"
                return delivery, "configurationfailures"
        except httpx.HTTPError as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
            return delivery, "networkfailures"
        except Exception as exc:  # a failing sink is a failed delivery, not a crashed emulator
            delivery.error = f"{type(exc).__name__}: {exc}"
            return delivery, "streamfailures"
        return delivery, None

    async def _receiver_headers(self, http: httpx.AsyncClient, target: _Target) -> dict[str, str]:
        headers = dict(target.headers)
        if target.key1:
            headers["Authorization"] = target.key1 if " " in target.key1 else f"Bearer {target.key1}"
        if target.oauth:
            headers["Authorization"] = f"Bearer {await self._receiver_token(http, target)}"
        return headers

    async def _receiver_token(self, http: httpx.AsyncClient, target: _Target) -> str:
        """An OAuth2 token from the receiver's token endpoint (doc: target ``oauth``), cached until expiry."""
        now = self.now()
        if target.oauth_token and target.oauth_token[1] > now + 60:
            return target.oauth_token[0]
        body = target.oauth["body"]  # type: ignore[index]
        form = {k: body[k] for k in ("grant_type", "refresh_token", "scope") if body.get(k)}
        response = await http.post(body["host"]["hostandpath"], data=form, headers=body.get("headers") or {})
        response.raise_for_status()
        answer = response.json()
        target.oauth_token = (answer["access_token"], now + float(answer.get("expires_in", 3600)))
        return target.oauth_token[0]

    def _record_streaming(self, subscription_id: str, failure: str | None) -> None:
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None:  # deleted while delivering
            return
        subscription["laststreamingtime"] = self._now()
        subscription["laststreamingstatus"] = "success" if failure is None else "fail"
        if failure is not None:
            subscription[failure] += 1


# -- helpers --------------------------------------------------------------------------------------------------
def _error_json(code: str, description: str, cause: str) -> bytes:
    return json.dumps({"error": code, "error_description": description, "cause": cause}).encode()


def _fault(code: str, message: str, description: str) -> Response:
    """The API gateway's fault (doc), always 401 here."""
    body = {"fault": {"code": code, "message": message, "description": description}}
    return JSONResponse(body, status_code=401)


def _secret_token() -> str:
    """A bearer or session token: unpredictable, never from the seeded generator of ids and events."""
    return str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))


def _token_json(token: str, expires_in: float) -> dict[str, Any]:
    return {
        "access_token": token,
        "scope": "am_application_scope default",
        "token_type": "Bearer",
        "expires_in": max(0, int(expires_in)),
    }


def _iso(ts: float) -> str:
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _rest_url(address: str) -> str:
    """``host:port`` (doc) means HTTPS; a full URL is used as is."""
    return address if "://" in address else f"https://{address}"


def _address_problem(scheme: str, address: str) -> str | None:
    if scheme == "streamrest":
        try:
            parts = urlsplit(_rest_url(address))
            port = parts.port
        except ValueError:
            return "not host:port or an https URL"
        if parts.scheme not in ("https", "http") or not parts.hostname:  # ours: http too, for local receivers
            return "not host:port or an https URL"
        if "://" not in address and port is None:
            return "host:port needs a port"
        return None
    if scheme == "streamawsiot":
        return None if address.startswith("arn:aws:") else "not an AWS ARN"  # doc: a valid ARN
    if scheme == "streamazureiot":  # doc: the IoT Central application's https URL
        parts = urlsplit(address)
        return None if parts.scheme == "https" and parts.hostname else "not an https URL"
    # ours: streamawssqs takes a queue URL or an SQS ARN
    if address.startswith("arn:aws:sqs:") or urlsplit(address).scheme in ("https", "http"):
        return None
    return "not an SQS queue URL or ARN"


def _select(found: list[dict[str, Any]], query: _Query) -> list[dict[str, Any]]:
    """Filter by ``resourceidentifier.id`` and ``$selection`` (ours: exact match of each property)."""
    if query.resourceidentifier is not None:
        found = [r for r in found if r["id"] == query.resourceidentifier.id]
    for key, wanted in (query.selection or {}).items():
        found = [r for r in found if _as_text(r.get(key)) == wanted]
    return found


def _as_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    return None if value is None else str(value)


__all__ = [
    "DEFAULT_ACCOUNT",
    "DEFAULT_APP_KEY",
    "DEFAULT_APP_SECRET",
    "DEFAULT_PASSWORD",
    "DEFAULT_USERNAME",
    "Delivery",
    "SqsSink",
    "ThingSpaceSandbox",
]
