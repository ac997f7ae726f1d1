"""Equinix SmartView streams: typed models and a client for both generations of the subscription API.

- **streams** (the seed, ``/smartview/v2/streams/subscriptions``): one subscription per organisation. The
  list GET answers that one object (not an array), DELETE without an id closes it. The body lists event
  families (``alarm, alert, asset, environment, power``), each a list of ``{accountNo, ibx, ...filters}``,
  and a ``config`` saying how events are delivered (``PULL|PUSH`` through a provider).
- **streaming** (the current API, ``/smartview/v2/streaming/subscriptions``): several subscriptions per
  organisation, all on one channel type; create answers 201 with a ``Location``, update and delete 204.
  ``/smartview/v2/streaming/subscriptionData/{id}`` serves the messages of a subscription by
  ``offset``/``limit`` (`iter_subscription_data` pages through it from a stored cursor).

The current API follows Equinix's published definition (its Go SDK repository): channel types
``AWS_IOT_CORE | WEBHOOK | AZURE`` with the webhook's bounds, string reading and power values, heartbeats in
``data`` (the prose docs' form beside it parses too). Both APIs can answer 2xx for a subscription they
refuse (seed: ``errors[]`` and a ``status`` on a 200; streaming: FAILED): creates and updates raise
`SubscriptionRefused`, and `problem` says what is wrong with a held one.

Auth is OAuth2 client credentials (``POST /oauth2/v1/token``, no refresh token): `TokenAuth` caches the
token, renews it 60 s before ``token_timeout`` runs out, and once more on a 401. The token API refuses with
400 (the definition), raised as `AuthenticationFailed`.

Secrets: the client secret, the ``config.token`` of a streams subscription and the Azure connection
strings are `SecretStr` here and registered for redaction; the token is unwrapped only into the request
body (`StreamsSubscriptionRequest.to_body`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar, get_args

import httpx
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.alias_generators import to_camel

from streamkeeper.vendors.http import (
    AuthenticationFailed,
    MalformedResponse,
    NotFound,
    RequestModel,
    Token,
    TokenAuth,
    VendorClient,
    VendorError,
    VendorHTTPError,
    VendorModel,
    build_request,
    register_secret,
)
from streamkeeper.vendors.http.paginate import Page, offset_pages

VENDOR = "equinix"
DEFAULT_BASE_URL = "https://api.equinix.com"
TOKEN_PATH = "/oauth2/v1/token"
STREAMS_PATH = "/smartview/v2/streams/subscriptions"
STREAMING_PATH = "/smartview/v2/streaming/subscriptions"
DATA_PATH = "/smartview/v2/streaming/subscriptionData/{id}"
DEFAULT_PAGE_SIZE = 250  # doc: subscriptionData answers 250 items when no limit is given

ApiGeneration = Literal["streams", "streaming"]
R = TypeVar("R", bound=RequestModel)

AlarmType = Literal["ABSOLUTE", "DEVIATION", "DIGITAL", "MULTI_STATE"]
AssetClassification = Literal["ELECTRICAL", "MECHANICAL", "ENVIRONMENTAL", "POWER"]
ConditionName = Literal["ALARM", "HIGH", "HIGH_HIGH", "LOW", "LOW_LOW", "WARNING"]
Region = Literal["AMER", "EMEA", "APAC"]
Granularity = Literal["IBX", "ZONE", "CAGE"]
Method = Literal["PULL", "PUSH"]
Provider = Literal["GOOGLE", "AWS", "AWS_IOT", "AZURE", "KAFKA"]
# doc (the published definition): the channel types; subscriptionData serves every channel's messages
ChannelType = Literal["AWS_IOT_CORE", "WEBHOOK", "AZURE"]
CHANNEL_TYPES: tuple[str, ...] = get_args(ChannelType)
# doc (the definition): the current API's asset filter has no POWER classification
StreamingAssetClassification = Literal["ELECTRICAL", "MECHANICAL", "ENVIRONMENTAL"]
BatchSize = Annotated[int, Field(ge=5, le=20)]  # doc: the webhook and Azure channels' bounds
ConcurrentCalls = Annotated[int, Field(ge=20, le=50)]
Retries = Annotated[int, Field(ge=1, le=5)]
OK_STATUS = "OK"  # seed: the status of an accepted streams subscription
FAILED_STATUS = "FAILED"  # doc: a streaming subscription that failed
MessageTypeFilter = Literal["ALARM", "ALERT", "ENVIRONMENTAL", "METERED_POWER", "POWER", "TAG_POINT"]

STREAMS_FAMILIES = ("alarm", "alert", "asset", "environment", "power")
STREAMING_FAMILIES = ("asset", "environmental", "power", "metered_power", "system_alert", "custom_alert")
_GONE = frozenset({"DELETED", "DELETE_IN_PROGRESS"})


class _Request(RequestModel):
    model_config = ConfigDict(alias_generator=to_camel)

    def to_body(self) -> dict[str, Any]:
        """The JSON body in the vendor's field names (secrets stay masked; see subclasses)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class _Answer(VendorModel):
    model_config = ConfigDict(alias_generator=to_camel)


# -- the seed API ("streams") ------------------------------------------------------------------------------
class _StreamsFilter(_Request):
    account_no: str = Field(min_length=1, description="Customer account number, e.g. 133724.")
    ibx: str = Field(min_length=1, description="IBX code, e.g. PA4.")


class StreamsAlarmFilter(_StreamsFilter):
    """Alarm events of one account at one IBX."""

    alarm_type: list[AlarmType] | None = None
    asset_classification: list[AssetClassification] | None = None
    condition_name: list[ConditionName] | None = None
    region: list[Region] | None = None

    @field_validator("region", mode="before")
    @classmethod
    def _one_region(cls, value: object) -> object:
        # the seed describes region as a string but shows an array: accept both, send an array
        return [value] if isinstance(value, str) else value


class StreamsAlertFilter(_StreamsFilter):
    """Alert events of one account at one IBX."""


class StreamsAssetFilter(_StreamsFilter):
    """Asset events of one account at one IBX."""

    classification: list[AssetClassification] | None = None


class StreamsEnvironmentFilter(_StreamsFilter):
    """Environment events of one account at one IBX."""

    granularity: list[Granularity] | None = None


class StreamsPowerFilter(_StreamsFilter):
    """Power events of one account at one IBX."""


class StreamsConfig(_Request):
    """How the events of a streams subscription are delivered."""

    method: Method | None = None
    provider: Provider | None = None
    region: str | None = None
    role_arn_to_assume: str | None = None
    subscription: str | None = None
    token: SecretStr | None = Field(default=None, description="Token the pub/sub layer sends with a push.")
    url: str | None = None

    def model_post_init(self, context: Any) -> None:
        if self.token is not None:
            register_secret(self.token.get_secret_value())

    @model_validator(mode="after")
    def _push_needs_url(self) -> StreamsConfig:
        if self.method == "PUSH" and not self.url:
            raise ValueError("url is required when method is PUSH")  # ours: where else would it push?
        return self


class StreamsSubscriptionRequest(_Request):
    """The body of a streams (seed API) create or update."""

    alarm: list[StreamsAlarmFilter] = Field(default_factory=list)
    alert: list[StreamsAlertFilter] = Field(default_factory=list)
    asset: list[StreamsAssetFilter] = Field(default_factory=list)
    environment: list[StreamsEnvironmentFilter] = Field(default_factory=list)
    power: list[StreamsPowerFilter] = Field(default_factory=list)
    config: StreamsConfig | None = None

    @model_validator(mode="after")
    def _some_family(self) -> StreamsSubscriptionRequest:
        if not any(getattr(self, family) for family in STREAMS_FAMILIES):
            raise ValueError(f"subscribe to at least one of {', '.join(STREAMS_FAMILIES)}")  # ours
        return self

    def to_body(self) -> dict[str, Any]:
        """The JSON body to send: the only place the config token is unwrapped."""
        body = super().to_body()
        if self.config is not None and self.config.token is not None:
            body["config"]["token"] = self.config.token.get_secret_value()
        return body

    def comparable(self) -> dict[str, Any]:
        """The body without the config token, to compare with what the vendor answers."""
        body = super().to_body()
        body.get("config", {}).pop("token", None)
        return body


class StreamsFilterInfo(_Answer):
    """An event-family filter as the vendor reports it."""

    account_no: str | None = None
    ibx: str | None = None


class StreamsConfigInfo(_Answer):
    """A subscription's delivery configuration as the vendor reports it."""

    method: str | None = None
    provider: str | None = None
    region: str | None = None
    role_arn_to_assume: str | None = None
    subscription: str | None = None
    token: SecretStr | None = None
    url: str | None = None


class StreamsErrorInfo(_Answer):
    """One entry of a streams subscription's ``errors``."""

    code: str | None = None
    message: str | None = None
    more_info: str | None = Field(default=None, alias="more_info")
    data: dict[str, Any] | None = None


class StreamsSubscription(_Answer):
    """A streams (seed API) subscription: one per organisation."""

    subscription_id: str
    subscription_name: str | None = None
    status: str | None = None
    alarm: list[StreamsFilterInfo] = Field(default_factory=list)
    alert: list[StreamsFilterInfo] = Field(default_factory=list)
    asset: list[StreamsFilterInfo] = Field(default_factory=list)
    environment: list[StreamsFilterInfo] = Field(default_factory=list)
    power: list[StreamsFilterInfo] = Field(default_factory=list)
    config: StreamsConfigInfo | None = None
    errors: list[StreamsErrorInfo] = Field(default_factory=list)
    connection_string: SecretStr | None = None  # Azure: holds a shared access key
    manage_connection_string: SecretStr | None = None

    def model_post_init(self, context: Any) -> None:
        for secret in (self.connection_string, self.manage_connection_string):
            if secret is not None:
                register_secret(secret.get_secret_value())


# -- the current API ("streaming") -------------------------------------------------------------------------
class _StreamingFilter(_Request):
    account_number: str = Field(min_length=1, description="Customer account number, e.g. 135888.")
    ibx: list[str] = Field(min_length=1, description="IBX codes, e.g. [DE2].")


class StreamingAssetFilter(_StreamingFilter):
    """Asset messages of one account."""

    asset_classification: list[StreamingAssetClassification] | None = Field(default=None, min_length=1)
    asset_id: list[str] | None = Field(default=None, min_length=1)


class StreamingEnvironmentalFilter(_StreamingFilter):
    """Environmental messages of one account."""

    level: list[Granularity] | None = Field(default=None, min_length=1, max_length=3)


class StreamingFilter(_StreamingFilter):
    """Power, metered-power or system-alert messages of one account."""


class StreamingCustomAlertFilter(_StreamingFilter):
    """Custom-alert messages of one account."""

    user: str | None = None


class StreamingMessageTypes(_Request):
    """Which messages a streaming subscription carries."""

    asset: list[StreamingAssetFilter] = Field(default_factory=list)
    environmental: list[StreamingEnvironmentalFilter] = Field(default_factory=list)
    power: list[StreamingFilter] = Field(default_factory=list)
    metered_power: list[StreamingFilter] = Field(default_factory=list)
    system_alert: list[StreamingFilter] = Field(default_factory=list)
    custom_alert: list[StreamingCustomAlertFilter] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some_type(self) -> StreamingMessageTypes:
        if not any(getattr(self, family) for family in STREAMING_FAMILIES):
            names = ", ".join(to_camel(f) for f in STREAMING_FAMILIES)
            raise ValueError(f"subscribe to at least one of {names}")  # ours
        return self


class AwsIotCoreChannelConfiguration(_Request):
    """Where an AWS IoT Core channel publishes."""

    url: str = Field(min_length=1)


class WebhookChannelConfiguration(_Request):
    """Where and how a webhook channel posts (doc: mutual TLS; `ssl_certificate` is the receiver's
    certificate, base64, which Equinix checks the endpoint against)."""

    url: str = Field(min_length=1)
    batch_size: BatchSize | None = None
    number_of_concurrent_calls: ConcurrentCalls | None = None
    number_of_retries: Retries | None = None
    ssl_certificate: str | None = None


class AzureChannelConfiguration(_Request):
    """How an Azure Event Hub channel delivers."""

    batch_size: BatchSize | None = None
    number_of_concurrent_calls: ConcurrentCalls | None = None
    number_of_retries: Retries | None = None


_CHANNEL_CONFIG: dict[str, str] = {
    "AWS_IOT_CORE": "aws_iot_core_channel_configuration",
    "WEBHOOK": "webhook_channel_configuration",
    "AZURE": "azure_channel_configuration",
}


class StreamingChannel(_Request):
    """The one channel of a streaming subscription."""

    channel_type: ChannelType
    aws_iot_core_channel_configuration: AwsIotCoreChannelConfiguration | None = None
    webhook_channel_configuration: WebhookChannelConfiguration | None = None
    azure_channel_configuration: AzureChannelConfiguration | None = None

    @model_validator(mode="after")
    def _one_channel(self) -> StreamingChannel:
        # doc: "Only one channel is allowed for a single subscription."
        wanted = _CHANNEL_CONFIG[self.channel_type]
        for name in _CHANNEL_CONFIG.values():
            if name != wanted and getattr(self, name) is not None:
                raise ValueError(f"{to_camel(name)} does not go with channelType {self.channel_type}")
        if self.channel_type in ("AWS_IOT_CORE", "WEBHOOK") and getattr(self, wanted) is None:
            raise ValueError(f"channelType {self.channel_type} needs {to_camel(wanted)}")
        return self


class StreamingSubscriptionRequest(_Request):
    """The body of a streaming (current API) create or update."""

    message_type: StreamingMessageTypes
    channel: StreamingChannel

    def comparable(self) -> dict[str, Any]:
        """The body, to compare with what the vendor answers."""
        return self.to_body()


class StreamingFilterInfo(_Answer):
    """A message-type filter as the vendor reports it."""

    account_number: str | None = None
    ibx: list[str] = Field(default_factory=list)


class StreamingMessageTypesInfo(_Answer):
    """The message types of a streaming subscription as the vendor reports them."""

    asset: list[StreamingFilterInfo] = Field(default_factory=list)
    environmental: list[StreamingFilterInfo] = Field(default_factory=list)
    power: list[StreamingFilterInfo] = Field(default_factory=list)
    metered_power: list[StreamingFilterInfo] = Field(default_factory=list)
    system_alert: list[StreamingFilterInfo] = Field(default_factory=list)
    custom_alert: list[StreamingFilterInfo] = Field(default_factory=list)


class StreamingChannelInfo(_Answer):
    """A subscription's channel as the vendor reports it."""

    channel_type: str | None = None

    def webhook_url(self) -> str | None:
        """The URL a WEBHOOK channel posts to (None for other channels)."""
        config = (self.model_extra or {}).get("webhookChannelConfiguration")
        url = config.get("url") if isinstance(config, dict) else None
        return url if self.channel_type == "WEBHOOK" and isinstance(url, str) else None


class StreamingSubscription(_Answer):
    """A streaming (current API) subscription."""

    id: str
    status: str | None = None
    message_type: StreamingMessageTypesInfo | None = None
    channel: StreamingChannelInfo | None = None
    org_id: str | None = None
    created_by: str | None = None
    created_date_time: datetime | None = None
    updated_by: str | None = None
    updated_date_time: datetime | None = None


# -- subscription data -------------------------------------------------------------------------------------
_TIME_KEYS = ("readingTime", "triggeredTime", "processedTime", "lastUpdated", "alertTime", "eventTime")


def parse_message_time(value: object) -> datetime | None:
    """A message time as an aware UTC datetime: ISO 8601 with ``T`` or a space (the definition's examples,
    ``2023-10-03 13:09:32``), with or without a zone (none: UTC, ours), or epoch milliseconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return parse_message_time(int(text))
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class SubscriptionMessage(_Answer):
    """One message of a subscription's feed: ``{"type": ..., "data": {...}}``.

    Reading and power values are strings in the published definition (``"50.045"``) and numbers in older
    answers: both parse (`reading_value`). A weekly heartbeat says so in ``data.heartbeat`` (the
    definition: a boolean) or beside ``data`` (the prose docs: ``heartbeat: "true"``): both count.
    """

    type: str
    data: dict[str, Any] = Field(default_factory=dict)
    heartbeat: bool | str | None = None

    @property
    def is_heartbeat(self) -> bool:
        """True for a heartbeat message, in either form."""
        flag = self.heartbeat if self.heartbeat is not None else self.data.get("heartbeat")
        return flag is True or (isinstance(flag, str) and flag.strip().lower() == "true")

    @property
    def message_id(self) -> str:
        """A stable id for the message: a digest of its whole content (the feed gives no id)."""
        canonical = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]

    @property
    def occurred_at(self) -> datetime | None:
        """When the reading or alert happened, when the message says (UTC)."""
        for key in _TIME_KEYS:
            if key in self.data:
                return parse_message_time(self.data[key])
        return None

    def reading_value(self, name: str = "reading") -> float | None:
        """A ``{unit, value}`` of the data (``reading``, ``realPower``, ...) as a number, string or not."""
        item = self.data.get(name)
        value = item.get("value") if isinstance(item, Mapping) else None
        if isinstance(value, bool) or value is None:
            return None
        try:
            return float(value)
        except (TypeError, ValueError):
            return None


class Pagination(_Answer):
    """Where a page of subscription data sits in the whole feed."""

    limit: int
    offset: int
    total: int
    next: str | None = None
    previous: str | None = None


_MESSAGE_GROUPS = (
    "alarm_message_data",
    "alert_message_data",
    "environment_message_data",
    "metered_power_message_data",
    "power_message_data",
    "tag_point_message_data",
)


class SubscriptionData(_Answer):
    """One page of ``subscriptionData``: messages grouped by kind, and the pagination."""

    alarm_message_data: list[SubscriptionMessage] = Field(default_factory=list)
    alert_message_data: list[SubscriptionMessage] = Field(default_factory=list)
    environment_message_data: list[SubscriptionMessage] = Field(default_factory=list)
    metered_power_message_data: list[SubscriptionMessage] = Field(default_factory=list)
    power_message_data: list[SubscriptionMessage] = Field(default_factory=list)
    tag_point_message_data: list[SubscriptionMessage] = Field(default_factory=list)
    pagination: Pagination | None = None

    def messages(self) -> list[SubscriptionMessage]:
        """Every message of the page, group after group."""
        return [message for group in _MESSAGE_GROUPS for message in getattr(self, group)]


# -- errors ------------------------------------------------------------------------------------------------
def _text(value: object) -> str | None:
    if value is None or value == "" or value == [] or value == {}:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _additional_info(info: object) -> str | None:
    """``additionalInfo``: an object ``{constraintCode|property, reason}`` or a list of them."""
    entries = info if isinstance(info, list) else [info]
    parts = []
    for entry in entries:
        if isinstance(entry, Mapping):
            name = entry.get("property") or entry.get("constraintCode")
            reason = entry.get("reason")
            parts.append(f"{name}: {reason}" if name and reason else _text(name or reason or dict(entry)))
        elif entry:
            parts.append(str(entry))
    return "; ".join(p for p in parts if p) or None


def api_error_details(body: object) -> tuple[str | None, str | None]:
    """The error code and a description from an Equinix error body.

    Shapes: an ApiError ``{errorCode, errorMessage, correlationId, details, additionalInfo}``, a list of
    them, the streams API's ``{errors: [{code, message, more_info, data}]}``, the token API's
    ``{error_domain, error_title, error_code, developer_message, error_message}`` (doc), and OAuth's
    ``{error, error_description}``.
    """
    if isinstance(body, list) and body and isinstance(body[0], Mapping):
        code, detail = api_error_details(body[0])
        if len(body) > 1:
            detail = f"{detail or ''} (and {len(body) - 1} more errors)".strip()
        return code, detail
    if not isinstance(body, Mapping):
        return None, None
    if "errorCode" in body or "errorMessage" in body:
        parts = [_text(body.get("errorMessage"))]
        if details := _text(body.get("details")):
            parts.append(f"details: {details}")
        if info := _additional_info(body.get("additionalInfo")):
            parts.append(f"additionalInfo: {info}")
        if correlation := _text(body.get("correlationId")):
            parts.append(f"correlationId: {correlation}")
        return _text(body.get("errorCode")), "; ".join(p for p in parts if p) or None
    if "error_code" in body or "error_message" in body:  # the token API (doc: Oauth2TokenErrorResponse)
        parts = [_text(body.get("error_message"))]
        if (developer := _text(body.get("developer_message"))) and developer not in parts:
            parts.append(f"developer_message: {developer}")
        if title := _text(body.get("error_title")):
            parts.append(f"error_title: {title}")
        return _text(body.get("error_code")), "; ".join(p for p in parts if p) or None
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
        first = errors[0]
        parts = [_text(first.get("message"))]
        if more := _text(first.get("more_info")):
            parts.append(f"more_info: {more}")
        if data := _text(first.get("data")):
            parts.append(f"data: {data}")
        if len(errors) > 1:
            parts.append(f"and {len(errors) - 1} more errors")
        return _text(first.get("code")), "; ".join(p for p in parts if p) or None
    code = body.get("error") or body.get("code")
    detail = body.get("error_description") or body.get("message")
    return _text(code), _text(detail)


def _subset(expected: object, actual: object) -> bool:
    """True when everything in `expected` is in `actual` (extra keys in `actual` are fine)."""
    if isinstance(expected, Mapping):
        return isinstance(actual, Mapping) and all(
            k in actual and _subset(v, actual[k]) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(_subset(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return expected == actual


# -- tokens and refusals -----------------------------------------------------------------------------------
class AccessToken(VendorModel):
    """The token answer (doc: ``Oauth2TokenResponse``; `user_name` is required there, tolerated absent here)."""

    access_token: SecretStr
    token_timeout: str = "3599"
    token_type: str = "Bearer"
    user_name: str | None = None

    @field_validator("token_timeout", mode="before")
    @classmethod
    def _as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    def model_post_init(self, context: Any) -> None:
        register_secret(self.access_token.get_secret_value())


def problem(subscription: StreamsSubscription | StreamingSubscription) -> str | None:
    """What is wrong with a subscription the vendor holds, as one line (None: nothing).

    A streams (seed API) subscription is refused when it carries ``errors`` or a ``status`` other than OK
    (seed: both come on a 200); a streaming one when its status is FAILED (doc).
    """
    if isinstance(subscription, StreamsSubscription):
        status = subscription.status
        errors = subscription.errors
        if not errors and status in (None, OK_STATUS):
            return None
        parts = [f"status {status}" if status not in (None, OK_STATUS) else None]
        for error in errors:
            entry = ": ".join(t for t in (error.code, error.message) if t) or "(no code or message)"
            if error.more_info:
                entry += f" ({error.more_info})"
            parts.append(entry)
        return "; ".join(p for p in parts if p)
    return f"status {FAILED_STATUS}" if subscription.status == FAILED_STATUS else None


class SubscriptionRefused(VendorError):
    """The vendor answered 2xx, but the subscription it holds is refused: ``errors``, or a status that is
    not OK (streams), or FAILED (streaming). `subscription` is what it holds."""

    def __init__(
        self, operation: str, subscription: StreamsSubscription | StreamingSubscription, what: str
    ) -> None:
        self.subscription = subscription
        ident = getattr(subscription, "subscription_id", None) or getattr(subscription, "id", "")
        super().__init__(
            VENDOR, operation, f"the vendor answered 2xx but refused subscription {ident}: {what}"
        )


S = TypeVar("S", StreamsSubscription, StreamingSubscription)


def accepted(operation: str, subscription: S) -> S:
    """The subscription, or `SubscriptionRefused` when the vendor's answer says it was not accepted."""
    found = problem(subscription)
    if found is not None:
        raise SubscriptionRefused(operation, subscription, found)
    return subscription


# -- the client --------------------------------------------------------------------------------------------
class EquinixClient(VendorClient):
    """Client of Equinix SmartView stream subscriptions, both API generations.

    Args:
        base_url: the API root, ``https://api.equinix.com``.
        client_id: the OAuth2 client id.
        client_secret: the OAuth2 client secret.
        api_generation: which subscription API the account uses (``streams``, the seed, or ``streaming``);
            informs callers, both generations' methods work regardless.
        clock: time source of the token cache (for tests of expiry).
        Other arguments: see `VendorClient`.
    """

    vendor = VENDOR

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        client_id: str,
        client_secret: SecretStr,
        api_generation: ApiGeneration = "streams",
        clock: Callable[[], float] = time.time,
        **kwargs: Any,
    ) -> None:
        register_secret(client_secret.get_secret_value())
        self.client_id = client_id
        self._client_secret = client_secret
        self.api_generation: ApiGeneration = api_generation
        self._clock = clock
        self.token_auth = TokenAuth(self._fetch_token, clock=clock)
        super().__init__(base_url, auth=self.token_auth, headers={"Accept": "application/json"}, **kwargs)

    # -- auth ----------------------------------------------------------------------------------------------
    def _fetch_token(self, stale: Token | None) -> Token:
        """Client-credentials grant; there is no refresh token, so `stale` is not used.

        The token API answers a refused request with 400 (doc): credentials it refuses are an
        `AuthenticationFailed` all the same, like a 401 elsewhere.
        """
        operation = "get_token"
        try:
            response = self.request(
                "POST",
                TOKEN_PATH,
                operation=operation,
                json={
                    "grant_type": "client_credentials",
                    "client_id": self.client_id,
                    "client_secret": self._client_secret.get_secret_value(),
                },
                auth=None,
                idempotent=True,  # asking for a token twice is harmless
            )
        except VendorHTTPError as exc:
            if exc.status != 400 or isinstance(exc, AuthenticationFailed):
                raise
            raise AuthenticationFailed(exc.vendor, exc.operation, exc.status, exc.code, exc.detail) from None
        answer = self.parse(response, AccessToken, operation)
        try:
            lifetime = float(answer.token_timeout)  # doc: a string, "3599"
        except ValueError:
            raise MalformedResponse(self.vendor, operation, "token_timeout is not a number") from None
        return Token(value=answer.access_token, expires_at=self._clock() + lifetime)

    def _build(self, operation: str, model: type[R], body: R | Mapping[str, Any]) -> R:
        return build_request(self.vendor, operation, model, body if isinstance(body, model) else dict(body))

    # -- errors --------------------------------------------------------------------------------------------
    def error_details(self, response: httpx.Response) -> tuple[str | None, str | None]:
        try:
            body = response.json()
        except ValueError:
            return super().error_details(response)
        code, detail = api_error_details(body)
        if code is None and detail is None:
            return super().error_details(response)
        return code, detail

    # -- the seed API: /smartview/v2/streams/subscriptions -------------------------------------------------
    def get_org_subscription(self) -> StreamsSubscription | None:
        """The organisation's streams subscription (the list GET answers one object), or None."""
        operation = "get_org_subscription"
        try:
            response = self.request("GET", STREAMS_PATH, operation=operation)
        except NotFound:
            return None
        return self.parse(response, StreamsSubscription, operation)

    def get_streams_subscription(self, subscription_id: str) -> StreamsSubscription:
        """A streams subscription by id."""
        operation = "get_streams_subscription"
        response = self.request(
            "GET", STREAMS_PATH + "/{id}", operation=operation, path_params={"id": subscription_id}
        )
        return self.parse(response, StreamsSubscription, operation)

    def create_streams_subscription(
        self, body: StreamsSubscriptionRequest | Mapping[str, Any]
    ) -> StreamsSubscription:
        """Create the organisation's streams subscription, never twice.

        If the answer is lost, the organisation's subscription is looked up before trying again, and
        returned when it is the one asked for.

        Raises:
            RequestInvalid: the body does not validate (nothing is sent).
            Conflict: the organisation already has a subscription.
            SubscriptionRefused: a 200 whose subscription carries ``errors`` or a status other than OK.
        """
        operation = "create_streams_subscription"
        request = self._build(operation, StreamsSubscriptionRequest, body)

        def do_create() -> StreamsSubscription:
            response = self.request("POST", STREAMS_PATH, operation=operation, json=request.to_body())
            return self.parse(response, StreamsSubscription, operation)

        def lookup() -> StreamsSubscription | None:
            found = self.get_org_subscription()
            if found is not None and _subset(request.comparable(), _comparable(found)):
                return found
            return None

        return accepted(operation, self.create(operation, do_create, lookup))

    def update_streams_subscription(
        self, subscription_id: str, body: StreamsSubscriptionRequest | Mapping[str, Any]
    ) -> StreamsSubscription:
        """Replace the event families and config of a streams subscription.

        Raises:
            SubscriptionRefused: a 200 whose subscription carries ``errors`` or a status other than OK.
        """
        operation = "update_streams_subscription"
        request = self._build(operation, StreamsSubscriptionRequest, body)
        response = self.request(
            "PUT",
            STREAMS_PATH + "/{id}",
            operation=operation,
            path_params={"id": subscription_id},
            json=request.to_body(),
        )
        return accepted(operation, self.parse(response, StreamsSubscription, operation))

    def delete_streams_subscription(self, subscription_id: str | None = None) -> StreamsSubscription:
        """Close the organisation's streams subscription and return it as closed.

        Without an id this is the seed's ``DELETE /smartview/v2/streams/subscriptions``; with one it
        deletes that subscription (``DELETE .../{id}``).
        """
        operation = "delete_streams_subscription"
        if subscription_id is None:
            response = self.request("DELETE", STREAMS_PATH, operation=operation)
        else:
            response = self.request(
                "DELETE", STREAMS_PATH + "/{id}", operation=operation, path_params={"id": subscription_id}
            )
        return self.parse(response, StreamsSubscription, operation)

    # -- the current API: /smartview/v2/streaming/subscriptions --------------------------------------------
    def list_streaming_subscriptions(self) -> list[StreamingSubscription]:
        """Every streaming subscription of the organisation."""
        operation = "list_streaming_subscriptions"
        response = self.request("GET", STREAMING_PATH, operation=operation)
        return self.parse(response, list[StreamingSubscription], operation)

    def get_streaming_subscription(self, subscription_id: str) -> StreamingSubscription:
        """A streaming subscription by id."""
        operation = "get_streaming_subscription"
        response = self.request(
            "GET", STREAMING_PATH + "/{id}", operation=operation, path_params={"id": subscription_id}
        )
        return self.parse(response, StreamingSubscription, operation)

    def create_streaming_subscription(
        self, body: StreamingSubscriptionRequest | Mapping[str, Any]
    ) -> StreamingSubscription:
        """Create a streaming subscription (201 + ``Location``) and return it as the vendor holds it.

        If the answer is lost, the subscriptions are listed before trying again and a live one with the
        same message types and channel is returned instead of creating a second.

        Raises:
            RequestInvalid: the body does not validate (nothing is sent).
            Conflict: 422, e.g. a second channel type in the organisation.
            SubscriptionRefused: the created subscription reads FAILED.
        """
        operation = "create_streaming_subscription"
        request = self._build(operation, StreamingSubscriptionRequest, body)

        def do_create() -> StreamingSubscription:
            response = self.request("POST", STREAMING_PATH, operation=operation, json=request.to_body())
            location = response.headers.get("Location", "")
            subscription_id = location.rstrip("/").rsplit("/", 1)[-1] if location else ""
            if not subscription_id:
                raise MalformedResponse(self.vendor, operation, "create answered without a Location")
            return self.get_streaming_subscription(subscription_id)

        def lookup() -> StreamingSubscription | None:
            wanted = request.comparable()
            matches = [
                s
                for s in self.list_streaming_subscriptions()
                if s.status not in _GONE and _subset(wanted, _comparable(s))
            ]
            return max(matches, key=_created_at) if matches else None

        return accepted(operation, self.create(operation, do_create, lookup))

    def update_streaming_subscription(
        self, subscription_id: str, body: StreamingSubscriptionRequest | Mapping[str, Any]
    ) -> None:
        """Replace the message types and channel of a streaming subscription (204)."""
        operation = "update_streaming_subscription"
        request = self._build(operation, StreamingSubscriptionRequest, body)
        self.request(
            "PUT",
            STREAMING_PATH + "/{id}",
            operation=operation,
            path_params={"id": subscription_id},
            json=request.to_body(),
        )

    def delete_streaming_subscription(self, subscription_id: str) -> None:
        """Delete a streaming subscription (204)."""
        self.request(
            "DELETE",
            STREAMING_PATH + "/{id}",
            operation="delete_streaming_subscription",
            path_params={"id": subscription_id},
        )

    # -- subscription data ---------------------------------------------------------------------------------
    def get_subscription_data(
        self,
        subscription_id: str,
        *,
        offset: int = 0,
        limit: int = DEFAULT_PAGE_SIZE,
        ibxs: Sequence[str] | None = None,
        message_types: Sequence[MessageTypeFilter] | None = None,
        stream_ids: Sequence[str] | None = None,
    ) -> SubscriptionData:
        """One page of a subscription's messages."""
        operation = "get_subscription_data"
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if ibxs:
            params["ibxs"] = list(ibxs)
        if message_types:
            params["messageTypes"] = list(message_types)
        if stream_ids:
            params["streamIds"] = list(stream_ids)
        response = self.request(
            "GET", DATA_PATH, operation=operation, path_params={"id": subscription_id}, params=params
        )
        return self.parse(response, SubscriptionData, operation)

    def iter_subscription_data(
        self,
        subscription_id: str,
        *,
        offset: int = 0,
        limit: int = DEFAULT_PAGE_SIZE,
        ibxs: Sequence[str] | None = None,
        message_types: Sequence[MessageTypeFilter] | None = None,
        stream_ids: Sequence[str] | None = None,
        max_pages: int | None = None,
    ) -> Iterator[Page[SubscriptionMessage]]:
        """Pages of a subscription's messages from `offset` (a stored cursor) to the end of the feed.

        Store ``page.next_offset`` once a page's messages are committed; resuming from it neither
        misses nor repeats a message. The next page is fetched only when the previous one is consumed.
        """

        def fetch(at: int, size: int) -> Page[SubscriptionMessage]:
            data = self.get_subscription_data(
                subscription_id,
                offset=at,
                limit=size,
                ibxs=ibxs,
                message_types=message_types,
                stream_ids=stream_ids,
            )
            pagination = data.pagination
            return Page(
                items=data.messages(),
                offset=at,
                limit=pagination.limit if pagination else size,
                total=pagination.total if pagination else None,
            )

        return offset_pages(fetch, offset=offset, limit=limit, max_pages=max_pages)


def _comparable(model: VendorModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def _created_at(subscription: StreamingSubscription) -> float:
    return subscription.created_date_time.timestamp() if subscription.created_date_time else 0.0


__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_PAGE_SIZE",
    "ApiGeneration",
    "CHANNEL_TYPES",
    "AccessToken",
    "AwsIotCoreChannelConfiguration",
    "AzureChannelConfiguration",
    "EquinixClient",
    "Pagination",
    "StreamingAssetFilter",
    "StreamingChannel",
    "StreamingCustomAlertFilter",
    "StreamingEnvironmentalFilter",
    "StreamingFilter",
    "StreamingMessageTypes",
    "StreamingSubscription",
    "StreamingSubscriptionRequest",
    "StreamsAlarmFilter",
    "StreamsAlertFilter",
    "StreamsAssetFilter",
    "StreamsConfig",
    "StreamsEnvironmentFilter",
    "StreamsPowerFilter",
    "StreamsSubscription",
    "StreamsSubscriptionRequest",
    "SubscriptionData",
    "SubscriptionMessage",
    "SubscriptionRefused",
    "WebhookChannelConfiguration",
    "accepted",
    "api_error_details",
    "parse_message_time",
    "problem",
]
