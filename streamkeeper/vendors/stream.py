"""Stream Partner API 1.0: typed models and `StreamClient`.

Stream links restaurant point-of-sale systems (POS) and delivery service providers (DSPs). A partner
onboards an organisation (org, partner token, OAuth integration of the merchant's POS and DSP accounts,
locations ingest, DSP binding, menus), gives the merchant a single-use SSO login, and targets feature
flags at contexts.

Source: the seed ``shared/seeds/002_27f678e46bd5775f.txt`` (bodies and answers of every operation) and
``shared/VENDORS.md`` section 3 (the few published paths). Everything else is marked ``# ours`` here
and listed in ``docs/vendors/stream.md``.

Auth: ``POST /oauth/token`` with ``client_credentials`` first, then the (single-use, rotating) refresh
token; a refused refresh falls back to ``client_credentials``. Each new refresh token is handed to the
``on_token`` callback before it is ever used, so the caller can store it (the Prefect block).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from streamkeeper.vendors.http import (
    RequestInvalid,
    RequestModel,
    Token,
    TokenAuth,
    VendorClient,
    VendorHTTPError,
    VendorModel,
    build_request,
    register_secret,
)

log = logging.getLogger(__name__)

Scope = Literal["user", "onboarding", "legacy_onboarding", "sso", "billing"]
GrantType = Literal["client_credentials", "refresh_token"]
IntegrationType = Literal["pos", "dsp"]
Role = Literal["owner", "admin", "manager", "team_member", "custom"]

ALL_SCOPES: tuple[Scope, ...] = ("user", "onboarding", "legacy_onboarding", "sso", "billing")
DEFAULT_SCOPES: tuple[Scope, ...] = ("user", "onboarding", "sso")  # ours: what onboarding needs
MAX_TOKEN_LIFETIME = 3600  # seed: `exp` is at most one hour after the issued time
SIGNATURE_HEADER = "X-Stream-Signature"  # doc; the value's format (bare hex digest) is ours

NonEmpty = Annotated[str, Field(min_length=1)]
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]


# -- requests ----------------------------------------------------------------------------------------------
class TokenRequest(RequestModel):
    """Body of ``POST /oauth/token`` (seed). Secrets stay `SecretStr` until `body()` builds the JSON."""

    grant_type: GrantType
    client_id: NonEmpty
    client_secret: SecretStr
    exp: int | None = Field(default=None, description="Expiry, epoch seconds; at most one hour ahead.")
    scopes: list[Scope] | None = None
    refresh_token: SecretStr | None = None

    @field_validator("exp")
    @classmethod
    def _exp_within_an_hour(cls, exp: int | None) -> int | None:
        if exp is not None:
            now = time.time()
            if exp <= now:
                raise ValueError("must be in the future")
            if exp > now + MAX_TOKEN_LIFETIME:
                raise ValueError("must be at most one hour (3600 s) ahead")
        return exp

    @model_validator(mode="after")
    def _check(self) -> TokenRequest:
        if not self.client_secret.get_secret_value():
            raise ValueError("client_secret must not be empty")
        if self.grant_type == "refresh_token" and self.refresh_token is None:
            raise ValueError("refresh_token is required when grant_type is refresh_token")
        return self

    def body(self) -> dict[str, Any]:
        """The JSON body, secrets unwrapped (only ever sent, never logged)."""
        out: dict[str, Any] = {
            "grant_type": self.grant_type,
            "client_id": self.client_id,
            "client_secret": self.client_secret.get_secret_value(),
        }
        if self.exp is not None:
            out["exp"] = self.exp
        if self.scopes is not None:
            out["scopes"] = list(self.scopes)
        if self.refresh_token is not None:
            out["refresh_token"] = self.refresh_token.get_secret_value()
        return out


class PartnerTokenRequest(RequestModel):
    """Body of createPartnerToken (seed)."""

    org_id: NonEmpty
    token_name: NonEmpty
    scopes: list[Scope] = Field(min_length=1)


class SSOSessionRequest(RequestModel):
    """Body of ``POST /white-label/generate-session`` (seed)."""

    email: Email
    full_name: NonEmpty
    phone_number: NonEmpty
    role: Role | None = None
    provider_org_id: str | None = None
    provider_org_name: str | None = None


class SSORedeemRequest(RequestModel):
    """Body of the SSO redemption (ours)."""

    sso_login_token: NonEmpty


class IntegrationInitRequest(RequestModel):
    """Body of ``POST /onboarding/integrations`` (seed)."""

    org_id: NonEmpty
    source: NonEmpty
    type: IntegrationType
    return_url: NonEmpty


class IntegrationCompleteRequest(RequestModel):
    """Body of ``PUT /onboarding/integrations/{id}`` (seed)."""

    code: NonEmpty


class IngestLocation(RequestModel):
    """One POS location to ingest (seed: IngestOnboardingLocation)."""

    provider_id: NonEmpty


class IngestLocationsRequest(RequestModel):
    """Body of Ingest POS locations (seed)."""

    onboarding_id: NonEmpty
    locations: list[IngestLocation] = Field(min_length=1)


class BindLocation(RequestModel):
    """One DSP store to bind to a POS location (seed: BindOnboardingLocation)."""

    pos_location_id: NonEmpty
    dsp_provider_id: NonEmpty
    dsp_store_name: NonEmpty


class BindLocationsRequest(RequestModel):
    """Body of Bind DSP locations (seed)."""

    onboarding_id: NonEmpty
    locations: list[BindLocation] = Field(min_length=1)


class MenuAssignmentRequest(RequestModel):
    """Body of Assign menus to a DSP connection (seed). An empty list restores "publish all menus"."""

    org_id: NonEmpty
    dsp_location_id: NonEmpty
    menu_provider_ids: list[NonEmpty]


class OrgUser(RequestModel):
    """The organisation's first user (seed: CreateUserOrgUser)."""

    email: Email
    first_name: NonEmpty
    last_name: NonEmpty


class CreateOrganizationRequest(RequestModel):
    """Body of ``POST /onboarding/org`` (seed)."""

    name: NonEmpty
    provider_id: NonEmpty
    user: OrgUser


class Context(RequestModel):
    """A feature-flag context (seed: ContextDto)."""

    key: NonEmpty
    kind: NonEmpty = "user"


class ContextsRequest(RequestModel):
    """Body of the add/remove context operations (seed)."""

    contexts: list[Context] = Field(min_length=1)


class ContextSearchRequest(RequestModel):
    """Query of the context search (seed): substring `q`, `kind`, `limit` 1..50."""

    q: str | None = None
    kind: str | None = None
    limit: int = Field(default=20, ge=1, le=50)


class FlagEvaluationRequest(RequestModel):
    """Body of the flag evaluation (seed)."""

    key: NonEmpty
    kind: NonEmpty = "user"


# -- responses ---------------------------------------------------------------------------------------------
class TokenResponse(VendorModel):
    """Answer of ``POST /oauth/token`` (seed, 201)."""

    access_token: SecretStr
    token_type: str = "bearer"
    refresh_token: SecretStr | None = None
    expires_in: int
    refresh_token_expires_in: int | None = None
    scopes: list[str] = Field(default_factory=list)


class TokenInfo(BaseModel):
    """What `on_token` receives when a token (with a new refresh token) is issued.

    Attributes:
        grant_type: the grant that produced it.
        refresh_refused: a refresh was tried first and refused, so ``client_credentials`` was used.
    """

    model_config = ConfigDict(frozen=True)

    grant_type: GrantType
    access_token: SecretStr
    refresh_token: SecretStr | None
    expires_at: datetime
    refresh_token_expires_at: datetime | None
    scopes: list[str]
    refresh_refused: bool = False


class PartnerToken(VendorModel):
    """Answer of createPartnerToken. The seed shows ``{}``: every field here is ours and optional.

    `token` (the secret) is only in the create answer, never in `StreamClient.list_partner_tokens`.
    """

    id: str | None = Field(default=None, alias="_id")
    org_id: str | None = None
    token_name: str | None = None
    scopes: list[str] = Field(default_factory=list)
    token: SecretStr | None = None


class SSOSession(VendorModel):
    """Answer of ``POST /white-label/generate-session`` (seed): a single-use login token."""

    sso_login_token: SecretStr


class SSORedemption(VendorModel):
    """Answer of the SSO redemption (ours)."""

    email: str | None = None
    org_id: str | None = None
    role: str | None = None


class Onboarding(VendorModel):
    """An OAuth onboarding integration (seed). `status` is ``pending`` until completed, then ``active``."""

    id: str = Field(alias="_id")
    org_id: str | None = None
    merchant_id: str | None = None
    type: str | None = None
    status: str
    partner_id: str | None = None
    partner_org_id: str | None = None
    source: str | None = None
    entry_url: str | None = None
    return_url: str | None = None
    integration_id: str | None = None


class Address(VendorModel):
    """A location's address (seed)."""

    formatted_address: str | None = None
    address_line_1: str | None = None
    address_line_2: str | None = None
    address_line_3: str | None = None
    postal_code: str | None = None
    locality: str | None = None
    administrative_district_level_1: str | None = None
    country: str | None = None
    latitude: float | None = None
    longitude: float | None = None


class OnboardingLocation(VendorModel):
    """A location seen through an onboarding integration (seed)."""

    provider_id: str
    name: str | None = None
    address: Address | None = None
    source: str | None = None


class IngestedLocation(VendorModel):
    """A POS location after ingest (seed)."""

    id: str = Field(alias="_id")
    provider_id: str


class BoundLocation(VendorModel):
    """A DSP store after binding (seed); `status` ``APPROVED``."""

    id: str = Field(alias="_id")
    dsp_provider_id: str
    dsp_store_name: str | None = None
    status: str


class MenuAssignment(VendorModel):
    """Answer of Assign menus (seed)."""

    dsp_location_id: str
    menu_provider_ids: list[str]


class CreatedOrganization(VendorModel):
    """Answer of ``POST /onboarding/org`` (seed)."""

    org_id: str
    user_id: str | None = None


class Organization(VendorModel):
    """An organisation in the org list (ours: the seed has no read of organisations)."""

    id: str = Field(alias="_id")
    name: str | None = None
    provider_id: str | None = None
    user_id: str | None = None


class DSPConnection(VendorModel):
    """A DSP connection of an organisation location (seed: ``dsps[]``)."""

    id: str = Field(alias="_id")
    name: str | None = None
    source: str | None = None
    status: str | None = None
    change_time: float | None = None
    menu_provider_ids: list[str] | None = None  # ours: the assignment; empty = publish all menus


class OrgLocation(VendorModel):
    """A POS location of an organisation, with its DSP connections (seed)."""

    id: str = Field(alias="_id")
    name: str | None = None
    source: str | None = None
    status: str | None = None
    address: Address | None = None
    dsps: list[DSPConnection] = Field(default_factory=list)


class ContextInfo(VendorModel):
    """A context found by the search. The seed shows ``{}``; `key` and `kind` are ours."""

    key: str | None = None
    kind: str | None = None


class ContextTargeting(VendorModel):
    """Answer of the add/remove context operations (ours: the seed documents no body)."""

    key: str | None = None
    contexts: list[ContextInfo] = Field(default_factory=list)


class FlagEvaluation(VendorModel):
    """Answer of the flag evaluation (seed)."""

    flag_key: str = Field(alias="flagKey")
    value: Any = None
    enabled: bool


class _PartnerTokens(VendorModel):
    tokens: list[PartnerToken]


class _OnboardingEnvelope(VendorModel):
    onboarding: Onboarding


class _Onboardings(VendorModel):
    onboardings: list[Onboarding]


class _OnboardingLocations(VendorModel):
    locations: list[OnboardingLocation]


class _IngestedLocations(VendorModel):
    locations: list[IngestedLocation]


class _BoundLocations(VendorModel):
    locations: list[BoundLocation]


class _OrgLocations(VendorModel):
    locations: list[OrgLocation]


class _Organizations(VendorModel):
    orgs: list[Organization]


class _Contexts(VendorModel):
    contexts: list[ContextInfo]


# -- webhooks ----------------------------------------------------------------------------------------------
def webhook_signature(body: bytes, secret: SecretStr | str) -> str:
    """The ``X-Stream-Signature`` of a webhook body: hex HMAC-SHA256 keyed by the webhook secret."""
    key = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def verify_webhook_signature(body: bytes, secret: SecretStr | str, signature: str | None) -> bool:
    """True when `signature` (the header value) is the body's signature; constant-time compare of bytes, so a
    header that is not ASCII is a mismatch, not an error."""
    if not signature:
        return False
    given = signature.strip().lower().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(webhook_signature(body, secret).encode(), given)


# -- client ------------------------------------------------------------------------------------------------
class StreamClient(VendorClient):
    """Client of the Stream Partner API.

    Args:
        base_url: the API root (not public: configurable).
        client_id: the API key.
        client_secret: the API token.
        refresh_token: a stored refresh token to use for the first token (else ``client_credentials``).
        scopes: scopes requested with every token.
        partner_id: your partner id, sent as ``partner_id`` on SSO and feature-flag calls.
        token_lifetime: ask for tokens that expire after this many seconds (1..3600) via ``exp``.
        on_token: called with a `TokenInfo` whenever a new refresh token is issued, before it is used;
            store ``info.refresh_token`` there (refresh tokens are single-use). An exception it raises
            propagates to the call that needed the token.
        refresh_margin: refresh the access token this many seconds before it expires.
        clock: time source of the token cache (tests).
        Other keyword arguments: see `VendorClient`.
    """

    vendor = "stream"

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str,
        client_secret: SecretStr,
        refresh_token: SecretStr | None = None,
        scopes: Sequence[Scope] | None = DEFAULT_SCOPES,
        partner_id: str | None = None,
        token_lifetime: int | None = None,
        on_token: Callable[[TokenInfo], None] | None = None,
        refresh_margin: float = 60.0,
        clock: Callable[[], float] = time.time,
        **kwargs: Any,
    ) -> None:
        if token_lifetime is not None and not 1 <= token_lifetime <= MAX_TOKEN_LIFETIME:
            raise RequestInvalid(self.vendor, "token", "token_lifetime must be between 1 and 3600 seconds")
        register_secret(client_secret.get_secret_value())
        if refresh_token is not None:
            register_secret(refresh_token.get_secret_value())
        self.client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token
        self.scopes: list[Scope] | None = list(scopes) if scopes is not None else None
        self.partner_id = partner_id
        self.token_lifetime = token_lifetime
        self.on_token = on_token
        self._clock = clock
        self._token_auth = TokenAuth(self._fetch_token, refresh_margin=refresh_margin, clock=clock)
        self._info_lock = threading.Lock()
        self.last_token_info: TokenInfo | None = None
        super().__init__(base_url, auth=self._token_auth, **kwargs)  # verify, timeout, transport, retry...

    # -- tokens --------------------------------------------------------------------------------------------
    def request_token(
        self,
        grant_type: GrantType = "client_credentials",
        *,
        refresh_token: SecretStr | None = None,
        exp: int | None = None,
        scopes: Sequence[Scope] | None = None,
    ) -> TokenResponse:
        """``POST /oauth/token`` (seed: operation ``token``), outside the client's token cache.

        The client's own tokens are fetched for you; use this for a token you hand on. `scopes` defaults
        to the client's.
        """
        body = build_request(
            self.vendor,
            "token",
            TokenRequest,
            {
                "grant_type": grant_type,
                "client_id": self.client_id,
                "client_secret": self._client_secret,
                "exp": exp,
                "scopes": list(scopes) if scopes is not None else self.scopes,
                "refresh_token": refresh_token,
            },
        )
        # A lost answer to a refresh may have spent the refresh token; the retry is then refused and the
        # token cache falls back to client_credentials, so resending is safe.
        response = self.request(
            "POST", "/oauth/token", operation="token", json=body.body(), auth=None, idempotent=True
        )
        token: TokenResponse = self.parse(response, TokenResponse, "token")
        register_secret(token.access_token.get_secret_value())
        if token.refresh_token is not None:
            register_secret(token.refresh_token.get_secret_value())
        return token

    def refresh_tokens(self) -> TokenInfo:
        """Get a new access token now (with the refresh token when there is one): rotates the refresh token.

        Returns the new token's `TokenInfo` (`on_token` has already seen it).
        """
        self._token_auth.refresh(stale=self._token_auth.token)
        info = self.last_token_info
        assert info is not None  # set by every successful fetch
        return info

    def _fetch_token(self, stale: Token | None) -> Token:
        """TokenAuth's fetcher: the refresh token when there is one, else (or if refused) client_credentials.

        Runs under TokenAuth's lock (single-flight), so `_refresh_token` needs no lock of its own.
        """
        exp = int(time.time()) + self.token_lifetime if self.token_lifetime else None
        refused = False
        response: TokenResponse | None = None
        grant: GrantType = "client_credentials"
        if self._refresh_token is not None:
            try:
                response = self.request_token("refresh_token", refresh_token=self._refresh_token, exp=exp)
                grant = "refresh_token"
            except VendorHTTPError as exc:
                if exc.status not in (400, 401):
                    raise
                refused = True
                self._refresh_token = None
                log.info(
                    "stream: refresh token refused (HTTP %s %s); falling back to client_credentials",
                    exc.status,
                    exc.code or "",
                )
        if response is None:
            response = self.request_token("client_credentials", exp=exp)
        now = self._clock()
        wall = datetime.now(UTC).timestamp()
        info = TokenInfo(
            grant_type=grant,
            access_token=response.access_token,
            refresh_token=response.refresh_token,
            expires_at=datetime.fromtimestamp(wall + response.expires_in, UTC),
            refresh_token_expires_at=(
                datetime.fromtimestamp(wall + response.refresh_token_expires_in, UTC)
                if response.refresh_token_expires_in is not None
                else None
            ),
            scopes=list(response.scopes),
            refresh_refused=refused,
        )
        log.debug("stream: token issued by %s grant, expires in %s s", grant, response.expires_in)
        if response.refresh_token is not None:
            self._refresh_token = response.refresh_token
            if self.on_token is not None:
                self.on_token(info)
        with self._info_lock:
            self.last_token_info = info
        extra = {"refresh_token": response.refresh_token} if response.refresh_token is not None else {}
        return Token(value=response.access_token, expires_at=now + response.expires_in, extra=extra)

    # -- partner tokens and SSO ----------------------------------------------------------------------------
    def create_partner_token(self, *, org_id: str, token_name: str, scopes: Sequence[Scope]) -> PartnerToken:
        """createPartnerToken (seed; path ours: ``POST /partner/tokens``)."""
        body = build_request(
            self.vendor,
            "create_partner_token",
            PartnerTokenRequest,
            {"org_id": org_id, "token_name": token_name, "scopes": list(scopes)},
        )
        response = self.request(
            "POST", "/partner/tokens", operation="create_partner_token", json=body.model_dump(mode="json")
        )
        token: PartnerToken = self.parse(response, PartnerToken, "create_partner_token")
        if token.token is not None:
            register_secret(token.token.get_secret_value())
        return token

    def list_partner_tokens(self, *, org_id: str | None = None) -> list[PartnerToken]:
        """The partner tokens created so far, without their values (ours: ``GET /partner/tokens?org_id=``)."""
        params = {"org_id": org_id} if org_id else None
        response = self.request("GET", "/partner/tokens", operation="list_partner_tokens", params=params)
        return self.parse(response, _PartnerTokens, "list_partner_tokens").tokens

    def generate_sso_session(
        self,
        *,
        email: str,
        full_name: str,
        phone_number: str,
        role: Role | None = None,
        provider_org_id: str | None = None,
        provider_org_name: str | None = None,
    ) -> SSOSession:
        """``POST /white-label/generate-session`` (seed): a single-use SSO login token for a user."""
        body = build_request(
            self.vendor,
            "generate_sso_session",
            SSOSessionRequest,
            {
                "email": email,
                "full_name": full_name,
                "phone_number": phone_number,
                "role": role,
                "provider_org_id": provider_org_id,
                "provider_org_name": provider_org_name,
            },
        )
        response = self.request(
            "POST",
            "/white-label/generate-session",
            operation="generate_sso_session",
            params=self._partner_params(),
            json=body.model_dump(mode="json", exclude_none=True),
        )
        return self.parse(response, SSOSession, "generate_sso_session")

    def redeem_sso_session(self, sso_login_token: SecretStr | str) -> SSORedemption:
        """Log in with an SSO token, as the user's browser would (ours: ``POST /white-label/redeem-session``).

        Raises:
            Conflict: code ``sso_token_redeemed`` when the token was used before (seed), or
                ``sso_token_expired``.
        """
        value = (
            sso_login_token.get_secret_value() if isinstance(sso_login_token, SecretStr) else sso_login_token
        )
        body = build_request(self.vendor, "redeem_sso_session", SSORedeemRequest, {"sso_login_token": value})
        response = self.request(
            "POST",
            "/white-label/redeem-session",
            operation="redeem_sso_session",
            json=body.model_dump(mode="json"),
            auth=None,
        )
        return self.parse(response, SSORedemption, "redeem_sso_session")

    def sso_login_url(self, sso_login_token: SecretStr | str) -> str:
        """The link that logs the user in with an SSO token (ours: ``GET /white-label/login``)."""
        value = (
            sso_login_token.get_secret_value() if isinstance(sso_login_token, SecretStr) else sso_login_token
        )
        return str(httpx.URL(f"{self.base_url}/white-label/login", params={"sso_login_token": value}))

    # -- organisations -------------------------------------------------------------------------------------
    def create_organization(
        self, *, name: str, provider_id: str, user: OrgUser | Mapping[str, Any]
    ) -> CreatedOrganization:
        """``POST /onboarding/org`` (seed). A create whose answer was lost is looked up by `provider_id`.

        Raises:
            Conflict: an organisation with this `provider_id` exists already.
        """
        body = build_request(
            self.vendor,
            "create_organization",
            CreateOrganizationRequest,
            {"name": name, "provider_id": provider_id, "user": user},
        )

        def do_create() -> CreatedOrganization:
            response = self.request(
                "POST", "/onboarding/org", operation="create_organization", json=body.model_dump(mode="json")
            )
            return self.parse(response, CreatedOrganization, "create_organization")

        def lookup() -> CreatedOrganization | None:
            found = self.find_organization(provider_id=body.provider_id)
            return CreatedOrganization(org_id=found.id, user_id=found.user_id) if found else None

        return self.create("create_organization", do_create, lookup)

    def list_organizations(
        self, *, provider_id: str | None = None, name: str | None = None
    ) -> list[Organization]:
        """The partner's organisations, optionally filtered (ours: ``GET /onboarding/org``)."""
        params = {k: v for k, v in {"provider_id": provider_id, "name": name}.items() if v is not None}
        response = self.request("GET", "/onboarding/org", operation="list_organizations", params=params)
        return self.parse(response, _Organizations, "list_organizations").orgs

    def find_organization(
        self, *, provider_id: str | None = None, name: str | None = None
    ) -> Organization | None:
        """The organisation with this `provider_id` (or `name`), or None (ours, on `list_organizations`)."""
        if provider_id is None and name is None:
            raise RequestInvalid(
                self.vendor, "list_organizations", "invalid request: provider_id or name is required"
            )
        found = self.list_organizations(provider_id=provider_id, name=name)
        return found[0] if found else None

    def list_org_locations(self, org_id: str, *, location_id: str | None = None) -> list[OrgLocation]:
        """``GET /onboarding/org/{id}/locations`` (seed): POS locations with their DSP connections (``dsps``)."""
        self._require("list_org_locations", org_id=org_id)
        response = self.request(
            "GET",
            "/onboarding/org/{id}/locations",
            operation="list_org_locations",
            path_params={"id": org_id},
            params={"location_id": location_id} if location_id else None,
        )
        return self.parse(response, _OrgLocations, "list_org_locations").locations

    # -- OAuth onboarding integrations ---------------------------------------------------------------------
    def init_integration(
        self, *, org_id: str, source: str, type: IntegrationType, return_url: str
    ) -> Onboarding:
        """``POST /onboarding/integrations`` (seed): start the merchant's OAuth; send them to `entry_url`.

        A create whose answer was lost is looked up (the newest integration of this org, source, type and
        return URL) rather than repeated.
        """
        body = build_request(
            self.vendor,
            "init_integration",
            IntegrationInitRequest,
            {"org_id": org_id, "source": source, "type": type, "return_url": return_url},
        )

        def do_create() -> Onboarding:
            response = self.request(
                "POST",
                "/onboarding/integrations",
                operation="init_integration",
                json=body.model_dump(mode="json"),
            )
            return self.parse(response, _OnboardingEnvelope, "init_integration").onboarding

        def lookup() -> Onboarding | None:
            found = [
                o
                for o in self.list_integrations(org_id=body.org_id, source=body.source, type=body.type)
                if o.return_url in (None, body.return_url)
            ]
            return found[-1] if found else None

        return self.create("init_integration", do_create, lookup)

    def list_integrations(
        self, *, org_id: str | None = None, source: str | None = None, type: IntegrationType | None = None
    ) -> list[Onboarding]:
        """The partner's onboarding integrations, oldest first (ours: ``GET /onboarding/integrations``)."""
        params = {
            k: v for k, v in {"org_id": org_id, "source": source, "type": type}.items() if v is not None
        }
        response = self.request(
            "GET", "/onboarding/integrations", operation="list_integrations", params=params
        )
        return self.parse(response, _Onboardings, "list_integrations").onboardings

    def get_integration(self, onboarding_id: str) -> Onboarding:
        """``GET /onboarding/integrations/{id}`` (seed): status and details."""
        self._require("get_integration", onboarding_id=onboarding_id)
        response = self.request(
            "GET",
            "/onboarding/integrations/{id}",
            operation="get_integration",
            path_params={"id": onboarding_id},
        )
        return self.parse(response, Onboarding, "get_integration")

    def complete_integration(self, onboarding_id: str, code: str) -> Onboarding:
        """``PUT /onboarding/integrations/{id}`` (seed): exchange the merchant's OAuth `code`; status ``active``."""
        self._require("complete_integration", onboarding_id=onboarding_id)
        body = build_request(self.vendor, "complete_integration", IntegrationCompleteRequest, {"code": code})
        response = self.request(
            "PUT",
            "/onboarding/integrations/{id}",
            operation="complete_integration",
            path_params={"id": onboarding_id},
            json=body.model_dump(mode="json"),
        )
        return self.parse(response, Onboarding, "complete_integration")

    # -- locations and menus -------------------------------------------------------------------------------
    def list_onboarding_locations(self, onboarding_id: str) -> list[OnboardingLocation]:
        """``GET /onboarding/locations?onboarding_id=`` (seed): the locations the merchant's account holds."""
        self._require("list_onboarding_locations", onboarding_id=onboarding_id)
        response = self.request(
            "GET",
            "/onboarding/locations",
            operation="list_onboarding_locations",
            params={"onboarding_id": onboarding_id},
        )
        return self.parse(response, _OnboardingLocations, "list_onboarding_locations").locations

    def ingest_pos_locations(self, onboarding_id: str, provider_ids: Sequence[str]) -> list[IngestedLocation]:
        """Ingest POS locations (seed; path ours: ``POST /onboarding/locations``).

        Sent as idempotent (retried after a lost answer): ingest is keyed by `provider_id` (ours).
        """
        body = build_request(
            self.vendor,
            "ingest_pos_locations",
            IngestLocationsRequest,
            {"onboarding_id": onboarding_id, "locations": [{"provider_id": p} for p in provider_ids]},
        )
        response = self.request(
            "POST",
            "/onboarding/locations",
            operation="ingest_pos_locations",
            json=body.model_dump(mode="json"),
            idempotent=True,
        )
        return self.parse(response, _IngestedLocations, "ingest_pos_locations").locations

    def bind_dsp_locations(
        self, onboarding_id: str, locations: Sequence[BindLocation | Mapping[str, Any]]
    ) -> list[BoundLocation]:
        """Bind DSP locations to POS locations (seed; path ours: ``POST /onboarding/locations/bind``).

        `onboarding_id` is the DSP integration; each location names ``pos_location_id`` (an org location
        ``_id``), ``dsp_provider_id`` and ``dsp_store_name``. Keyed by the pair, so resending is safe (ours).
        """
        body = build_request(
            self.vendor,
            "bind_dsp_locations",
            BindLocationsRequest,
            {"onboarding_id": onboarding_id, "locations": list(locations)},
        )
        response = self.request(
            "POST",
            "/onboarding/locations/bind",
            operation="bind_dsp_locations",
            json=body.model_dump(mode="json"),
            idempotent=True,
        )
        return self.parse(response, _BoundLocations, "bind_dsp_locations").locations

    def assign_menus(
        self, *, org_id: str, dsp_location_id: str, menu_provider_ids: Sequence[str]
    ) -> MenuAssignment:
        """Assign menus to a DSP connection (seed; path ours: ``PUT /onboarding/menus``).

        Replaces the assignment; an empty list restores the default (publish all menus).
        """
        body = build_request(
            self.vendor,
            "assign_menus",
            MenuAssignmentRequest,
            {
                "org_id": org_id,
                "dsp_location_id": dsp_location_id,
                "menu_provider_ids": list(menu_provider_ids),
            },
        )
        response = self.request(
            "PUT", "/onboarding/menus", operation="assign_menus", json=body.model_dump(mode="json")
        )
        return self.parse(response, MenuAssignment, "assign_menus")

    # -- feature flags -------------------------------------------------------------------------------------
    def add_flag_contexts(
        self, flag_key: str, contexts: Sequence[Context | Mapping[str, Any]]
    ) -> ContextTargeting:
        """Add contexts to a flag's targeting (seed; path ours: ``POST /feature-flags/{flagKey}/targeting/contexts``)."""
        return self._contexts(
            "add_flag_contexts",
            "POST",
            "/feature-flags/{flagKey}/targeting/contexts",
            "flagKey",
            flag_key,
            contexts,
        )

    def remove_flag_contexts(
        self, flag_key: str, contexts: Sequence[Context | Mapping[str, Any]]
    ) -> ContextTargeting:
        """Remove contexts from a flag's targeting (seed; path ours: ``DELETE`` on the same path)."""
        return self._contexts(
            "remove_flag_contexts",
            "DELETE",
            "/feature-flags/{flagKey}/targeting/contexts",
            "flagKey",
            flag_key,
            contexts,
        )

    def add_segment_contexts(
        self, segment_key: str, contexts: Sequence[Context | Mapping[str, Any]]
    ) -> ContextTargeting:
        """Add contexts to a segment (seed; path ours: ``POST /segments/{segmentKey}/contexts``)."""
        return self._contexts(
            "add_segment_contexts",
            "POST",
            "/segments/{segmentKey}/contexts",
            "segmentKey",
            segment_key,
            contexts,
        )

    def remove_segment_contexts(
        self, segment_key: str, contexts: Sequence[Context | Mapping[str, Any]]
    ) -> ContextTargeting:
        """Remove contexts from a segment (seed; path ours: ``DELETE`` on the same path)."""
        return self._contexts(
            "remove_segment_contexts",
            "DELETE",
            "/segments/{segmentKey}/contexts",
            "segmentKey",
            segment_key,
            contexts,
        )

    def search_contexts(
        self, *, q: str | None = None, kind: str | None = None, limit: int = 20
    ) -> list[ContextInfo]:
        """Search the partner's contexts across flags and segments (seed; path ours: ``GET /contexts``)."""
        query = build_request(
            self.vendor, "search_contexts", ContextSearchRequest, {"q": q, "kind": kind, "limit": limit}
        )
        params: dict[str, Any] = {k: v for k, v in query.model_dump().items() if v is not None}
        params.update(self._partner_params())
        response = self.request("GET", "/contexts", operation="search_contexts", params=params)
        return self.parse(response, _Contexts, "search_contexts").contexts

    def evaluate_flag(self, flag_key: str, *, key: str, kind: str = "user") -> FlagEvaluation:
        """Evaluate a flag for a context (seed; path ours: ``POST /feature-flags/{flagKey}/evaluate``, a read)."""
        self._require("evaluate_flag", flag_key=flag_key)
        body = build_request(self.vendor, "evaluate_flag", FlagEvaluationRequest, {"key": key, "kind": kind})
        response = self.request(
            "POST",
            "/feature-flags/{flagKey}/evaluate",
            operation="evaluate_flag",
            path_params={"flagKey": flag_key},
            params=self._partner_params("evaluate_flag", required=True),
            json=body.model_dump(mode="json"),
            idempotent=True,
        )
        return self.parse(response, FlagEvaluation, "evaluate_flag")

    def _contexts(
        self,
        operation: str,
        method: str,
        path: str,
        key_name: str,
        key: str,
        contexts: Sequence[Context | Mapping[str, Any]],
    ) -> ContextTargeting:
        # Adding a context twice or removing a missing one is a no-op (ours), so both are safe to resend.
        self._require(operation, **{key_name: key})
        body = build_request(self.vendor, operation, ContextsRequest, {"contexts": list(contexts)})
        response = self.request(
            method,
            path,
            operation=operation,
            path_params={key_name: key},
            params=self._partner_params(operation, required=True),
            json=body.model_dump(mode="json"),
            idempotent=True,
        )
        return self.parse(response, ContextTargeting, operation)

    # -- errors and helpers --------------------------------------------------------------------------------
    def error_details(self, response: httpx.Response) -> tuple[str | None, str | None]:
        """Stream's error body. Not published: the emulator sends ``{"error", "error_description"}`` (ours);
        a NestJS-style ``{"statusCode", "message", "error"}`` (message may be a list) is read too.
        """
        try:
            body = response.json()
        except ValueError:
            return super().error_details(response)
        if not isinstance(body, dict):
            return None, None
        code = body.get("code") or body.get("error")
        detail = body.get("error_description") or body.get("message") or body.get("detail")
        if isinstance(detail, list):
            detail = "; ".join(str(d) for d in detail)
        return (str(code) if code else None), (str(detail) if detail else None)

    def _partner_params(self, operation: str = "", required: bool = False) -> dict[str, str]:
        if self.partner_id:
            return {"partner_id": self.partner_id}
        if required:
            raise RequestInvalid(
                self.vendor, operation, "invalid request: partner_id: the client has no partner_id"
            )
        return {}

    def _require(self, operation: str, **values: str) -> None:
        for name, value in values.items():
            if not value:
                raise RequestInvalid(self.vendor, operation, f"invalid request: {name}: must not be empty")


__all__ = [
    "ALL_SCOPES",
    "DEFAULT_SCOPES",
    "SIGNATURE_HEADER",
    "Address",
    "BindLocation",
    "BoundLocation",
    "Context",
    "ContextInfo",
    "ContextTargeting",
    "CreatedOrganization",
    "DSPConnection",
    "FlagEvaluation",
    "IngestedLocation",
    "MenuAssignment",
    "Onboarding",
    "OnboardingLocation",
    "OrgLocation",
    "OrgUser",
    "Organization",
    "PartnerToken",
    "SSORedemption",
    "SSOSession",
    "IntegrationType",
    "Scope",
    "StreamClient",
    "TokenInfo",
    "TokenRequest",
    "TokenResponse",
    "verify_webhook_signature",
    "webhook_signature",
]
