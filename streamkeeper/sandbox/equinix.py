"""Emulator of Equinix SmartView stream subscriptions: token, both subscription APIs, subscription data.

State (in memory): client credentials, each belonging to one organisation; bearer tokens with expiry;
the seed API's subscriptions (one per organisation); the current API's subscriptions; and per
subscription an append-only feed of messages, filled by `EquinixSandbox.emit` and served by
``subscriptionData`` with stable offsets.

Routes:

- ``POST /oauth2/v1/token``: client credentials -> ``{access_token, token_timeout: "3599", token_type,
  user_name}``; a refused request answers 400 ``{error_domain, error_title, error_code, developer_message,
  error_message}`` (Equinix's published definition of the token API).
- ``/smartview/v2/streams/subscriptions`` (seed): ``GET`` (the organisation's one subscription, an
  object), ``POST``, ``DELETE`` (closes it); ``GET|PUT|DELETE .../{subscriptionId}``.
- ``/smartview/v2/streaming/subscriptions`` (current): ``GET`` (array), ``POST`` (201 + ``Location``);
  ``GET|PUT (204)|DELETE (204) .../{id}``; ``GET /smartview/v2/streaming/subscriptionData/{id}``.

Errors use the ApiError shape ``{errorCode, errorMessage, correlationId, details, additionalInfo:
{constraintCode, reason}}`` (the published definition), except the seed API's own rules, which answer
``{errors: [{code, message, more_info, data}]}`` (the error list its subscription bodies carry). Messages
follow the published definition: reading and power values are strings, ``system-alert`` is alarm data
(``alarmMessageData``), ``custom-alert`` alert data, power data carries ``realPower``, ``apparentPower``,
``current``...; weekly heartbeats are alert messages with ``data.heartbeat: true`` (``heartbeat_style=
"message"``: the prose docs' ``heartbeat: "true"`` beside ``data``). Behaviour the vendor does not
document is marked ``# ours``.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import secrets
import ssl
import tempfile
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode, urlsplit

import httpx
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from streamkeeper.sandbox.base import VendorSandbox
from streamkeeper.sandbox.tls import TLSFiles, self_signed

TOKEN_PATH = "/oauth2/v1/token"
STREAMS = "/smartview/v2/streams/subscriptions"
STREAMING = "/smartview/v2/streaming/subscriptions"
DATA = "/smartview/v2/streaming/subscriptionData"

DEFAULT_CLIENT_ID = "sandbox-equinix-client"  # ours: the sandbox's ready-made credentials
DEFAULT_CLIENT_SECRET = "sandbox-equinix-secret"
DEFAULT_ORG = "org-sandbox"

SUBSCRIPTION_HEADER = "X-Equinix-Subscription-Id"  # ours: which subscription a pushed batch belongs to
DEFAULT_BATCH = 10  # ours: messages a webhook delivery carries when the channel gives no batchSize
DEFAULT_RETRIES = 3  # ours: attempts after a failed delivery when the channel gives no numberOfRetries
DEFAULT_LIMIT = 250  # doc
MAX_LIMIT = 1000  # ours
HEARTBEAT_EVERY = timedelta(days=7)  # doc: weekly heartbeats

# -- the seed API's vocabulary (seed) ----------------------------------------------------------------------
STREAMS_FAMILIES: dict[str, dict[str, frozenset[str] | None]] = {
    # family -> its filter fields (None: free text) besides accountNo and ibx
    "alarm": {
        "alarmType": frozenset({"ABSOLUTE", "DEVIATION", "DIGITAL", "MULTI_STATE"}),
        "assetClassification": frozenset({"ELECTRICAL", "MECHANICAL", "ENVIRONMENTAL", "POWER"}),
        "conditionName": frozenset({"ALARM", "HIGH", "HIGH_HIGH", "LOW", "LOW_LOW", "WARNING"}),
        "region": frozenset({"AMER", "EMEA", "APAC"}),
    },
    "alert": {},
    "asset": {"classification": frozenset({"ELECTRICAL", "MECHANICAL", "ENVIRONMENTAL", "POWER"})},
    "environment": {"granularity": frozenset({"IBX", "ZONE", "CAGE"})},
    "power": {},
}
METHODS = frozenset({"PULL", "PUSH"})
PROVIDERS = frozenset({"GOOGLE", "AWS", "AWS_IOT", "AZURE", "KAFKA"})
CONFIG_FIELDS = frozenset({"method", "provider", "region", "roleArnToAssume", "subscription", "token", "url"})

# -- the current API's vocabulary (doc) --------------------------------------------------------------------
STREAMING_FAMILIES: dict[str, dict[str, frozenset[str] | None]] = {
    "asset": {
        "assetClassification": frozenset({"ELECTRICAL", "MECHANICAL", "ENVIRONMENTAL"}),  # doc: no POWER
        "assetId": None,
    },
    "environmental": {"level": frozenset({"IBX", "ZONE", "CAGE"})},
    "power": {},
    "meteredPower": {},
    "systemAlert": {},
    "customAlert": {"user": None},
}
CHANNEL_CONFIGS = {
    "AWS_IOT_CORE": "awsIotCoreChannelConfiguration",
    "WEBHOOK": "webhookChannelConfiguration",
    "AZURE": "azureChannelConfiguration",
}
# doc (the definition): the batch settings of a webhook (and Azure) channel, integers within these bounds
CHANNEL_BOUNDS = {"batchSize": (5, 20), "numberOfConcurrentCalls": (20, 50), "numberOfRetries": (1, 5)}
CHANNEL_FIELDS = {
    "awsIotCoreChannelConfiguration": frozenset({"url"}),
    "webhookChannelConfiguration": frozenset({"url", "sslCertificate", *CHANNEL_BOUNDS}),
    "azureChannelConfiguration": frozenset(CHANNEL_BOUNDS),
}
GONE = frozenset({"DELETED", "DELETE_IN_PROGRESS"})

# -- messages ----------------------------------------------------------------------------------------------
# message type -> (the subscriptionData group it is served in, its messageTypes filter value)
MESSAGE_GROUPS = {
    "system-alert": ("alarmMessageData", "ALARM"),  # doc: AlarmMessageData's type is system-alert
    "custom-alert": ("alertMessageData", "ALERT"),  # doc: AlertMessageData's type is custom-alert
    "environmental": ("environmentMessageData", "ENVIRONMENTAL"),
    "metered-power": ("meteredPowerMessageData", "METERED_POWER"),
    "power": ("powerMessageData", "POWER"),
    "tag-point": ("tagPointMessageData", "TAG_POINT"),
}
GROUP_ORDER = (
    "alarmMessageData",
    "alertMessageData",
    "environmentMessageData",
    "meteredPowerMessageData",
    "powerMessageData",
    "tagPointMessageData",
)
# subscription family -> the message types it yields (ours: the docs do not spell out the mapping)
FAMILY_TYPES = {
    "alarm": ("system-alert",),
    "alert": ("custom-alert",),
    "asset": ("tag-point",),
    "environment": ("environmental",),
    "environmental": ("environmental",),
    "power": ("power", "metered-power"),
    "meteredPower": ("metered-power",),
    "systemAlert": ("system-alert",),
    "customAlert": ("custom-alert",),
}
ALERT_TYPES = frozenset({"system-alert", "custom-alert"})  # doc: heartbeats come "on all subscribed alerts"
OK = "OK"  # seed: the status of a streams subscription that was accepted


def _now_iso(when: datetime | None = None) -> str:
    return (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _object_id() -> str:
    return secrets.token_hex(12)  # ids look like MongoDB ObjectIds (doc examples)


class _Invalid(Exception):
    """A request body that breaks a rule: the field and why."""

    def __init__(self, field: str, reason: str, status: int = 400, constraint: str = "InvalidValue") -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.status = status  # 400: not the documented shape; 422: breaks a rule (ours: the split)
        self.constraint = constraint  # ApiError.additionalInfo.constraintCode (ours: the codes)


@dataclass
class _Client:
    secret: str
    org_id: str
    user_name: str = "sandbox-equinix-user"  # ours: the Equinix user the app belongs to


@dataclass
class _Token:
    client_id: str
    org_id: str
    expires_at: float


@dataclass
class _Feed:
    """The messages of one subscription, append-only, and the emulated clock of its generator."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    clock: datetime | None = None
    """The time of its newest message (None: none yet)."""
    last_heartbeat: datetime | None = None


class Delivery(BaseModel):
    """One batch `EquinixSandbox.emit` pushed (or tried to) to a subscription's webhook or push URL."""

    subscription_id: str
    channel: str  # WEBHOOK (current API) or PUSH (seed API)
    url: str
    messages: int
    attempts: int = 0
    status: int | None = None
    ok: bool = False
    error: str | None = None


class EquinixSandbox(VendorSandbox):
    """In-memory Equinix SmartView with both subscription APIs and a pull feed per subscription.

    Attributes:
        token_ttl: lifetime of an access token, in seconds (doc: ``token_timeout: "3599"``).
        activation_seconds: how long a new streaming subscription stays PENDING before it reads as ACTIVE.
        emit_step: emulated time between two messages of one `emit` (the last is stamped now).
        extra_fields: fields added to every subscription answer (to test tolerance of new fields).
        heartbeat_style: where a heartbeat says so: ``data`` (the definition: ``data.heartbeat: true``) or
            ``message`` (the prose docs: ``heartbeat: "true"`` beside ``data``).
        refusals: ``errors[]`` entries (``{code, message, more_info, data}``) that every create and update
            answers on its 200 while set: a streams subscription keeps them with status ``FAILED``, a
            streaming one reads ``FAILED`` (seed: a 200 carries ``errors`` and a ``status``).
        webhook_certificate: the client certificate Equinix presents to a webhook (doc: mutual TLS; made
            on first use); receivers pin it or its issuer.
        webhook_verify: how a webhook's server certificate is checked when the channel gives no
            ``sslCertificate`` (True: the system's CAs; a path or context: the caller's).
        deliveries: every push `emit` made since the last reset.
    """

    name: ClassVar[str] = "equinix"
    read_only: ClassVar[tuple[str, ...]] = (r"^/oauth2/v1/token$",)

    token_ttl: float = 3599.0
    webhook_verify: ssl.SSLContext | str | bool = True
    delivery_timeout: float = 10.0
    _webhook_certificate: TLSFiles | None = None
    activation_seconds: float = 0.0  # ours
    emit_step: timedelta = timedelta(seconds=30)  # ours: a reading every half minute
    heartbeat_style: Literal["data", "message"] = "data"

    def reset_state(self) -> None:
        self._lock = threading.RLock()
        self.clients: dict[str, _Client] = {DEFAULT_CLIENT_ID: _Client(DEFAULT_CLIENT_SECRET, DEFAULT_ORG)}
        self.tokens: dict[str, _Token] = {}
        self.streams: dict[str, dict[str, Any]] = {}  # seed API, by subscriptionId
        self.streams_token: dict[str, str] = {}  # config.token by subscriptionId, never echoed
        self.streaming: dict[str, dict[str, Any]] = {}  # current API, by id
        self.feeds: dict[str, _Feed] = {}
        self.extra_fields: dict[str, Any] = {}
        self.refusals: list[dict[str, Any]] = []
        self.deliveries: list[Delivery] = []
        self._rng = random.Random(4)

    # -- test and demo helpers -----------------------------------------------------------------------------
    def add_client(self, client_id: str, client_secret: str, org_id: str) -> None:
        """Register API credentials belonging to an organisation."""
        with self._lock:
            self.clients[client_id] = _Client(client_secret, org_id)

    def expire_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    def subscriptions(self, org_id: str | None = None) -> list[dict[str, Any]]:
        """Every live subscription of both APIs (of one organisation, when given)."""
        with self._lock:
            found = [*self.streams.values(), *self.streaming.values()]
        return [s for s in found if org_id is None or s["_org"] == org_id]

    def feed(self, subscription_id: str) -> list[dict[str, Any]]:
        """A copy of a subscription's messages, in offset order."""
        with self._lock:
            return [dict(m) for m in self._feed(subscription_id).messages]

    def emit(self, subscription_id: str, count: int) -> list[dict[str, Any]]:
        """Append `count` realistic messages to a subscription's pull feed and return them.

        The message types follow the subscription's event families. Their times come from the emulator's
        clock: the last message is stamped now (to the second, as the definition's times are), each earlier
        one `emit_step` before it, never before the feed's previous message (a call soon after another
        spreads its messages evenly since then), so no message is in the future and lag is never negative.
        A subscription to alerts gets a heartbeat when a week of
        emulated time has passed since the last one (doc: weekly, "on all subscribed alerts"): an alert
        message whose ``data.heartbeat`` is true (see `heartbeat_style`).

        Raises:
            KeyError: no live subscription has this id.
        """
        with self._lock:
            subscription = self.streams.get(subscription_id) or self.streaming.get(subscription_id)
            if subscription is None:
                raise KeyError(f"no subscription {subscription_id!r}")
            feed = self._feed(subscription_id)
            sources = list(_sources(subscription))
            alerts = [(f, a, i) for f, a, i in sources if set(FAMILY_TYPES[f]) & ALERT_TYPES]
            added = []
            for when in self._times(feed, count):
                feed.clock = when
                if feed.last_heartbeat is None:
                    feed.last_heartbeat = when
                if alerts and when - feed.last_heartbeat >= HEARTBEAT_EVERY:
                    feed.last_heartbeat = when
                    family, account, ibx = self._rng.choice(alerts)
                    message = _message(self._rng, FAMILY_TYPES[family][0], account, ibx, when)
                    if self.heartbeat_style == "data":
                        message["data"]["heartbeat"] = True  # doc (the definition): a boolean in data
                    else:
                        message["heartbeat"] = "true"  # doc (prose): the string beside data
                else:
                    family, account, ibx = self._rng.choice(sources)
                    kind = self._rng.choice(FAMILY_TYPES[family])
                    message = _message(self._rng, kind, account, ibx, when)
                feed.messages.append(message)
                added.append(message)
            messages: list[dict[str, Any]] = json.loads(json.dumps(added))
            target = self._push_target(subscription)
        if target is not None and messages:
            self._push(subscription_id, messages, *target)
        return messages

    # -- pushing (a webhook channel; the seed API's PUSH config) -------------------------------------------
    @property
    def webhook_certificate(self) -> TLSFiles:
        if self._webhook_certificate is None:
            folder = Path(tempfile.mkdtemp(prefix="equinix-webhook-"))
            self._webhook_certificate = self_signed(folder, common_name="equinix-webhook-client")
        return self._webhook_certificate

    @webhook_certificate.setter
    def webhook_certificate(self, files: TLSFiles) -> None:
        self._webhook_certificate = files

    def _push_target(self, subscription: dict[str, Any]) -> tuple[str, str, dict[str, Any]] | None:
        """(channel, url, settings) of a subscription that pushes, else None."""
        channel = subscription.get("channel")
        if isinstance(channel, dict) and channel.get("channelType") == "WEBHOOK":
            webhook = dict(channel.get("webhookChannelConfiguration") or {})
            return "WEBHOOK", str(webhook.get("url", "")), webhook
        push = subscription.get("config")
        if isinstance(push, dict) and push.get("method") == "PUSH" and push.get("url"):
            token = self.streams_token.get(subscription.get("subscriptionId", ""))
            return "PUSH", str(push["url"]), {"token": token}
        return None

    def _push(
        self,
        subscription_id: str,
        messages: list[dict[str, Any]],
        channel: str,
        url: str,
        settings: dict[str, Any],
    ) -> None:
        """POST the messages in batches, retrying a failed batch (doc: the channel's batchSize and
        numberOfRetries; ours: the defaults, a JSON array a batch, sequential calls)."""
        size = int(settings.get("batchSize") or DEFAULT_BATCH) if channel == "WEBHOOK" else DEFAULT_BATCH
        retries = (
            int(settings.get("numberOfRetries") or DEFAULT_RETRIES)
            if channel == "WEBHOOK"
            else DEFAULT_RETRIES
        )
        headers = {"Content-Type": "application/json", SUBSCRIPTION_HEADER: subscription_id}
        if channel == "PUSH" and settings.get("token"):
            headers["Authorization"] = f"Bearer {settings['token']}"  # ours: where the seed's push token goes
        batches = [messages[start : start + size] for start in range(0, len(messages), size)]
        try:
            tls = self._tls(url, channel, settings)
        except (ssl.SSLError, ValueError) as exc:  # e.g. an sslCertificate that is not a certificate
            with self._lock:
                self.deliveries += [
                    Delivery(
                        subscription_id=subscription_id,
                        channel=channel,
                        url=url,
                        messages=len(batch),
                        error=f"TLS settings refused: {exc}",
                    )
                    for batch in batches
                ]
            return
        with httpx.Client(timeout=self.delivery_timeout, **tls) as http:
            for batch in batches:
                delivery = Delivery(
                    subscription_id=subscription_id, channel=channel, url=url, messages=len(batch)
                )
                for _ in range(1 + retries):
                    delivery.attempts += 1
                    try:
                        response = http.post(url, json=batch, headers=headers)
                    except httpx.HTTPError as exc:
                        delivery.status, delivery.error = None, f"{type(exc).__name__}: {exc}"
                        continue
                    delivery.status, delivery.ok = response.status_code, response.is_success
                    delivery.error = None if delivery.ok else f"receiver answered HTTP {response.status_code}"
                    if delivery.ok or response.status_code < 500 and response.status_code != 429:
                        break  # ours: a 4xx other than 429 is not tried again
                with self._lock:
                    self.deliveries.append(delivery)

    def _tls(self, url: str, channel: str, settings: dict[str, Any]) -> dict[str, Any]:
        """httpx TLS settings of a push: a webhook presents Equinix's client certificate (doc: mutual TLS)
        and checks the server against the channel's ``sslCertificate`` when it gives one (doc)."""
        if urlsplit(url).scheme != "https":
            return {}
        pinned = settings.get("sslCertificate") if channel == "WEBHOOK" else None
        if pinned:
            context = ssl.create_default_context(cadata=_certificate_text(str(pinned)))
        elif isinstance(self.webhook_verify, ssl.SSLContext):
            context = self.webhook_verify
        elif isinstance(self.webhook_verify, str):
            context = ssl.create_default_context(cadata=self.webhook_verify)
        else:
            context = ssl.create_default_context()
        if channel == "WEBHOOK":
            certificate = self.webhook_certificate
            context.load_cert_chain(str(certificate.certfile), str(certificate.keyfile))
        return {"verify": context}

    def _feed(self, subscription_id: str) -> _Feed:
        if subscription_id not in self.feeds:
            self.feeds[subscription_id] = _Feed()
        return self.feeds[subscription_id]

    def _times(self, feed: _Feed, count: int) -> list[datetime]:
        """When `count` new messages of `feed` happened: the last now, `emit_step` apart, after the feed's
        newest message (closer together when the clock has not moved that far since)."""
        now = self.clock.now_utc().replace(microsecond=0)
        if count < 1:
            return []
        step = self.emit_step
        if feed.clock is not None and now - step * (count - 1) <= feed.clock:
            step = max(now - feed.clock, timedelta(0)) / count
        return [now - step * (count - 1 - i) for i in range(count)]

    # -- the vendor's error shapes -------------------------------------------------------------------------
    def error_body(self, status: int, code: str, message: str) -> tuple[bytes, str]:
        return _api_error(code, message), "application/json"

    def api_error(
        self,
        status: int,
        code: str,
        message: str,
        details: str | None = None,
        additional: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        body = _api_error(code, message, details, additional)
        return Response(body, status_code=status, media_type="application/json", headers=headers)

    def token_error(self, code: str, title: str, message: str, developer_message: str) -> Response:
        """The token API's error (doc: 400 ``Oauth2TokenErrorResponse``; ours: the codes and texts)."""
        body = {
            "error_domain": "apiportal",
            "error_title": title,
            "error_code": code,
            "developer_message": developer_message,
            "error_message": message,
        }
        return JSONResponse(body, status_code=400)

    def streams_error(self, status: int, code: str, message: str, more_info: str | None = None) -> Response:
        # ours: the seed API's error answer reuses the errors[] entries of its subscription bodies
        body = {"errors": [{"code": code, "message": message, "more_info": more_info or "", "data": {}}]}
        return JSONResponse(body, status_code=status)

    # -- routes --------------------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        return [
            Route(TOKEN_PATH, self._token, methods=["POST"]),
            Route(STREAMS, self._streams_get, methods=["GET"]),
            Route(STREAMS, self._streams_post, methods=["POST"]),
            Route(STREAMS, self._streams_delete, methods=["DELETE"]),
            Route(STREAMS + "/{id}", self._streams_get_one, methods=["GET"]),
            Route(STREAMS + "/{id}", self._streams_put, methods=["PUT"]),
            Route(STREAMS + "/{id}", self._streams_delete, methods=["DELETE"]),
            Route(STREAMING, self._streaming_list, methods=["GET"]),
            Route(STREAMING, self._streaming_post, methods=["POST"]),
            Route(STREAMING + "/{id}", self._streaming_get, methods=["GET"]),
            Route(STREAMING + "/{id}", self._streaming_put, methods=["PUT"]),
            Route(STREAMING + "/{id}", self._streaming_delete, methods=["DELETE"]),
            Route(DATA + "/{id}", self._data, methods=["GET"]),
        ]

    # -- token ---------------------------------------------------------------------------------------------
    async def _token(self, request: Request) -> Response:
        body = await _json(request)
        if not isinstance(body, dict):
            return self.token_error(
                "invalid_request", "Bad Request", "Please enter a valid request body.", "not a JSON object"
            )
        if body.get("grant_type") != "client_credentials":
            return self.token_error(
                "unsupported_grant_type", "Unsupported grant type", "Use client_credentials.", "grant_type"
            )
        client_id, client_secret = body.get("client_id"), body.get("client_secret")
        if not isinstance(client_id, str) or not isinstance(client_secret, str):
            return self.token_error(
                "invalid_request", "Bad Request", "client_id and client_secret are required.", "missing"
            )
        with self._lock:
            client = self.clients.get(client_id)
            if client is None or not secrets.compare_digest(client.secret, client_secret):
                # doc: 400 "Please enter a valid client id/client secret ... and try again."
                return self.token_error(  # ours: the code and texts
                    "invalid_client",
                    "Invalid credentials",
                    "Please enter a valid client id/client secret and try again.",
                    "the client id or the client secret is not valid",
                )
            token = secrets.token_urlsafe(24)
            self.tokens[token] = _Token(client_id, client.org_id, self.now() + self.token_ttl)
        return JSONResponse(
            {
                "access_token": token,
                "token_timeout": str(int(self.token_ttl)),
                "token_type": "Bearer",
                "user_name": client.user_name,  # doc: required in the definition
            }
        )

    def _caller(self, request: Request) -> _Token | Response:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value:
            return self.api_error(401, "EQ-3000021", "Authorization header with a Bearer token is required")
        with self._lock:
            token = self.tokens.get(value.strip())
            if token is not None and token.expires_at <= self.now():
                del self.tokens[value.strip()]
                token = None
        if token is None:
            return self.api_error(401, "EQ-3000022", "Invalid or expired access token")
        return token

    # -- seed API ------------------------------------------------------------------------------------------
    def _org_stream(self, org_id: str) -> dict[str, Any] | None:
        return next((s for s in self.streams.values() if s["_org"] == org_id), None)

    def _streams_view(self, record: dict[str, Any], status: str | None = None) -> dict[str, Any]:
        view = {k: v for k, v in record.items() if not k.startswith("_")}
        if status is not None:
            view["status"] = status
        return {**view, **self.extra_fields}

    async def _streams_get(self, request: Request) -> Response:
        caller = self._caller(request)
        if isinstance(caller, Response):
            return caller
        record = self._org_stream(caller.org_id)
        if record is None:  # ours: the seed does not say what an organisation without one gets
            return self.streams_error(404, "NOT_FOUND", "The organization has no stream subscription")
        return JSONResponse(self._streams_view(record))

    async def _streams_get_one(self, request: Request) -> Response:
        caller = self._caller(request)
        if isinstance(caller, Response):
            return caller
        record = self._stream_of(caller, request.path_params["id"])
        if record is None:
            return self.streams_error(404, "NOT_FOUND", "No such subscription")
        return JSONResponse(self._streams_view(record))

    def _stream_of(self, caller: _Token, subscription_id: str) -> dict[str, Any] | None:
        record = self.streams.get(subscription_id)
        return record if record is not None and record["_org"] == caller.org_id else None

    async def _streams_post(self, request: Request) -> Response:
        caller = self._caller(request)
        if isinstance(caller, Response):
            return caller
        body = await _json(request)
        try:
            families, config, token = _check_streams(body)
        except _Invalid as exc:
            return self.streams_error(400, "INVALID_REQUEST", exc.reason, exc.field)  # ours: 400
        if self._org_stream(caller.org_id) is not None:
            # seed: "a subscription is tied to an Organization"; ours: a second one is refused with 409
            return self.streams_error(
                409, "SUBSCRIPTION_EXISTS", "The organization already has a stream subscription"
            )
        subscription_id = _object_id()
        region = (config.get("region") or "global").lower()
        record: dict[str, Any] = {
            "subscriptionId": subscription_id,
            # ours: the vendor names the subscription; the seed example is a Google Pub/Sub path
            "subscriptionName": f"projects/smartview-sandbox/subscriptions/{caller.org_id}_{region}",
            **families,
            "config": config,
            **self._outcome(),
            "connectionString": None,
            "manageConnectionString": None,
            "_org": caller.org_id,
            "_created": self.now(),
        }
        if config.get("provider") == "AZURE":  # seed: connectionString is used only with AZURE
            key = secrets.token_urlsafe(24)
            hub = f"Endpoint=sb://smartview-sandbox.servicebus.windows.net/;EntityPath={subscription_id}"
            record["connectionString"] = f"{hub};SharedAccessKeyName=listen;SharedAccessKey={key}"
            record["manageConnectionString"] = f"{hub};SharedAccessKeyName=manage;SharedAccessKey={key}m"
        with self._lock:
            self.streams[subscription_id] = record
            if token is not None:
                self.streams_token[subscription_id] = token
        return JSONResponse(self._streams_view(record))  # ours: 200 with the body

    async def _streams_put(self, request: Request) -> Response:
        caller = self._caller(request)
        if isinstance(caller, Response):
            return caller
        record = self._stream_of(caller, request.path_params["id"])
        if record is None:
            return self.streams_error(404, "NOT_FOUND", "No such subscription")
        body = await _json(request)
        try:
            families, config, token = _check_streams(body)
        except _Invalid as exc:
            return self.streams_error(400, "INVALID_REQUEST", exc.reason, exc.field)
        with self._lock:
            record.update(families)
            record["config"] = config
            record.update(self._outcome())
            if token is not None:
                self.streams_token[record["subscriptionId"]] = token
        return JSONResponse(self._streams_view(record))

    async def _streams_delete(self, request: Request) -> Response:
        caller = self._caller(request)
        if isinstance(caller, Response):
            return caller
        subscription_id = request.path_params.get("id")
        if subscription_id is None:  # seed: DELETE without an id closes the organisation's subscription
            record = self._org_stream(caller.org_id)
        else:  # ours: an id is accepted too
            record = self._stream_of(caller, subscription_id)
        if record is None:
            return self.streams_error(404, "NOT_FOUND", "No such subscription")
        with self._lock:
            self.streams.pop(record["subscriptionId"], None)
            self.streams_token.pop(record["subscriptionId"], None)
        return JSONResponse(self._streams_view(record, status="DELETED"))  # ours: the closed one, DELETED

    def _outcome(self) -> dict[str, Any]:
        """``status`` and ``errors`` of a streams create or update: OK, or FAILED with the refusals."""
        refusals = [dict(r) for r in self.refusals]
        return {"status": "FAILED" if refusals else OK, "errors": refusals}  # ours: FAILED

    # -- current API ---------------------------------------------------------------------------------------
    def _streaming_of(self, caller: _Token, subscription_id: str) -> dict[str, Any] | None:
        record = self.streaming.get(subscription_id)
        return record if record is not None and record["_org"] == caller.org_id else None

    def _streaming_view(self, record: dict[str, Any]) -> dict[str, Any]:
        self._activate(record)
        return {**{k: v for k, v in record.items() if not k.startswith("_")}, **self.extra_fields}

    def _channel_clash(self, caller: _Token, channel_type: str, exclude: str | None = None) -> str | None:
        """The channel type already used in the organisation, when it differs from `channel_type`."""
        for record in self.streaming.values():
            if (
                record["_org"] == caller.org_id
                and record["id"] != exclude
                and record["status"] not in GONE
                and record["channel"]["channelType"] != channel_type
            ):
                return str(record["channel"]["channelType"])
        return None

    async def _streaming_list(self, request: Request) -> Response:
        caller = self._caller(request)
        if isinstance(caller, Response):
            return caller
        records = [r for r in self.streaming.values() if r["_org"] == caller.org_id]
        return JSONResponse([self._streaming_view(r) for r in records])

    async def _streaming_get(self, request: Request) -> Response:
        caller = self._caller(request)
        if isinstance(caller, Response):
            return caller
        record = self._streaming_of(caller, request.path_params["id"])
        if record is None:
            return self.api_error(404, "EQ-4040001", "Subscription not found")
        return JSONResponse(self._streaming_view(record))

    def _check_streaming_request(
        self, caller: _Token, body: Any, exclude: str | None = None
    ) -> Response | dict[str, Any]:
        try:
            message_type, channel = _check_streaming(body)
        except _Invalid as exc:
            return self.api_error(
                exc.status,
                "EQ-4220001" if exc.status == 422 else "EQ-4000001",
                "Invalid subscription request",
                f"{exc.field}: {exc.reason}",
                {"constraintCode": exc.constraint, "reason": f"{exc.field}: {exc.reason}"},
            )
        used = self._channel_clash(caller, channel["channelType"], exclude)
        if used is not None:  # doc: only one communication channel type per organization
            return self.api_error(
                422,
                "EQ-4220002",
                "Only one channel type per organization",
                f"the organization already uses channelType {used}",
                {
                    "constraintCode": "OneChannelTypePerOrganization",
                    "reason": f"channel.channelType must be {used}",
                },
            )
        return {"messageType": message_type, "channel": channel}

    async def _streaming_post(self, request: Request) -> Response:
        caller = self._caller(request)
        if isinstance(caller, Response):
            return caller
        checked = self._check_streaming_request(caller, await _json(request))
        if isinstance(checked, Response):
            return checked
        subscription_id = _object_id()
        now = _now_iso(self.clock.now_utc())
        with self._lock:
            self.streaming[subscription_id] = {
                "id": subscription_id,
                # doc: PENDING, ACTIVE, FAILED, DELETE_IN_PROGRESS, DELETED
                "status": "FAILED" if self.refusals else "PENDING",
                **checked,
                "orgId": caller.org_id,
                "createdBy": caller.client_id,
                "createdDateTime": now,
                "updatedBy": caller.client_id,
                "updatedDateTime": now,
                "_org": caller.org_id,
                "_created": self.now(),
            }
        return Response(status_code=201, headers={"Location": f"{STREAMING}/{subscription_id}"})

    async def _streaming_put(self, request: Request) -> Response:
        caller = self._caller(request)
        if isinstance(caller, Response):
            return caller
        record = self._streaming_of(caller, request.path_params["id"])
        if record is None:
            return self.api_error(404, "EQ-4040001", "Subscription not found")
        checked = self._check_streaming_request(caller, await _json(request), exclude=record["id"])
        if isinstance(checked, Response):
            return checked
        with self._lock:
            record.update(checked, updatedBy=caller.client_id, updatedDateTime=_now_iso(self.clock.now_utc()))
            if self.refusals:
                record["status"] = "FAILED"
            elif record["status"] == "FAILED":  # ours: an accepted update revives it
                record.update(status="PENDING", _created=self.now())
        return Response(status_code=204)

    async def _streaming_delete(self, request: Request) -> Response:
        caller = self._caller(request)
        if isinstance(caller, Response):
            return caller
        record = self._streaming_of(caller, request.path_params["id"])
        if record is None:
            return self.api_error(404, "EQ-4040001", "Subscription not found")
        with self._lock:
            self.streaming.pop(record["id"], None)  # ours: gone at once (no DELETE_IN_PROGRESS phase)
        return Response(status_code=204)

    def _activate(self, record: dict[str, Any]) -> None:
        if record.get("status") == "PENDING" and self.now() - record["_created"] >= self.activation_seconds:
            record["status"] = "ACTIVE"

    # -- subscription data ---------------------------------------------------------------------------------
    async def _data(self, request: Request) -> Response:
        caller = self._caller(request)
        if isinstance(caller, Response):
            return caller
        subscription_id = request.path_params["id"]
        # ours: the pull feed of a seed API subscription is served here too
        if (
            self._streaming_of(caller, subscription_id) is None
            and self._stream_of(caller, subscription_id) is None
        ):
            return self.api_error(404, "EQ-4040001", "Subscription not found")
        query = request.query_params
        try:
            offset = _int_param(query.get("offset"), "offset", 0, 0, None)
            limit = _int_param(query.get("limit"), "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
            types = set(_list_param(query.getlist("messageTypes")))
            unknown = types - {t for _, t in MESSAGE_GROUPS.values()}
            if unknown:
                raise _Invalid("messageTypes", f"unknown message types {sorted(unknown)}")
        except _Invalid as exc:
            return self.api_error(
                400,
                "EQ-4000002",
                "Invalid query",
                f"{exc.field}: {exc.reason}",
                {"constraintCode": exc.constraint, "reason": f"{exc.field}: {exc.reason}"},
            )
        ibxs = set(_list_param(query.getlist("ibxs")))
        streams = set(_list_param(query.getlist("streamIds")))
        with self._lock:
            messages = [
                m
                for m in self._feed(subscription_id).messages
                if (not types or MESSAGE_GROUPS[m["type"]][1] in types)
                and (not ibxs or m["data"].get("ibx") in ibxs)
                and (not streams or m["data"].get("streamId") in streams)
            ]
        page = messages[offset : offset + limit]
        body: dict[str, Any] = {group: [] for group in GROUP_ORDER}
        for message in page:
            body[MESSAGE_GROUPS[message["type"]][0]].append(message)

        def link(at: int) -> str:
            # doc: a relative URL, e.g. "?offset=200&limit=100"
            params: list[tuple[str, str | int]] = [("offset", at), ("limit", limit)]
            params += [("ibxs", i) for i in sorted(ibxs)] + [("messageTypes", t) for t in sorted(types)]
            params += [("streamIds", s) for s in sorted(streams)]
            return "?" + urlencode(params)

        total = len(messages)
        pagination: dict[str, Any] = {"limit": limit, "offset": offset, "total": total}
        if offset + limit < total:  # doc: next and previous have a value only when that page exists
            pagination["next"] = link(offset + limit)
        if offset > 0:
            pagination["previous"] = link(max(0, offset - limit))
        body["pagination"] = pagination
        return JSONResponse(body)


# -- request checks ----------------------------------------------------------------------------------------
async def _json(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return _NOT_JSON


_NOT_JSON = object()


def _check_filters(
    body: dict[str, Any],
    families: dict[str, dict[str, frozenset[str] | None]],
    account_field: str,
    ibx_is_list: bool,
) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for family, fields in families.items():
        entries = body.get(family) or []
        if not isinstance(entries, list):
            raise _Invalid(family, "must be an array")
        out[family] = []
        for i, entry in enumerate(entries):
            where = f"{family}[{i}]"
            if not isinstance(entry, dict):
                raise _Invalid(where, "must be an object")
            unknown = set(entry) - {account_field, "ibx", *fields}
            if unknown:
                raise _Invalid(f"{where}.{sorted(unknown)[0]}", "unknown field")  # ours: strict
            account = entry.get(account_field)
            if not isinstance(account, str) or not account:
                raise _Invalid(f"{where}.{account_field}", "is required")
            ibx = entry.get("ibx")
            if ibx_is_list:
                if not isinstance(ibx, list) or not ibx or not all(isinstance(x, str) and x for x in ibx):
                    raise _Invalid(f"{where}.ibx", "must be a non-empty array of IBX codes")
                if len(set(ibx)) != len(ibx):  # doc: uniqueItems
                    raise _Invalid(f"{where}.ibx", "must not repeat an IBX")
            elif not isinstance(ibx, str) or not ibx:
                raise _Invalid(f"{where}.ibx", "is required")
            for name, allowed in fields.items():
                value = entry.get(name)
                if value is None:
                    continue
                if allowed is None:
                    if not isinstance(value, str | list):
                        raise _Invalid(f"{where}.{name}", "must be a string or an array")
                    continue
                values = [value] if isinstance(value, str) else value  # seed: region is a string or array
                if not isinstance(values, list) or any(v not in allowed for v in values):
                    raise _Invalid(f"{where}.{name}", f"values must be among {sorted(allowed)}")
                if ibx_is_list and not values:  # doc: minItems 1 (the current API's filters)
                    raise _Invalid(f"{where}.{name}", "must not be empty when given")
            out[family].append(entry)
    return out


def _check_streams(body: Any) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """Validate a seed API body: (families, config without its token, the token)."""
    if not isinstance(body, dict):
        raise _Invalid("(body)", "must be a JSON object")
    unknown = set(body) - {*STREAMS_FAMILIES, "config"}
    if unknown:
        raise _Invalid(sorted(unknown)[0], "unknown field")  # ours: strict
    families = _check_filters(body, STREAMS_FAMILIES, "accountNo", ibx_is_list=False)
    if not any(families.values()):
        raise _Invalid("(body)", "subscribe to at least one of " + ", ".join(STREAMS_FAMILIES))  # ours
    config = body.get("config") or {}
    if not isinstance(config, dict):
        raise _Invalid("config", "must be an object")
    if set(config) - CONFIG_FIELDS:
        raise _Invalid(f"config.{sorted(set(config) - CONFIG_FIELDS)[0]}", "unknown field")
    for name in CONFIG_FIELDS:
        if config.get(name) is not None and not isinstance(config[name], str):
            raise _Invalid(f"config.{name}", "must be a string")
    if config.get("method") is not None and config["method"] not in METHODS:
        raise _Invalid("config.method", f"must be one of {sorted(METHODS)}")
    if config.get("provider") is not None and config["provider"] not in PROVIDERS:
        raise _Invalid("config.provider", f"must be one of {sorted(PROVIDERS)}")
    if config.get("method") == "PUSH" and not config.get("url"):
        raise _Invalid("config.url", "is required when method is PUSH")  # ours
    token = config.get("token")
    shown = {k: v for k, v in config.items() if k != "token" and v is not None}  # the token is never echoed
    return families, shown, token


def _check_streaming(body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate a current API body: (messageType with every family, channel)."""
    if not isinstance(body, dict):
        raise _Invalid("(body)", "must be a JSON object")
    unknown = set(body) - {"messageType", "channel"}
    if unknown:
        raise _Invalid(sorted(unknown)[0], "unknown field")  # ours: strict
    message_type = body.get("messageType")
    if not isinstance(message_type, dict):
        raise _Invalid("messageType", "is required")
    unknown = set(message_type) - set(STREAMING_FAMILIES)
    if unknown:
        raise _Invalid(f"messageType.{sorted(unknown)[0]}", "unknown message type")
    families = _check_filters(message_type, STREAMING_FAMILIES, "accountNumber", ibx_is_list=True)
    if not any(families.values()):
        raise _Invalid("messageType", "subscribe to at least one message type", 422)  # ours
    channel = body.get("channel")
    if not isinstance(channel, dict):
        raise _Invalid("channel", "is required")
    channel_type = channel.get("channelType")
    if channel_type not in CHANNEL_CONFIGS:
        raise _Invalid("channel.channelType", f"must be one of {sorted(CHANNEL_CONFIGS)}")
    wanted = CHANNEL_CONFIGS[channel_type]
    others = set(channel) - {"channelType", wanted}
    if others:  # doc: only one channel is allowed for a single subscription
        raise _Invalid(
            "channel", f"{sorted(others)[0]} does not go with channelType {channel_type}", 422, "OneChannel"
        )
    config = channel.get(wanted)
    if config is None and channel_type == "AZURE":
        return families, channel  # doc: an Azure channel's configuration is optional
    if not isinstance(config, dict):
        raise _Invalid(f"channel.{wanted}", "is required" if config is None else "must be an object")
    unknown = set(config) - CHANNEL_FIELDS[wanted]
    if unknown:
        raise _Invalid(f"channel.{wanted}.{sorted(unknown)[0]}", "unknown field")  # ours: strict
    if wanted in ("awsIotCoreChannelConfiguration", "webhookChannelConfiguration"):
        url = config.get("url")
        if not isinstance(url, str) or not url:
            raise _Invalid(f"channel.{wanted}.url", "is required", constraint="NotBlank")
    if config.get("sslCertificate") is not None and not isinstance(config["sslCertificate"], str):
        raise _Invalid(f"channel.{wanted}.sslCertificate", "must be a string")
    for name, (low, high) in CHANNEL_BOUNDS.items():
        value = config.get(name)
        if value is None or name not in CHANNEL_FIELDS[wanted]:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Invalid(f"channel.{wanted}.{name}", "must be an integer")
        if not low <= value <= high:  # doc: the definition's minimum and maximum
            raise _Invalid(f"channel.{wanted}.{name}", f"must be between {low} and {high}", 422, "Range")
    return families, channel


def _int_param(raw: str | None, name: str, default: int, low: int, high: int | None) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _Invalid(name, "must be an integer") from None
    if value < low or (high is not None and value > high):
        raise _Invalid(name, f"must be between {low} and {high}" if high else f"must be >= {low}")
    return value


def _list_param(values: Iterable[str]) -> list[str]:
    return [part for value in values for part in value.split(",") if part]


# -- message generation ------------------------------------------------------------------------------------
def _sources(subscription: dict[str, Any]) -> Iterable[tuple[str, str, str]]:
    """(family, account, ibx) of every filter of a subscription, either API."""
    families = subscription.get("messageType") or {k: subscription.get(k) for k in STREAMS_FAMILIES}
    found = False
    for family, entries in families.items():
        for entry in entries or []:
            account = entry.get("accountNo") or entry.get("accountNumber") or ""
            ibxs = entry["ibx"] if isinstance(entry["ibx"], list) else [entry["ibx"]]
            for ibx in ibxs:
                found = True
                yield family, account, ibx
    if not found:
        yield "environment", "", "SV1"


def _reading_time(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S")  # doc: the definition's examples, "2023-10-03 13:09:32" (UTC)


def _value(rng: random.Random, unit: str, low: float, high: float, digits: int = 3) -> dict[str, str]:
    return {"unit": unit, "value": f"{rng.uniform(low, high):.{digits}f}"}  # doc: values are strings


_ENVIRONMENT_TAGS = (
    ("temperature", "Temperature", "CELSIUS", 18.0, 27.0),
    ("humidity", "Humidity", "PERCENT", 20.0, 60.0),
)
_TAG_POINTS = (
    ("outputvoltageca", "Output Voltage CA", "V", 200.0, 240.0),
    ("current", "Current", "A", 0.5, 16.0),
)
_QUALITY = ("Good", "Good", "Good", "Uncertain")  # doc: Good | Bad | Uncertain


def _message(rng: random.Random, kind: str, account: str, ibx: str, when: datetime) -> dict[str, Any]:
    """One message of `kind` as the published definition describes its data (the values are ours)."""
    serial = rng.randint(1, 40)
    at = _reading_time(when)
    cage = f"{ibx}:01:{rng.randint(1000, 9999):06d}"
    data: dict[str, Any]
    if kind == "environmental":
        tag, name, unit, low, high = rng.choice(_ENVIRONMENT_TAGS)
        level = rng.choice(("IBX", "ZONE", "CAGE"))
        asset = ibx if level == "IBX" else f"{ibx}.{level}-{serial:02d}"
        data = {
            "asset": {"id": asset, "level": level},
            "dataQuality": rng.choice(_QUALITY),
            "ibx": ibx,
            "reading": _value(rng, unit, low, high),
            "readingTime": at,
            "streamId": f"{asset}:{tag}",
            "tag": {"displayName": name, "id": tag},
        }
    elif kind == "power":
        circuit = f"{ibx}:{140000 + serial}"
        draw = rng.uniform(0.5, 7.5)
        data = {
            "accountNumber": account,
            "asset": {"id": circuit, "type": "CIRCUIT"},
            "cabinet": f"{cage}:{serial:04d}",
            "cage": cage,
            "circuitType": "PRIMARY",
            "ibx": ibx,
            "readingTime": at,
            "streamId": circuit,
            "realPower": {"unit": "kW", "value": f"{draw * 0.95:.3f}"},
            "apparentPower": {"unit": "kVA", "value": f"{draw:.3f}"},
            "current": {"unit": "A", "value": f"{draw * 1000 / 230:.3f}"},
            "powerFactor": {"unit": "pf", "value": "0.950"},
            "contractualPower": {"unit": "kVA", "value": "8.000"},
            "powerConsumptionToContractual": {"unit": "PERCENT", "value": f"{draw / 8 * 100:.3f}"},
        }
    elif kind == "metered-power":
        meter = f"{ibx}.CBM-B1-{serial}"
        data = {
            "accountNumber": account,
            "asset": {"id": meter, "type": "Customer Billing Meter"},
            "cage": cage,
            "dataQuality": rng.choice(_QUALITY),
            "ibx": ibx,
            "reading": _value(rng, "kWh", 100.0, 90_000.0),
            "readingTime": at,
            "streamId": f"{meter}:kilowattHour",
            "tag": {"displayName": "kilowattHour", "id": f"{meter}:kilowattHour"},
        }
    elif kind == "tag-point":
        tag, name, unit, low, high = rng.choice(_TAG_POINTS)
        asset = f"{ibx}.ATS-M1-{serial:02d}"
        data = {
            "dataQuality": rng.choice(_QUALITY),
            "ibx": ibx,
            "reading": _value(rng, unit, low, high),
            "readingTime": at,
            "streamId": f"{asset}:{tag}",
            "tag": {"displayName": name, "id": f"{asset}:{tag}"},
        }
    elif kind == "system-alert":  # doc: the alarm message data
        asset = f"{ibx}.CRAH-EQ1-{serial:02d}"
        definition = f"{asset}:dirtyfilter#ABSOLUTE:HIGH"
        data = {
            "asset": {"classification": "Mechanical", "id": asset, "type": "CRAH"},
            "conditionName": "High",
            "currentValue": {"type": "Float", **_value(rng, "%", 20.0, 60.0)},
            "dataQuality": rng.choice(_QUALITY),
            "definitionId": definition,
            "ibx": ibx,
            "processedTime": at.replace(" ", "T"),
            "severity": rng.choice((300, 600, 900)),  # doc: an integer
            "status": {"acknowledged": False, "active": True, "cleared": False},
            "streamId": definition,
            "tag": {"displayName": "Dirty filter", "id": f"{asset}:dirtyfilter"},
            "threshold": {"message": "NA", "stateLimit": "20", "unit": "%"},
            "triggeredTime": at.replace(" ", "T"),
            "type": "Absolute",
        }
    else:  # custom-alert, doc: the alert message data
        alert = f"{ibx}.{account or '000000'}-{rng.getrandbits(40)}"
        data = {
            "asset": {"classification": "Electrical", "id": f"{ibx}:{140000 + serial}", "type": "CIRCUIT"},
            "eventType": "Exceeds",
            "ibx": ibx,
            "id": alert,
            "streamId": alert,
            "tag": {"id": f"{ibx}.CIRCUIT-{serial:02d}:current"},
            "threshold": {"unit": "Amp", "value": "10"},
            "triggeredTime": at.replace(" ", "T"),
            "type": "power",
            "typeId": "drawAmpExceeds",
        }
    return {"type": kind, "data": data}


def _certificate_text(value: str) -> str:
    """A channel's ``sslCertificate``: base64 of a PEM (doc: "ZkFzZLY1IGRpY31kZXI="), or the PEM itself."""
    if "-----BEGIN" in value:
        return value
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return value


def _api_error(
    code: str, message: str, details: str | None = None, additional: dict[str, str] | None = None
) -> bytes:
    body: dict[str, Any] = {
        "errorCode": code,
        "errorMessage": message,
        "correlationId": str(uuid.uuid4()),
        "details": details or message,
    }
    if additional:
        body["additionalInfo"] = additional  # doc: an object {constraintCode, reason}
    return json.dumps(body).encode()


__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_ORG",
    "SUBSCRIPTION_HEADER",
    "Delivery",
    "EquinixSandbox",
]
