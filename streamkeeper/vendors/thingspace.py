"""Verizon ThingSpace Cloud Connector: typed models and a client for targets and subscriptions.

Auth is two tokens (doc): an OAuth2 client-credentials bearer from ``POST /api/ts/v1/oauth2/token`` (Basic
``app_key:app_secret``, valid one hour) and a VZ-M2M session token from ``POST /api/m2m/v1/session/login``
(expires after 20 minutes without use), ended by ``POST /api/m2m/v1/session/logout`` (`logout`). Every Cloud
Connector call sends both headers (seed). The two are kept together in one `TokenAuth` token (the session
token rides in ``Token.extra``), so they are fetched, refreshed 60 s before expiry and refreshed once on a
401 as one. The session API answers its errors as 400 ``{errorCode, errorMessage}`` (doc: Verizon's SDK); a
refused login is an `AuthenticationFailed` all the same.

Cloud Connector (base ``/api/cc/v1``): a target says where events go (``streamrest``: an HTTPS receiver,
optionally with Basic or OAuth2 credentials; ``streamawsiot``; ``streamawssqs``, ours), a subscription says
which kind of events go there. A target must exist before its subscription, and an account holds at most one
subscription per ``streamkind`` (seed).

Example:
    ```python
    client = ThingSpaceClient(url, app_key=..., app_secret=SecretStr(...), username=...,
                              password=SecretStr(...), account_name="0000000000-00001")
    target = client.create_target(CreateTargetRequest.streamrest(
        "receiver", "https://events.example.com:8443", username="ts", password=SecretStr("...")))
    client.create_subscription({"streamkind": "ts.event", "targetid": target.id, "allowaggregation": False})
    ```
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar, Literal, TypeVar, get_args

import httpx
from pydantic import BaseModel, Field, SecretStr, model_validator

from streamkeeper.vendors.http import (
    AuthenticationFailed,
    HeaderAuth,
    NotFound,
    RequestInvalid,
    RequestModel,
    Token,
    TokenAuth,
    VendorClient,
    VendorHTTPError,
    VendorModel,
    basic_auth,
    bearer,
    build_request,
    register_secret,
)

StreamKind = Literal["ts.event", "ts.event.diagnostics", "ts.event.configuration", "ts.event.security"]
STREAM_KINDS: tuple[str, ...] = get_args(StreamKind)
"""The four stream kinds (seed); an account holds at most one subscription of each."""

AddressScheme = Literal["streamrest", "streamawsiot", "streamawssqs"]
"""What the spec provisions: ``streamrest`` and ``streamawsiot`` (doc); ``streamawssqs`` (ours: into SQS)."""
TargetScheme = Literal["streamrest", "streamawsiot", "streamazureiot", "streamawssqs"]
"""Every scheme a target can have: `AddressScheme` and ``streamazureiot`` (doc: the SDK's Create Target example,
an Azure IoT Central application URL with a ``SharedAccessSignature`` Authorization header)."""

TOKEN_PATH = "/api/ts/v1/oauth2/token"
REVOKE_PATH = "/api/ts/v1/oauth2/revoke"  # ours: the doc shows a revoke request, its URL is cut in our copy
LOGIN_PATH = "/api/m2m/v1/session/login"
LOGOUT_PATH = "/api/m2m/v1/session/logout"
CC_BASE = "/api/cc/v1"
SESSION_HEADER = "VZ-M2M-Token"
SESSION_IDLE_SECONDS = 20 * 60
"""A session token expires after 20 minutes without use (doc); we renew it at least that often."""

_SESSION_KEY = "session"
_REFRESH_MARGIN = 60.0
R = TypeVar("R", bound=RequestModel)
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


# -- requests -------------------------------------------------------------------------------------------------
class AccountIdentifier(RequestModel):
    """The authenticating billing account, ``{"billingaccountid": "1234567890-12345"}``."""

    billingaccountid: str = Field(min_length=1, max_length=64)


class ResourceIdentifier(RequestModel):
    """Which resource a query or delete is about."""

    id: str = Field(pattern=_UUID)


class TargetFields(RequestModel):
    """Extra target settings: HTTP headers sent to the receiver (secret) and device types."""

    httpheaders: dict[str, SecretStr] | None = None
    devicetypes: list[str] | None = None


class TargetOAuthHost(RequestModel):
    hostandpath: str = Field(min_length=1, description="Token endpoint of the receiver's OAuth2 server.")


class TargetOAuthBody(RequestModel):
    """How ThingSpace gets an OAuth2 token for the receiver (doc: SDK ``TargetAuthenticationBody``)."""

    grant_type: Literal["refresh_token", "client_credentials"] = "refresh_token"
    refresh_token: SecretStr | None = None
    headers: dict[str, SecretStr] | None = None
    host: TargetOAuthHost
    scope: str | None = None


class TargetOAuth(RequestModel):
    body: TargetOAuthBody
    version: str = "1.0"


class CreateTargetRequest(RequestModel):
    """``POST /targets``: where a subscription's events go.

    Receiver credentials (``streamrest`` only) are secrets: Basic auth goes in ``fields.httpheaders``
    (``Authorization: Basic ...``), a fixed bearer token in ``key1``, an OAuth2 refresh flow in ``oauth``.
    Use `streamrest`, `streamawsiot` or `streamawssqs` to build one.
    """

    accountidentifier: AccountIdentifier | None = None
    billingaccountid: str | None = None
    kind: Literal["ts.target"] = "ts.target"
    name: str = Field(min_length=1, max_length=256)  # ours: required, so a lost create can be found again
    description: str | None = None
    address: str = Field(min_length=1, max_length=2048)
    addressscheme: TargetScheme
    region: str | None = None
    externalid: str | None = None
    fields: TargetFields | None = None
    key1: SecretStr | None = None
    oauth: TargetOAuth | None = None

    @model_validator(mode="after")
    def _credentials_for_streamrest_only(self) -> CreateTargetRequest:
        has_headers = bool(self.fields and self.fields.httpheaders)
        if self.addressscheme not in ("streamrest", "streamazureiot") and has_headers:
            raise ValueError("httpheaders are for streamrest and streamazureiot targets only")
        if self.addressscheme != "streamrest" and (self.key1 or self.oauth):
            raise ValueError("receiver credentials (key1, oauth) are for streamrest targets only")
        if sum(bool(x) for x in (has_headers, self.key1, self.oauth)) > 1:
            raise ValueError("give one kind of receiver credentials: httpheaders, key1 or oauth")
        return self

    @classmethod
    def streamrest(
        cls,
        name: str,
        address: str,
        *,
        username: str | None = None,
        password: SecretStr | None = None,
        bearer_token: SecretStr | None = None,
        oauth: TargetOAuth | Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> CreateTargetRequest:
        """A REST receiver at ``host:port`` (or an https URL), optionally with Basic or OAuth2 credentials.

        Raises:
            RequestInvalid: a value is invalid (the field is named, the value is not shown).
        """
        fields = None
        if username is not None or password is not None:
            if username is None or password is None:
                raise RequestInvalid(
                    "thingspace", "create_target", "Basic credentials need a username and a password"
                )
            encoded = base64.b64encode(f"{username}:{password.get_secret_value()}".encode()).decode()
            fields = {"httpheaders": {"Authorization": SecretStr(f"Basic {encoded}")}}
        return cls._validated(
            name=name,
            address=address,
            addressscheme="streamrest",
            description=description,
            fields=fields,
            key1=bearer_token,
            oauth=oauth,
        )

    @classmethod
    def streamawsiot(
        cls, name: str, arn: str, *, region: str, externalid: str, description: str | None = None
    ) -> CreateTargetRequest:
        """An AWS IoT target: a role ARN, its region and an external id from `new_external_id`."""
        return cls._validated(
            name=name,
            address=arn,
            addressscheme="streamawsiot",
            region=region,
            externalid=externalid,
            description=description,
        )

    @classmethod
    def streamazureiot(
        cls,
        name: str,
        application_url: str,
        *,
        shared_access_signature: SecretStr,
        devicetypes: list[str] | None = None,
        description: str | None = None,
    ) -> CreateTargetRequest:
        """An Azure IoT Central application (doc): its https URL and a ``SharedAccessSignature ...`` token."""
        token = shared_access_signature.get_secret_value()
        header = token if token.startswith("SharedAccessSignature ") else f"SharedAccessSignature {token}"
        fields: dict[str, Any] = {"httpheaders": {"Authorization": SecretStr(header)}}
        if devicetypes:
            fields["devicetypes"] = list(devicetypes)
        return cls._validated(
            name=name,
            address=application_url,
            addressscheme="streamazureiot",
            fields=fields,
            description=description,
        )

    @classmethod
    def streamawssqs(
        cls, name: str, queue_url: str, *, region: str | None = None, description: str | None = None
    ) -> CreateTargetRequest:
        """An SQS queue target (ours): the queue URL and its region."""
        return cls._validated(
            name=name, address=queue_url, addressscheme="streamawssqs", region=region, description=description
        )

    @classmethod
    def _validated(cls, **values: Any) -> CreateTargetRequest:
        given = {k: v for k, v in values.items() if v is not None}
        return build_request("thingspace", "create_target", cls, given)


class CreateSubscriptionRequest(RequestModel):
    """``POST /subscriptions`` (seed): which events go to which target."""

    accountidentifier: AccountIdentifier | None = None
    billingaccountid: str | None = None
    name: str | None = Field(None, max_length=256)
    description: str | None = None
    disabled: bool | None = None
    email: str | None = None
    filter: str | None = None
    streamkind: StreamKind
    targetid: str = Field(pattern=_UUID)
    allowaggregation: bool


class UpdateSubscriptionRequest(RequestModel):
    """``PATCH /subscriptions``: the subscription's id plus the properties to change (doc)."""

    accountidentifier: AccountIdentifier | None = None
    id: str = Field(pattern=_UUID)
    name: str | None = Field(None, max_length=256)
    description: str | None = None
    disabled: bool | None = None
    email: str | None = None
    filter: str | None = None
    streamkind: StreamKind | None = None
    targetid: str | None = Field(None, pattern=_UUID)
    allowaggregation: bool | None = None


class QueryRequest(RequestModel):
    """``POST .../actions/query``: by id, by ``$selection`` (property -> value), or everything."""

    accountidentifier: AccountIdentifier | None = None
    resourceidentifier: ResourceIdentifier | None = None
    selection: dict[str, str] | None = Field(None, alias="$selection")


class DeleteRequest(RequestModel):
    """``POST .../actions/delete``."""

    accountidentifier: AccountIdentifier | None = None
    resourceidentifier: ResourceIdentifier


class ExternalIdRequest(RequestModel):
    """``POST /targets/actions/newextid``."""

    accountidentifier: AccountIdentifier | None = None


# -- responses ------------------------------------------------------------------------------------------------
class AccessToken(VendorModel):
    access_token: SecretStr
    token_type: str = "Bearer"
    expires_in: int = 3600
    scope: str | None = None


class SessionLogin(VendorModel):
    sessionToken: SecretStr
    expiresIn: int | None = None


class Target(VendorModel):
    """A target as ThingSpace holds it (it never returns receiver credentials)."""

    id: str
    kind: str | None = None
    name: str | None = None
    description: str | None = None
    address: str | None = None
    addressscheme: str | None = None
    billingaccountid: str | None = None
    region: str | None = None
    externalid: str | None = None
    createdon: datetime | None = None
    lastupdated: datetime | None = None
    version: str | None = None
    versionid: str | None = None


class Subscription(VendorModel):
    """A subscription as ThingSpace holds it (seed fields)."""

    id: str
    kind: str | None = None
    name: str | None = None
    description: str | None = None
    streamkind: str
    targetid: str | None = None
    targettype: str | None = None
    disabled: bool | None = None
    email: str | None = None
    filter: str | None = None
    allowaggregation: bool | None = None
    billingaccountid: str | None = None
    configurationfailures: int | None = None
    networkfailures: int | None = None
    streamfailures: int | None = None
    laststreamingstatus: str | None = None
    laststreamingtime: datetime | None = None
    createdon: datetime | None = None
    lastupdated: datetime | None = None
    delegateid: str | None = None
    version: str | None = None
    versionid: str | None = None


class ExternalId(VendorModel):
    externalid: str


M = TypeVar("M", Target, Subscription)


# -- client ---------------------------------------------------------------------------------------------------
class ThingSpaceClient(VendorClient):
    """Client of the ThingSpace Cloud Connector API for one billing account.

    Args:
        base_url: API root, e.g. ``https://thingspace.verizon.com``.
        app_key: ThingSpace application key.
        app_secret: its secret (Basic auth of the token request).
        username: UWS user name for the VZ-M2M session.
        password: UWS password.
        account_name: the billing account id used when a call does not name one.
        clock: time source for token expiry (tests).
        **kwargs: passed to `VendorClient` (timeout, verify, transport, retry, recorder, ...).
    """

    vendor: ClassVar[str] = "thingspace"

    def __init__(
        self,
        base_url: str,
        *,
        app_key: str,
        app_secret: SecretStr,
        username: str,
        password: SecretStr,
        account_name: str,
        clock: Callable[[], float] = time.time,
        **kwargs: Any,
    ) -> None:
        register_secret(password.get_secret_value())
        self.account_name = account_name
        self._username = username
        self._password = password
        self._app_auth = basic_auth(app_key, app_secret)
        register_secret(base64.b64encode(f"{app_key}:{app_secret.get_secret_value()}".encode()).decode())
        self._clock = clock
        self.token_auth = TokenAuth(
            self._fetch_tokens, apply=_apply_tokens, refresh_margin=_REFRESH_MARGIN, clock=clock
        )
        super().__init__(base_url, auth=self.token_auth, **kwargs)

    # -- auth --------------------------------------------------------------------------------------------------
    def authenticate(self) -> None:
        """Get a bearer token and a session now (checks the credentials); raises `AuthenticationFailed`."""
        self.token_auth.current()

    def _fetch_tokens(self, stale: Token | None) -> Token:
        access = self._access_token()
        if access.expires_in <= _REFRESH_MARGIN:
            # The vendor hands back the same token for the rest of its hour (doc); one about to expire is
            # revoked so that the next request gets a fresh one, instead of refreshing on every call.
            self._revoke(access.access_token)
            access = self._access_token()
        login = self._login(access.access_token)
        lifetime = min(access.expires_in, login.expiresIn or SESSION_IDLE_SECONDS, SESSION_IDLE_SECONDS)
        return Token(
            value=access.access_token,
            expires_at=self._clock() + lifetime,
            extra={_SESSION_KEY: login.sessionToken},
        )

    def _access_token(self) -> AccessToken:
        response = self.request(
            "POST",
            TOKEN_PATH,
            operation="get_token",
            data={"grant_type": "client_credentials"},
            auth=self._app_auth,
            idempotent=True,
        )
        access = self.parse(response, AccessToken, "get_token")
        register_secret(access.access_token.get_secret_value())
        return access

    def _revoke(self, token: SecretStr) -> None:
        self.request(
            "POST",
            REVOKE_PATH,
            operation="revoke_token",
            data={"grant_type": "client_credentials", "token": token.get_secret_value()},
            auth=self._app_auth,
            idempotent=True,
        )

    def _login(self, access_token: SecretStr) -> SessionLogin:
        try:
            response = self.request(
                "POST",
                LOGIN_PATH,
                operation="login",
                json={"username": self._username, "password": self._password.get_secret_value()},
                auth=HeaderAuth("Authorization", SecretStr(f"Bearer {access_token.get_secret_value()}")),
                idempotent=True,
            )
        except VendorHTTPError as exc:
            if exc.status != 400:
                raise
            # doc: the session API refuses a login with 400 {errorCode, errorMessage}
            raise AuthenticationFailed(exc.vendor, exc.operation, exc.status, exc.code, exc.detail) from None
        login = self.parse(response, SessionLogin, "login")
        register_secret(login.sessionToken.get_secret_value())
        return login

    def logout(self) -> bool:
        """End the VZ-M2M session, if one is open (``POST /api/m2m/v1/session/logout``, doc).

        Returns whether a session was ended; the next call logs in again. The bearer token stays valid.
        """
        token = self.token_auth.token
        if token is None:
            return False
        self.token_auth.invalidate()
        headers = {SESSION_HEADER: token.extra[_SESSION_KEY].get_secret_value()}
        try:
            self.request(
                "POST",
                LOGOUT_PATH,
                operation="logout",
                headers=headers,
                auth=HeaderAuth("Authorization", SecretStr(f"Bearer {token.value.get_secret_value()}")),
                idempotent=True,
            )
        except VendorHTTPError as exc:
            if exc.status == 400:  # the session had ended already (expired, or logged out)
                return False
            raise
        return True

    # -- targets -----------------------------------------------------------------------------------------------
    def create_target(
        self, target: CreateTargetRequest | Mapping[str, Any], *, account: str | None = None
    ) -> Target:
        """Create a target; a create whose answer was lost is found by name, address and scheme, not repeated."""
        request = self._build("create_target", CreateTargetRequest, target, account)

        def do_create() -> Target:
            response = self.request(
                "POST", f"{CC_BASE}/targets", operation="create_target", json=_wire(request)
            )
            return self.parse(response, Target, "create_target")

        def lookup() -> Target | None:
            found = [
                t
                for t in self.query_targets(selection={"name": request.name}, account=_account_of(request))
                if t.name == request.name
                and t.address == request.address
                and t.addressscheme == request.addressscheme
            ]
            return _newest(found)

        return self.create("create_target", do_create, lookup)

    def query_targets(
        self,
        *,
        target_id: str | None = None,
        selection: Mapping[str, str] | None = None,
        account: str | None = None,
    ) -> list[Target]:
        """Targets of the account: all, one by id, or those whose properties equal `selection`."""
        request = self._query("query_targets", target_id, selection, account)
        response = self.request(
            "POST",
            f"{CC_BASE}/targets/actions/query",
            operation="query_targets",
            json=_wire(request),
            idempotent=True,
        )
        return self.parse(response, list[Target], "query_targets")

    def delete_target(self, target_id: str, *, account: str | None = None, missing_ok: bool = False) -> None:
        """Delete a target (refused with `Conflict` while a subscription uses it).

        `missing_ok` turns `NotFound` into success (also the case of a retried delete whose answer was lost).
        """
        self._delete("delete_target", f"{CC_BASE}/targets/actions/delete", target_id, account, missing_ok)

    def new_external_id(self, *, account: str | None = None) -> str:
        """A new external id, the string ThingSpace passes to AWS when it assumes a ``streamawsiot`` role."""
        request = self._build("new_external_id", ExternalIdRequest, {}, account)
        response = self.request(
            "POST",
            f"{CC_BASE}/targets/actions/newextid",
            operation="new_external_id",
            json=_wire(request),
            idempotent=True,  # a second id is harmless: only the one put in a target is used
        )
        return self.parse(response, ExternalId, "new_external_id").externalid

    # -- subscriptions -----------------------------------------------------------------------------------------
    def create_subscription(
        self, subscription: CreateSubscriptionRequest | Mapping[str, Any], *, account: str | None = None
    ) -> Subscription:
        """Create a subscription; its target must exist, and its `streamkind` must be free in the account.

        A create whose answer was lost is found again (same streamkind, target and name), not repeated.
        """
        request = self._build("create_subscription", CreateSubscriptionRequest, subscription, account)

        def do_create() -> Subscription:
            response = self.request(
                "POST", f"{CC_BASE}/subscriptions", operation="create_subscription", json=_wire(request)
            )
            return self.parse(response, Subscription, "create_subscription")

        def lookup() -> Subscription | None:
            found = [
                s
                for s in self.query_subscriptions(
                    selection={"streamkind": request.streamkind}, account=_account_of(request)
                )
                if s.streamkind == request.streamkind
                and s.targetid == request.targetid
                and (request.name is None or s.name == request.name)
            ]
            return _newest(found)

        return self.create("create_subscription", do_create, lookup)

    def query_subscriptions(
        self,
        *,
        subscription_id: str | None = None,
        selection: Mapping[str, str] | None = None,
        account: str | None = None,
    ) -> list[Subscription]:
        """Subscriptions of the account: all, one by id, or those whose properties equal `selection`."""
        request = self._query("query_subscriptions", subscription_id, selection, account)
        response = self.request(
            "POST",
            f"{CC_BASE}/subscriptions/actions/query",
            operation="query_subscriptions",
            json=_wire(request),
            idempotent=True,
        )
        return self.parse(response, list[Subscription], "query_subscriptions")

    def update_subscription(
        self, update: UpdateSubscriptionRequest | Mapping[str, Any], *, account: str | None = None
    ) -> Subscription:
        """Change properties of a subscription (its ``id`` plus the fields to change)."""
        request = self._build("update_subscription", UpdateSubscriptionRequest, update, account)
        response = self.request(
            "PATCH",
            f"{CC_BASE}/subscriptions",
            operation="update_subscription",
            json=_wire(request),
            idempotent=True,  # it sets values: sending it twice leaves the same state
        )
        return self.parse(response, Subscription, "update_subscription")

    def delete_subscription(
        self, subscription_id: str, *, account: str | None = None, missing_ok: bool = False
    ) -> None:
        """Delete a subscription; `missing_ok` turns `NotFound` into success."""
        path = f"{CC_BASE}/subscriptions/actions/delete"
        self._delete("delete_subscription", path, subscription_id, account, missing_ok)

    # -- errors ------------------------------------------------------------------------------------------------
    def error_details(self, response: httpx.Response) -> tuple[str | None, str | None]:
        """``{"error", "error_description", "cause"}`` (seed), or the gateway's ``{"fault": {...}}`` (doc)."""
        try:
            body = response.json()
        except ValueError:
            return super().error_details(response)
        if isinstance(body, dict) and isinstance(body.get("fault"), dict):
            fault = body["fault"]
            code = fault.get("code")
            detail = ": ".join(str(fault[k]) for k in ("message", "description") if fault.get(k))
            return (str(code) if code is not None else None), detail or None
        if isinstance(body, dict) and body.get("errorCode"):  # the session API (doc: Verizon's SDK)
            return str(body["errorCode"]), (str(body["errorMessage"]) if body.get("errorMessage") else None)
        if isinstance(body, dict) and body.get("error"):
            detail = str(body.get("error_description") or "")
            if body.get("cause"):
                detail = f"{detail} (cause: {body['cause']})" if detail else f"cause: {body['cause']}"
            return str(body["error"]), detail or None
        return super().error_details(response)

    # -- helpers -----------------------------------------------------------------------------------------------
    def _build(self, operation: str, model: type[R], data: R | Mapping[str, Any], account: str | None) -> R:
        """Validate a request, putting in the billing account when it names none."""
        identifier = {"billingaccountid": account or self.account_name}
        if isinstance(data, model):
            if getattr(data, "accountidentifier", None) is None:
                return data.model_copy(update={"accountidentifier": AccountIdentifier(**identifier)})
            return data
        body = dict(data)
        if body.get("accountidentifier") is None:
            body["accountidentifier"] = identifier
        return build_request(self.vendor, operation, model, body)

    def _query(
        self,
        operation: str,
        resource_id: str | None,
        selection: Mapping[str, str] | None,
        account: str | None,
    ) -> QueryRequest:
        body: dict[str, Any] = {}
        if resource_id is not None:
            body["resourceidentifier"] = {"id": resource_id}
        if selection:
            body["$selection"] = dict(selection)
        return self._build(operation, QueryRequest, body, account)

    def _delete(
        self, operation: str, path: str, resource_id: str, account: str | None, missing_ok: bool
    ) -> None:
        request = self._build(operation, DeleteRequest, {"resourceidentifier": {"id": resource_id}}, account)
        try:
            self.request("POST", path, operation=operation, json=_wire(request), idempotent=True)
        except NotFound:
            if not missing_ok:
                raise


def _apply_tokens(request: httpx.Request, token: Token) -> None:
    """Both tokens on every Cloud Connector call (seed)."""
    bearer(request, token)
    request.headers[SESSION_HEADER] = token.extra[_SESSION_KEY].get_secret_value()


def _wire(model: BaseModel) -> dict[str, Any]:
    """The JSON body of a request: vendor field names, no nulls, secrets unwrapped (and registered)."""
    return _unwrap(model.model_dump(mode="python", by_alias=True, exclude_none=True))


def _unwrap(value: Any) -> Any:
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        register_secret(secret)
        scheme, _, credential = secret.partition(" ")
        if scheme in ("Basic", "Bearer") and credential:
            register_secret(credential)
        return secret
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def _account_of(request: CreateTargetRequest | CreateSubscriptionRequest) -> str | None:
    return request.accountidentifier.billingaccountid if request.accountidentifier else None


def _newest(found: list[M]) -> M | None:
    if not found:
        return None
    return max(found, key=lambda r: r.createdon.timestamp() if r.createdon else 0.0)


__all__ = [
    "STREAM_KINDS",
    "AccessToken",
    "AccountIdentifier",
    "AddressScheme",
    "CreateSubscriptionRequest",
    "CreateTargetRequest",
    "DeleteRequest",
    "ExternalIdRequest",
    "QueryRequest",
    "ResourceIdentifier",
    "SessionLogin",
    "StreamKind",
    "Subscription",
    "Target",
    "TargetFields",
    "TargetOAuth",
    "TargetOAuthBody",
    "TargetOAuthHost",
    "TargetScheme",
    "ThingSpaceClient",
    "UpdateSubscriptionRequest",
]
