"""Emulator of the Stream Partner API 1.0 (tokens, SSO, OAuth onboarding, locations, menus, feature flags).

State is in memory. Every rule of the seed (``shared/seeds/002_27f678e46bd5775f.txt``) and
``shared/VENDORS.md`` section 3 is enforced; behaviour neither documents is marked ``# ours`` and listed
in ``docs/vendors/stream.md``. Status codes (ours where Stream publishes none): 400 malformed request
(schema, missing field, bad enum, ``limit`` out of 1..50, ``exp`` more than an hour ahead), 401 bad or
expired access token / client credentials, 403 scope missing or another partner's id, 404 unknown thing,
409 state conflicts (duplicate org, integration not active, SSO token redeemed), 422 well-formed but
unusable references (unknown source, location, menu, OAuth code).

Python handles for tests and the demo: `add_client`, `authorize`, `expire_tokens`,
`revoke_refresh_tokens`, `advance_clock`, `add_source`, `add_flag`, `add_segment`, `add_menus`,
`send_webhook`, and the `auto_authorize` setting. Admin routes (``/_sandbox/stream/...``) expose the same.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import json
import secrets
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from streamkeeper.sandbox.base import VendorSandbox, outbound_tls
from streamkeeper.validation import describe

SCOPES = ("user", "onboarding", "legacy_onboarding", "sso", "billing")
ACCESS_TOKEN_TTL = 3600  # doc: expires_in 3600
REFRESH_TOKEN_TTL = 7200  # doc: refresh_token_expires_in 7200
MAX_EXP_AHEAD = 3600  # seed: exp at most one hour after the issued time
EXP_SKEW = 5  # ours: tolerated clock skew on `exp`
CODE_TTL = 600  # ours: an OAuth code is good for 10 minutes, once
SSO_TTL = 300  # ours: an SSO login token is good for 5 minutes, once
SEARCH_LIMIT_DEFAULT = 20  # ours (the seed's example)

DEFAULT_CLIENT_ID = "sandbox-client"
DEFAULT_CLIENT_SECRET = "sandbox-secret"
DEFAULT_PARTNER_ID = "sandbox-partner"
DEFAULT_MENUS = ("menu-breakfast", "menu-lunch", "menu-dinner")  # ours: every org's catalog

# ours: which scope each group of operations needs.
SCOPE_ONBOARDING = "onboarding"  # orgs, partner tokens, integrations, locations, menus
SCOPE_SSO = "sso"  # white-label sessions
SCOPE_FLAGS = "user"  # feature-flag contexts

SIGNATURE_HEADER = "X-Stream-Signature"  # doc; value = bare hex HMAC-SHA256 of the body (format ours)


def _address(line1: str, locality: str, postal: str, region: str, lat: float, lon: float) -> dict[str, Any]:
    return {
        "formatted_address": f"{line1}, {locality}, {region} {postal}, US",
        "address_line_1": line1,
        "address_line_2": None,
        "address_line_3": None,
        "postal_code": postal,
        "locality": locality,
        "administrative_district_level_1": region,
        "country": "US",
        "latitude": lat,
        "longitude": lon,
    }


def _seed_sources() -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """source -> (type, the locations a merchant's account there holds). Ours: invented sandbox data."""
    downtown = _address("100 Main St", "Springfield", "62701", "IL", 39.7990, -89.6440)
    harbor = _address("7 Harbor Way", "Springfield", "62702", "IL", 39.8010, -89.6500)
    airport = _address("1 Airport Rd", "Springfield", "62707", "IL", 39.8440, -89.6780)

    def locs(prefix: str, suffix: str = "") -> list[dict[str, Any]]:
        return [
            {"provider_id": f"{prefix}-001", "name": f"Downtown{suffix}", "address": downtown},
            {"provider_id": f"{prefix}-002", "name": f"Harbor{suffix}", "address": harbor},
            {"provider_id": f"{prefix}-003", "name": f"Airport{suffix}", "address": airport},
        ]

    return {
        "square": ("pos", locs("sq-loc")),
        "toast": ("pos", locs("toast-loc")[:2]),
        "clover": ("pos", locs("clover-loc")[:1]),
        "doordash": ("dsp", locs("dd-store", " (DoorDash)")),
        "ubereats": ("dsp", locs("ue-store", " (Uber Eats)")),
        "grubhub": ("dsp", locs("gh-store", " (Grubhub)")[:2]),
    }


def _new_id() -> str:
    return secrets.token_hex(12)  # ours: Mongo-ObjectId-like 24 hex digits, as the seed's `_id` suggests


# -- state -------------------------------------------------------------------------------------------------
@dataclass
class _Client:
    client_id: str
    client_secret: str
    partner_id: str
    scopes: frozenset[str]


@dataclass
class _AccessToken:
    client_id: str
    partner_id: str
    scopes: frozenset[str]
    expires_at: float


@dataclass
class _RefreshToken:
    client_id: str
    partner_id: str
    scopes: frozenset[str]
    expires_at: float
    used: bool = False


@dataclass
class _DSP:
    id: str
    name: str
    source: str
    provider_id: str
    change_time: float
    status: str = "APPROVED"
    menu_provider_ids: list[str] = field(default_factory=list)

    def out(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "name": self.name,
            "source": self.source,
            "status": self.status,
            "change_time": self.change_time,
            "provider_id": self.provider_id,  # ours
            "menu_provider_ids": list(self.menu_provider_ids),  # ours: empty = publish all menus
        }


@dataclass
class _OrgLocation:
    id: str
    provider_id: str
    name: str
    source: str
    address: dict[str, Any]
    status: str = "active"
    dsps: list[_DSP] = field(default_factory=list)

    def out(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "name": self.name,
            "source": self.source,
            "status": self.status,
            "address": self.address,
            "provider_id": self.provider_id,  # ours
            "dsps": [d.out() for d in self.dsps],
        }


@dataclass
class _Org:
    id: str
    partner_id: str
    name: str
    provider_id: str
    user_id: str
    user: dict[str, str]
    created_at: float
    menus: set[str] = field(default_factory=lambda: set(DEFAULT_MENUS))
    locations: list[_OrgLocation] = field(default_factory=list)

    def out(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "name": self.name,
            "provider_id": self.provider_id,
            "user_id": self.user_id,
            "created_at": self.created_at,
        }


@dataclass
class _Integration:
    id: str
    partner_id: str
    org_id: str
    partner_org_id: str
    source: str
    type: str
    return_url: str
    entry_url: str
    created_at: float
    status: str = "pending"
    merchant_id: str | None = None
    integration_id: str | None = None
    activated_code: str | None = None
    auto_authorized: bool = False
    updated_at: float = 0.0

    def out(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "org_id": self.org_id,
            "merchant_id": self.merchant_id,
            "type": self.type,
            "status": self.status,
            "partner_id": self.partner_id,
            "partner_org_id": self.partner_org_id,
            "source": self.source,
            "entry_url": self.entry_url,
            "return_url": self.return_url,
            "integration_id": self.integration_id,
            "created_at": self.created_at,  # ours: an extra field, as real answers carry
            "updated_at": self.updated_at,  # ours
        }


@dataclass
class _Code:
    integration_id: str
    expires_at: float
    used: bool = False


@dataclass
class _SSO:
    partner_id: str
    email: str
    full_name: str
    role: str
    org_id: str | None
    expires_at: float
    redeemed: bool = False


@dataclass
class _Flag:
    key: str
    on: bool = True
    segments: list[str] = field(default_factory=list)
    contexts: set[tuple[str, str, str]] = field(default_factory=set)  # (partner_id, kind, key)


@dataclass
class _Segment:
    key: str
    contexts: set[tuple[str, str, str]] = field(default_factory=set)


# -- request bodies (the emulator's own view of the documented shapes; unknown fields are refused) --------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


NonEmpty = Field(min_length=1)


class _TokenBody(_Body):
    grant_type: Literal["client_credentials", "refresh_token"]
    client_id: str = NonEmpty
    client_secret: SecretStr
    exp: float | None = None
    scopes: list[Literal["user", "onboarding", "legacy_onboarding", "sso", "billing"]] | None = None
    refresh_token: SecretStr | None = None


class _PartnerTokenBody(_Body):
    org_id: str = NonEmpty
    token_name: str = NonEmpty
    scopes: list[Literal["user", "onboarding", "legacy_onboarding", "sso", "billing"]] = Field(min_length=1)


class _SSOBody(_Body):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    full_name: str = NonEmpty
    phone_number: str = NonEmpty
    role: Literal["owner", "admin", "manager", "team_member", "custom"] = "owner"  # ours: the default
    provider_org_id: str | None = None
    provider_org_name: str | None = None


class _RedeemBody(_Body):
    sso_login_token: str = NonEmpty


class _InitBody(_Body):
    org_id: str = NonEmpty
    source: str = NonEmpty
    type: Literal["pos", "dsp"]
    return_url: str = NonEmpty


class _CompleteBody(_Body):
    code: str = NonEmpty


class _IngestItem(_Body):
    provider_id: str = NonEmpty


class _IngestBody(_Body):
    onboarding_id: str = NonEmpty
    locations: list[_IngestItem] = Field(min_length=1)


class _BindItem(_Body):
    pos_location_id: str = NonEmpty
    dsp_provider_id: str = NonEmpty
    dsp_store_name: str = NonEmpty


class _BindBody(_Body):
    onboarding_id: str = NonEmpty
    locations: list[_BindItem] = Field(min_length=1)


class _MenusBody(_Body):
    org_id: str = NonEmpty
    dsp_location_id: str = NonEmpty
    menu_provider_ids: list[str]


class _OrgUserBody(_Body):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    first_name: str = NonEmpty
    last_name: str = NonEmpty


class _OrgBody(_Body):
    name: str = NonEmpty
    provider_id: str = NonEmpty
    user: _OrgUserBody


class _ContextItem(_Body):
    key: str = NonEmpty
    kind: str = NonEmpty


class _ContextsBody(_Body):
    contexts: list[_ContextItem] = Field(min_length=1)


class _EvaluateBody(_Body):
    key: str = NonEmpty
    kind: str = "user"  # seed: default "user"


B = TypeVar("B", bound=_Body)


class _Reject(Exception):
    """Raised inside a handler to answer with an error in Stream's shape."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


Handler = Callable[[Request], Awaitable[Response]]


class StreamSandbox(VendorSandbox):
    """The Stream Partner API emulator.

    Args:
        auto_authorize: when True the merchant approves every OAuth integration at once: an integration
            is ``active`` from its creation (the init answer already says so) and completing it is a
            no-op answering 200. For the unattended demo. Default False: the merchant must approve
            (`authorize` or the ``entry_url`` page) and the partner must complete with the code.
    """

    name = "stream"
    # POSTs that only read: the token endpoint and the flag evaluation. Everything else writes.
    read_only = (r"^/oauth/token$", r"^/feature-flags/[^/]+/evaluate$")

    def __init__(self, auto_authorize: bool = False) -> None:
        self._lock = threading.RLock()
        self.auto_authorize = auto_authorize
        super().__init__()

    # -- state -----------------------------------------------------------------------------------------
    def reset_state(self) -> None:
        with self._lock:
            self.clients: dict[str, _Client] = {}
            self.access_tokens: dict[str, _AccessToken] = {}
            self.refresh_tokens: dict[str, _RefreshToken] = {}
            self.token_requests: Counter[str] = Counter()  # by grant_type, and "total"
            self.orgs: dict[str, _Org] = {}
            self.partner_tokens: dict[str, dict[str, Any]] = {}
            self.integrations: dict[str, _Integration] = {}
            self.codes: dict[str, _Code] = {}
            self.sso_tokens: dict[str, _SSO] = {}
            self.sources = _seed_sources()
            self.flags: dict[str, _Flag] = {}
            self.segments: dict[str, _Segment] = {}
            self.webhooks_sent: list[dict[str, Any]] = []
            self.add_client(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_PARTNER_ID)
            self.add_segment("beta-merchants")
            self.add_segment("internal")
            self.add_flag("new-menu-sync", on=True, segments=["beta-merchants"])
            self.add_flag("sso-login", on=True)
            self.add_flag("dsp-auto-bind", on=False)

    def advance_clock(self, seconds: float) -> None:
        """`advance`: move the clock forward (expires tokens, OAuth codes and SSO tokens without sleeping)."""
        self.advance(seconds)

    def add_client(
        self,
        client_id: str,
        client_secret: str,
        partner_id: str | None = None,
        scopes: Iterable[str] = SCOPES,
    ) -> None:
        """Register API credentials; `partner_id` defaults to the client id, `scopes` to all."""
        with self._lock:
            self.clients[client_id] = _Client(
                client_id, client_secret, partner_id or client_id, frozenset(scopes)
            )

    def expire_tokens(self) -> None:
        """Revoke every access token issued so far (fault ``token_expiry``).

        Refresh tokens live longer (7200 s against 3600 s) and stay valid (ours); `revoke_refresh_tokens`
        revokes those too.
        """
        with self._lock:
            self.access_tokens.clear()

    def revoke_refresh_tokens(self) -> None:
        """Revoke every refresh token issued so far."""
        with self._lock:
            self.refresh_tokens.clear()

    def authorize(self, integration_id: str) -> str:
        """The merchant approves an integration: returns the OAuth code they would bring back.

        The code is single-use and expires after `CODE_TTL` seconds. Raises KeyError for an unknown
        integration and ValueError for one that is not pending.
        """
        with self._lock:
            integration = self.integrations[integration_id]
            if integration.status != "pending":
                raise ValueError(f"integration {integration_id} is {integration.status}, not pending")
            code = secrets.token_urlsafe(16)
            self.codes[code] = _Code(integration_id, self.now() + CODE_TTL)
            if integration.merchant_id is None:
                integration.merchant_id = f"mer_{secrets.token_hex(6)}"
            return code

    def add_source(
        self, source: str, type: Literal["pos", "dsp"], locations: Sequence[Mapping[str, Any]]
    ) -> None:
        """Add (or replace) a POS or DSP source and the locations a merchant's account there holds."""
        with self._lock:
            self.sources[source] = (type, [dict(loc) for loc in locations])

    def add_flag(self, key: str, on: bool = True, segments: Sequence[str] = ()) -> None:
        """Add (or replace) a boolean feature flag; `segments` are the segments it targets."""
        with self._lock:
            self.flags[key] = _Flag(key, on=on, segments=list(segments))

    def add_segment(self, key: str) -> None:
        """Add an empty segment."""
        with self._lock:
            self.segments.setdefault(key, _Segment(key))

    def add_menus(self, org_id: str, menu_provider_ids: Iterable[str]) -> None:
        """Add menus to an organisation's catalog (every org starts with `DEFAULT_MENUS`)."""
        with self._lock:
            self.orgs[org_id].menus.update(menu_provider_ids)

    def send_webhook(
        self, url: str, secret: str | SecretStr, event: Mapping[str, Any], timeout: float = 10.0
    ) -> int:
        """POST an event to a partner's webhook URL, signed as Stream signs; returns the HTTP status.

        The body is compact JSON; ``X-Stream-Signature`` is the hex HMAC-SHA256 of exactly those bytes,
        keyed by `secret` (header name: doc; hex format: ours).
        """
        key = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        body = json.dumps(dict(event), separators=(",", ":"), sort_keys=True).encode()
        signature = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
        response = httpx.post(
            url,
            content=body,
            headers={"Content-Type": "application/json", SIGNATURE_HEADER: signature},
            timeout=timeout,
            verify=outbound_tls(),
        )
        with self._lock:
            self.webhooks_sent.append({"url": url, "event": dict(event), "status": response.status_code})
        return response.status_code

    def webhook_event(self, event_type: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """An event envelope (ours: ``{id, type, created_at, data}``; Stream's is not published)."""
        return {
            "id": f"evt_{secrets.token_hex(8)}",
            "type": event_type,
            "created_at": self.now(),
            "data": dict(data),
        }

    # -- routes ----------------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        def r(path: str, handler: Handler, method: str) -> Route:
            return Route(path, self._guard(handler), methods=[method])

        return [
            r("/oauth/token", self._token, "POST"),
            r("/partner/tokens", self._create_partner_token, "POST"),  # ours
            r("/partner/tokens", self._list_partner_tokens, "GET"),  # ours
            r("/white-label/generate-session", self._generate_session, "POST"),
            r("/white-label/redeem-session", self._redeem_session, "POST"),  # ours
            r("/white-label/login", self._login_page, "GET"),  # ours
            r("/onboarding/org", self._create_org, "POST"),
            r("/onboarding/org", self._list_orgs, "GET"),  # ours
            r("/onboarding/org/{id}/locations", self._org_locations, "GET"),
            r("/onboarding/integrations", self._init_integration, "POST"),
            r("/onboarding/integrations", self._list_integrations, "GET"),  # ours
            r("/onboarding/integrations/{id}", self._get_integration, "GET"),
            r("/onboarding/integrations/{id}", self._complete_integration, "PUT"),
            r("/onboarding/locations", self._onboarding_locations, "GET"),
            r("/onboarding/locations", self._ingest_locations, "POST"),  # ours
            r("/onboarding/locations/bind", self._bind_locations, "POST"),  # ours
            r("/onboarding/menus", self._assign_menus, "PUT"),  # ours
            r("/feature-flags/{key}/targeting/contexts", self._flag_contexts, "POST"),  # ours
            r("/feature-flags/{key}/targeting/contexts", self._flag_contexts, "DELETE"),  # ours
            r("/feature-flags/{key}/evaluate", self._evaluate, "POST"),  # ours
            r("/segments/{key}/contexts", self._segment_contexts, "POST"),  # ours
            r("/segments/{key}/contexts", self._segment_contexts, "DELETE"),  # ours
            r("/contexts", self._search_contexts, "GET"),  # ours
            # admin (never Stream's API): the merchant's consent page, codes, clients, settings, webhooks
            r("/_sandbox/stream/oauth/{id}", self._consent_page, "GET"),
            r("/_sandbox/stream/oauth/{id}/approve", self._consent_approve, "GET"),
            r("/_sandbox/stream/integrations/{id}/authorize", self._admin_authorize, "POST"),
            r("/_sandbox/stream/clients", self._admin_add_client, "POST"),
            r("/_sandbox/stream/settings", self._admin_settings, "POST"),
            r("/_sandbox/stream/webhooks", self._admin_webhook, "POST"),
        ]

    def _guard(self, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except _Reject as reject:
                return self.error(reject.status, reject.code, reject.message, reject.headers)

        return endpoint

    # -- helpers ---------------------------------------------------------------------------------------
    async def _body(self, request: Request, model: type[B]) -> B:
        try:
            data = json.loads(await request.body() or b"null")
        except ValueError:
            raise _Reject(400, "invalid_json", "the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise _Reject(400, "validation_error", "the body must be a JSON object")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise _Reject(400, "validation_error", describe(exc)) from None

    def _auth(self, request: Request, scope: str) -> _AccessToken:
        header = request.headers.get("authorization", "")
        kind, _, value = header.partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="stream"'}
        if kind.lower() != "bearer" or not value:
            raise _Reject(401, "invalid_token", "a bearer access token is required", challenge)
        token = self.access_tokens.get(value.strip())
        if token is None:
            raise _Reject(401, "invalid_token", "the access token is unknown or revoked", challenge)
        if token.expires_at <= self.now():
            raise _Reject(401, "token_expired", "the access token has expired", challenge)
        if scope not in token.scopes:
            raise _Reject(403, "insufficient_scope", f"this operation needs the {scope!r} scope")
        return token

    def _partner(self, request: Request, token: _AccessToken, required: bool) -> None:
        partner_id = request.query_params.get("partner_id")
        if partner_id is None:
            if required:
                raise _Reject(400, "validation_error", "partner_id: query parameter required")
            return
        if partner_id != token.partner_id:
            raise _Reject(403, "partner_mismatch", "partner_id does not match the token's partner")

    def _org(self, org_id: str, token: _AccessToken) -> _Org:
        org = self.orgs.get(org_id)
        if org is None or org.partner_id != token.partner_id:  # another partner's org is not revealed
            raise _Reject(404, "org_not_found", f"no organization {org_id}")
        return org

    def _integration(self, integration_id: str, token: _AccessToken) -> _Integration:
        integration = self.integrations.get(integration_id)
        if integration is None or integration.partner_id != token.partner_id:
            raise _Reject(404, "onboarding_not_found", f"no onboarding integration {integration_id}")
        return integration

    def _active(self, integration: _Integration, type: str) -> None:
        if integration.type != type:
            raise _Reject(
                422,
                "wrong_integration_type",
                f"onboarding {integration.id} is a {integration.type} integration, not {type}",
            )
        if integration.status != "active":
            raise _Reject(
                409,
                "integration_not_active",
                f"onboarding {integration.id} is {integration.status}; complete the OAuth first",
            )

    def _source_locations(self, integration: _Integration) -> list[dict[str, Any]]:
        return self.sources.get(integration.source, (integration.type, []))[1]

    # -- tokens ----------------------------------------------------------------------------------------
    async def _token(self, request: Request) -> Response:
        with self._lock:
            self.token_requests["total"] += 1
        body = await self._body(request, _TokenBody)
        with self._lock:
            self.token_requests[body.grant_type] += 1
            now = self.now()
            client = self.clients.get(body.client_id)
            if client is None or not hmac.compare_digest(
                client.client_secret, body.client_secret.get_secret_value()
            ):
                raise _Reject(401, "invalid_client", "unknown client_id or wrong client_secret")
            lifetime = float(ACCESS_TOKEN_TTL)
            if body.exp is not None:
                if body.exp <= now:
                    raise _Reject(400, "invalid_request", "exp must be in the future")
                if body.exp > now + MAX_EXP_AHEAD + EXP_SKEW:
                    raise _Reject(
                        400, "invalid_request", "exp must be at most one hour after the issued time"
                    )
                lifetime = body.exp - now
            requested = frozenset(body.scopes) if body.scopes is not None else None
            if body.grant_type == "refresh_token":
                if body.refresh_token is None:
                    raise _Reject(
                        400, "invalid_request", "refresh_token is required for grant_type refresh_token"
                    )
                old = self.refresh_tokens.get(body.refresh_token.get_secret_value())
                if old is None or old.client_id != client.client_id:
                    raise _Reject(400, "invalid_grant", "unknown refresh token")
                if old.used:
                    raise _Reject(400, "invalid_grant", "the refresh token was already used")
                if old.expires_at <= now:
                    raise _Reject(400, "invalid_grant", "the refresh token has expired")
                granted = old.scopes
                old.used = True  # single use: a refresh rotates the refresh token
            else:
                granted = client.scopes
            if requested is not None:
                if not requested <= granted:
                    missing = ", ".join(sorted(requested - granted))
                    raise _Reject(400, "invalid_scope", f"scopes not granted to this client: {missing}")
                granted = requested
            access = secrets.token_urlsafe(32)
            refresh = secrets.token_urlsafe(32)
            self.access_tokens[access] = _AccessToken(
                client.client_id, client.partner_id, granted, now + lifetime
            )
            self.refresh_tokens[refresh] = _RefreshToken(
                client.client_id, client.partner_id, granted, now + REFRESH_TOKEN_TTL
            )
        return JSONResponse(
            {
                "access_token": access,
                "token_type": "bearer",
                "refresh_token": refresh,
                "expires_in": int(lifetime),
                "refresh_token_expires_in": REFRESH_TOKEN_TTL,
                "scopes": sorted(granted),
            },
            status_code=201,
        )

    async def _create_partner_token(self, request: Request) -> Response:
        token = self._auth(request, SCOPE_ONBOARDING)
        body = await self._body(request, _PartnerTokenBody)
        with self._lock:
            org = self._org(body.org_id, token)
            if any(
                t["org_id"] == org.id and t["token_name"] == body.token_name
                for t in self.partner_tokens.values()
            ):
                raise _Reject(
                    409,
                    "partner_token_exists",
                    f"organization {org.id} has a token named {body.token_name!r}",
                )
            record: dict[str, Any] = {
                "_id": _new_id(),
                "org_id": org.id,
                "token_name": body.token_name,
                "scopes": list(body.scopes),
                "created_at": self.now(),
            }
            self.partner_tokens[record["_id"]] = record
        return JSONResponse({**record, "token": secrets.token_urlsafe(32)}, status_code=201)

    async def _list_partner_tokens(self, request: Request) -> Response:
        # ours: the seed has no read of partner tokens; this one lists them without their values
        token = self._auth(request, SCOPE_ONBOARDING)
        org_id = request.query_params.get("org_id")
        with self._lock:
            if org_id is not None:
                self._org(org_id, token)
            found = [
                dict(t)
                for t in self.partner_tokens.values()
                if self.orgs[t["org_id"]].partner_id == token.partner_id
                and (org_id is None or t["org_id"] == org_id)
            ]
        return JSONResponse({"tokens": found})

    # -- SSO -------------------------------------------------------------------------------------------
    async def _generate_session(self, request: Request) -> Response:
        token = self._auth(request, SCOPE_SSO)
        self._partner(request, token, required=False)
        body = await self._body(request, _SSOBody)
        with self._lock:
            org_id = None
            if body.provider_org_id is not None:
                org = next(
                    (
                        o
                        for o in self.orgs.values()
                        if o.partner_id == token.partner_id and o.provider_id == body.provider_org_id
                    ),
                    None,
                )
                if org is None:
                    raise _Reject(
                        404, "org_not_found", f"no organization with provider id {body.provider_org_id}"
                    )
                org_id = org.id
            login = secrets.token_urlsafe(24)
            self.sso_tokens[login] = _SSO(
                token.partner_id, body.email, body.full_name, body.role, org_id, self.now() + SSO_TTL
            )
        return JSONResponse({"sso_login_token": login}, status_code=201)

    def _redeem(self, login: str) -> dict[str, Any]:
        with self._lock:
            session = self.sso_tokens.get(login)
            if session is None:
                raise _Reject(404, "sso_token_not_found", "unknown SSO login token")
            if session.redeemed:
                raise _Reject(409, "sso_token_redeemed", "this SSO login token was already used")
            if session.expires_at <= self.now():
                raise _Reject(409, "sso_token_expired", "this SSO login token has expired")
            session.redeemed = True
            return {
                "email": session.email,
                "full_name": session.full_name,
                "role": session.role,
                "org_id": session.org_id,
            }

    async def _redeem_session(self, request: Request) -> Response:
        body = await self._body(request, _RedeemBody)
        return JSONResponse(self._redeem(body.sso_login_token))

    async def _login_page(self, request: Request) -> Response:
        login = request.query_params.get("sso_login_token")
        if not login:
            raise _Reject(400, "validation_error", "sso_login_token: query parameter required")
        user = self._redeem(login)
        return HTMLResponse(f"<h1>Stream (sandbox)</h1><p>Signed in as {html.escape(user['email'])}.</p>")

    # -- organisations ---------------------------------------------------------------------------------
    async def _create_org(self, request: Request) -> Response:
        token = self._auth(request, SCOPE_ONBOARDING)
        body = await self._body(request, _OrgBody)
        with self._lock:
            if any(
                o.partner_id == token.partner_id and o.provider_id == body.provider_id
                for o in self.orgs.values()
            ):
                raise _Reject(
                    409, "org_exists", f"an organization with provider_id {body.provider_id!r} exists"
                )
            org = _Org(
                id=_new_id(),
                partner_id=token.partner_id,
                name=body.name,
                provider_id=body.provider_id,
                user_id=_new_id(),
                user=body.user.model_dump(),
                created_at=self.now(),
            )
            self.orgs[org.id] = org
        return JSONResponse({"org_id": org.id, "user_id": org.user_id}, status_code=201)

    async def _list_orgs(self, request: Request) -> Response:
        token = self._auth(request, SCOPE_ONBOARDING)
        provider_id = request.query_params.get("provider_id")
        name = request.query_params.get("name")
        with self._lock:
            orgs = [
                o.out()
                for o in self.orgs.values()
                if o.partner_id == token.partner_id
                and (provider_id is None or o.provider_id == provider_id)
                and (name is None or o.name == name)
            ]
        return JSONResponse({"orgs": orgs})

    async def _org_locations(self, request: Request) -> Response:
        token = self._auth(request, SCOPE_ONBOARDING)
        location_id = request.query_params.get("location_id")
        with self._lock:
            org = self._org(request.path_params["id"], token)
            locations = [loc.out() for loc in org.locations if location_id is None or loc.id == location_id]
        return JSONResponse({"locations": locations})

    # -- integrations ----------------------------------------------------------------------------------
    async def _init_integration(self, request: Request) -> Response:
        token = self._auth(request, SCOPE_ONBOARDING)
        body = await self._body(request, _InitBody)
        with self._lock:
            org = self._org(body.org_id, token)
            source = self.sources.get(body.source)
            if source is None:
                raise _Reject(422, "unknown_source", f"unknown source {body.source!r}")
            if source[0] != body.type:
                raise _Reject(
                    422, "unknown_source", f"{body.source!r} is a {source[0]} source, not {body.type}"
                )
            now = self.now()
            integration_id = _new_id()
            base = str(request.base_url).rstrip("/")
            integration = _Integration(
                id=integration_id,
                partner_id=token.partner_id,
                org_id=org.id,
                partner_org_id=org.provider_id,
                source=body.source,
                type=body.type,
                return_url=body.return_url,
                entry_url=f"{base}/_sandbox/stream/oauth/{integration_id}",  # ours: the sandbox consent page
                created_at=now,
                updated_at=now,
            )
            if self.auto_authorize:
                self._activate(integration, code=None)
                integration.auto_authorized = True
            self.integrations[integration.id] = integration
            answer = integration.out()
        return JSONResponse({"onboarding": answer}, status_code=201)

    def _activate(self, integration: _Integration, code: str | None) -> None:
        integration.status = "active"
        integration.merchant_id = integration.merchant_id or f"mer_{secrets.token_hex(6)}"
        integration.integration_id = _new_id()
        integration.activated_code = code
        integration.updated_at = self.now()

    async def _list_integrations(self, request: Request) -> Response:
        token = self._auth(request, SCOPE_ONBOARDING)
        q = request.query_params
        with self._lock:
            found = [
                i.out()
                for i in sorted(self.integrations.values(), key=lambda i: i.created_at)
                if i.partner_id == token.partner_id
                and all(q.get(k) is None or q.get(k) == getattr(i, k) for k in ("org_id", "source", "type"))
            ]
        return JSONResponse({"onboardings": found})

    async def _get_integration(self, request: Request) -> Response:
        token = self._auth(request, SCOPE_ONBOARDING)
        with self._lock:
            return JSONResponse(self._integration(request.path_params["id"], token).out())

    async def _complete_integration(self, request: Request) -> Response:
        token = self._auth(request, SCOPE_ONBOARDING)
        body = await self._body(request, _CompleteBody)
        with self._lock:
            integration = self._integration(request.path_params["id"], token)
            if integration.status == "active":
                # ours: resending the code that activated it (a lost answer) answers the same; with
                # auto_authorize the completion is a no-op.
                if integration.auto_authorized or integration.activated_code == body.code:
                    return JSONResponse(integration.out())
                raise _Reject(409, "integration_active", f"onboarding {integration.id} is already active")
            code = self.codes.get(body.code)
            if code is None or code.integration_id != integration.id:
                raise _Reject(422, "invalid_code", "unknown OAuth code for this onboarding")
            if code.used:
                raise _Reject(422, "invalid_code", "the OAuth code was already used")
            if code.expires_at <= self.now():
                raise _Reject(422, "code_expired", "the OAuth code has expired")
            code.used = True
            self._activate(integration, body.code)
            return JSONResponse(integration.out())

    # -- locations and menus ---------------------------------------------------------------------------
    async def _onboarding_locations(self, request: Request) -> Response:
        token = self._auth(request, SCOPE_ONBOARDING)
        onboarding_id = request.query_params.get("onboarding_id")
        if not onboarding_id:
            raise _Reject(400, "validation_error", "onboarding_id: query parameter required")
        with self._lock:
            integration = self._integration(onboarding_id, token)
            if integration.status != "active":
                raise _Reject(
                    409, "integration_not_active", f"onboarding {integration.id} is {integration.status}"
                )
            locations = [{**loc, "source": integration.source} for loc in self._source_locations(integration)]
        return JSONResponse({"locations": locations})

    async def _ingest_locations(self, request: Request) -> Response:
        token = self._auth(request, SCOPE_ONBOARDING)
        body = await self._body(request, _IngestBody)
        with self._lock:
            integration = self._integration(body.onboarding_id, token)
            self._active(integration, "pos")
            org = self.orgs[integration.org_id]
            known = {loc["provider_id"]: loc for loc in self._source_locations(integration)}
            unknown = [item.provider_id for item in body.locations if item.provider_id not in known]
            if unknown:  # all or nothing
                raise _Reject(
                    422, "unknown_location", f"not locations of this onboarding: {', '.join(unknown)}"
                )
            out = []
            for item in body.locations:
                # ours: keyed by (source, provider_id): ingesting again returns the same location
                existing = next(
                    (
                        x
                        for x in org.locations
                        if x.source == integration.source and x.provider_id == item.provider_id
                    ),
                    None,
                )
                if existing is None:
                    loc = known[item.provider_id]
                    existing = _OrgLocation(
                        _new_id(),
                        item.provider_id,
                        loc.get("name", item.provider_id),
                        integration.source,
                        loc.get("address") or {},
                    )
                    org.locations.append(existing)
                out.append({"_id": existing.id, "provider_id": existing.provider_id})
        return JSONResponse({"locations": out}, status_code=201)

    async def _bind_locations(self, request: Request) -> Response:
        token = self._auth(request, SCOPE_ONBOARDING)
        body = await self._body(request, _BindBody)
        with self._lock:
            integration = self._integration(body.onboarding_id, token)
            self._active(integration, "dsp")
            org = self.orgs[integration.org_id]
            by_id = {loc.id: loc for loc in org.locations}
            stores = {loc["provider_id"] for loc in self._source_locations(integration)}
            bound = {
                d.provider_id: loc
                for loc in org.locations
                for d in loc.dsps
                if d.source == integration.source
            }
            for item in body.locations:  # check everything first: all or nothing
                if item.pos_location_id not in by_id:
                    raise _Reject(
                        422,
                        "unknown_pos_location",
                        f"no location {item.pos_location_id} in organization {org.id}",
                    )
                if item.dsp_provider_id not in stores:
                    raise _Reject(
                        422,
                        "unknown_dsp_location",
                        f"{item.dsp_provider_id} is not a store of this onboarding",
                    )
                other = bound.get(item.dsp_provider_id)
                if other is not None and other.id != item.pos_location_id:
                    raise _Reject(
                        409, "dsp_location_bound", f"{item.dsp_provider_id} is bound to location {other.id}"
                    )
            out = []
            for item in body.locations:
                loc = by_id[item.pos_location_id]
                dsp = next(
                    (
                        d
                        for d in loc.dsps
                        if d.source == integration.source and d.provider_id == item.dsp_provider_id
                    ),
                    None,
                )
                if dsp is None:  # ours: binding the same pair again returns the same connection
                    dsp = _DSP(
                        _new_id(), item.dsp_store_name, integration.source, item.dsp_provider_id, self.now()
                    )
                    loc.dsps.append(dsp)
                    bound[item.dsp_provider_id] = loc
                out.append(
                    {
                        "_id": dsp.id,
                        "dsp_provider_id": dsp.provider_id,
                        "dsp_store_name": dsp.name,
                        "status": dsp.status,
                    }
                )
        return JSONResponse({"locations": out}, status_code=201)

    async def _assign_menus(self, request: Request) -> Response:
        token = self._auth(request, SCOPE_ONBOARDING)
        body = await self._body(request, _MenusBody)
        with self._lock:
            org = self._org(body.org_id, token)
            dsp = next((d for loc in org.locations for d in loc.dsps if d.id == body.dsp_location_id), None)
            if dsp is None:
                raise _Reject(
                    404,
                    "dsp_location_not_found",
                    f"no DSP connection {body.dsp_location_id} in organization {org.id}",
                )
            unknown = [m for m in body.menu_provider_ids if m not in org.menus]
            if unknown:
                raise _Reject(
                    422, "unknown_menu", f"not menus of the organization's catalog: {', '.join(unknown)}"
                )
            dsp.menu_provider_ids = list(dict.fromkeys(body.menu_provider_ids))  # replaces; [] = publish all
            dsp.change_time = self.now()
            answer = {"dsp_location_id": dsp.id, "menu_provider_ids": list(dsp.menu_provider_ids)}
        return JSONResponse(answer)

    # -- feature flags ---------------------------------------------------------------------------------
    def _targeting_answer(
        self, key: str, contexts: set[tuple[str, str, str]], partner_id: str
    ) -> dict[str, Any]:
        mine = sorted((kind, ckey) for pid, kind, ckey in contexts if pid == partner_id)
        return {"key": key, "contexts": [{"kind": kind, "key": ckey} for kind, ckey in mine]}

    async def _flag_contexts(self, request: Request) -> Response:
        token = self._auth(request, SCOPE_FLAGS)
        self._partner(request, token, required=True)
        body = await self._body(request, _ContextsBody)
        with self._lock:
            flag = self.flags.get(request.path_params["key"])
            if flag is None:
                raise _Reject(404, "flag_not_found", f"no flag {request.path_params['key']!r}")
            self._apply(flag.contexts, body, token.partner_id, add=request.method == "POST")
            return JSONResponse(self._targeting_answer(flag.key, flag.contexts, token.partner_id))

    async def _segment_contexts(self, request: Request) -> Response:
        token = self._auth(request, SCOPE_FLAGS)
        self._partner(request, token, required=True)
        body = await self._body(request, _ContextsBody)
        with self._lock:
            segment = self.segments.get(request.path_params["key"])
            if segment is None:
                raise _Reject(404, "segment_not_found", f"no segment {request.path_params['key']!r}")
            self._apply(segment.contexts, body, token.partner_id, add=request.method == "POST")
            return JSONResponse(self._targeting_answer(segment.key, segment.contexts, token.partner_id))

    @staticmethod
    def _apply(contexts: set[tuple[str, str, str]], body: _ContextsBody, partner_id: str, add: bool) -> None:
        # ours: adding a present context or removing an absent one is a no-op
        items = {(partner_id, c.kind, c.key) for c in body.contexts}
        if add:
            contexts |= items
        else:
            contexts -= items

    async def _search_contexts(self, request: Request) -> Response:
        token = self._auth(request, SCOPE_FLAGS)
        self._partner(request, token, required=False)
        q = request.query_params.get("q")
        kind = request.query_params.get("kind")
        raw_limit = request.query_params.get("limit")
        limit = SEARCH_LIMIT_DEFAULT
        if raw_limit is not None:
            try:
                limit = int(raw_limit)
            except ValueError:
                raise _Reject(400, "validation_error", "limit: must be an integer from 1 to 50") from None
            if not 1 <= limit <= 50:
                raise _Reject(400, "validation_error", "limit: must be from 1 to 50")
        with self._lock:
            found: dict[tuple[str, str], dict[str, Any]] = {}
            targets: list[tuple[str, str, set[tuple[str, str, str]]]] = [
                *(("flags", f.key, f.contexts) for f in self.flags.values()),
                *(("segments", s.key, s.contexts) for s in self.segments.values()),
            ]
            for where, key, contexts in targets:
                for pid, ckind, ckey in contexts:
                    if pid != token.partner_id or (kind is not None and ckind != kind):
                        continue
                    if q is not None and q.lower() not in ckey.lower():  # ours: case-insensitive
                        continue
                    entry = found.setdefault(
                        (ckind, ckey), {"key": ckey, "kind": ckind, "flags": [], "segments": []}
                    )
                    entry[where].append(key)
        contexts_out = [found[k] for k in sorted(found)][:limit]
        for entry in contexts_out:
            entry["flags"].sort()
            entry["segments"].sort()
        return JSONResponse({"contexts": contexts_out})

    async def _evaluate(self, request: Request) -> Response:
        token = self._auth(request, SCOPE_FLAGS)
        self._partner(request, token, required=True)
        body = await self._body(request, _EvaluateBody)
        with self._lock:
            flag = self.flags.get(request.path_params["key"])
            if flag is None:
                raise _Reject(404, "flag_not_found", f"no flag {request.path_params['key']!r}")
            ctx = (token.partner_id, body.kind, body.key)
            targeted = ctx in flag.contexts or any(
                ctx in self.segments[s].contexts for s in flag.segments if s in self.segments
            )
            # ours: boolean flags; `enabled` says whether the flag is on, `value` is the variation served
            return JSONResponse({"flagKey": flag.key, "value": flag.on and targeted, "enabled": flag.on})

    # -- admin -----------------------------------------------------------------------------------------
    async def _consent_page(self, request: Request) -> Response:
        with self._lock:
            integration = self.integrations.get(request.path_params["id"])
        if integration is None:
            raise _Reject(404, "onboarding_not_found", "no such onboarding")
        approve = f"/_sandbox/stream/oauth/{html.escape(integration.id)}/approve"
        return HTMLResponse(
            "<h1>Stream sandbox: authorize access</h1>"
            f"<p>Allow the partner to connect your {html.escape(integration.source)} account"
            f" ({html.escape(integration.type)})?</p><p><a href='{approve}'>Approve</a></p>"
        )

    async def _consent_approve(self, request: Request) -> Response:
        integration_id = request.path_params["id"]
        try:
            code = self.authorize(integration_id)
        except KeyError:
            raise _Reject(404, "onboarding_not_found", "no such onboarding") from None
        except ValueError as exc:
            raise _Reject(409, "integration_not_pending", str(exc)) from None
        target = _with_query(
            self.integrations[integration_id].return_url, code=code, onboarding_id=integration_id
        )
        return RedirectResponse(target, status_code=303)

    async def _admin_authorize(self, request: Request) -> Response:
        try:
            code = self.authorize(request.path_params["id"])
        except KeyError:
            raise _Reject(404, "onboarding_not_found", "no such onboarding") from None
        except ValueError as exc:
            raise _Reject(409, "integration_not_pending", str(exc)) from None
        return JSONResponse({"code": code, "expires_in": CODE_TTL})

    async def _admin_add_client(self, request: Request) -> Response:
        data = await _json_object(request)
        try:
            self.add_client(
                str(data["client_id"]),
                str(data["client_secret"]),
                data.get("partner_id"),
                data.get("scopes") or SCOPES,
            )
        except KeyError as exc:
            raise _Reject(400, "validation_error", f"{exc.args[0]}: field required") from None
        return JSONResponse({"client_id": data["client_id"]}, status_code=201)

    async def _admin_settings(self, request: Request) -> Response:
        data = await _json_object(request)
        if "auto_authorize" in data:
            self.auto_authorize = bool(data["auto_authorize"])
        return JSONResponse({"auto_authorize": self.auto_authorize})

    async def _admin_webhook(self, request: Request) -> Response:
        data = await _json_object(request)
        try:
            url, secret, event = str(data["url"]), str(data["secret"]), data["event"]
        except KeyError as exc:
            raise _Reject(400, "validation_error", f"{exc.args[0]}: field required") from None
        try:
            status = await asyncio.to_thread(self.send_webhook, url, secret, event)
        except httpx.HTTPError as exc:
            raise _Reject(502, "webhook_failed", f"delivery failed: {type(exc).__name__}") from None
        return JSONResponse({"status": status})


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.body() or b"{}")
    except ValueError:
        raise _Reject(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise _Reject(400, "validation_error", "the body must be a JSON object")
    return data


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = "&".join(p for p in (parts.query, urlencode(params)) if p)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_MENUS",
    "DEFAULT_PARTNER_ID",
    "SIGNATURE_HEADER",
    "StreamSandbox",
]
