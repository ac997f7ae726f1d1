"""The provisioning spec: which stream subscriptions should exist at which vendor ("subscriptions as code").

A spec is YAML, validated here; a mistake is a `ConfigError` naming the file, line and field
(``example.yaml:14: dma[0].subscriptions[2].time_to_live: Input should be less than or equal to 93600``).

    spec = load_spec("data/specs/example.yaml")
    spec = load_spec_text(yaml_text)

Shape (every section is a list of *connections*; a connection is the name of a credentials block):

```yaml
plt:                       # PLT streams started for tenants
  - connection: demo-plt
    streams:
      - {name: contoso-quick-disconnect, stream: QUICKDISCONNECT, tenant: Contoso Contact Center}
dma:                       # DMA subscriptions
  - connection: demo-dma
    subscriptions:
      - name: all-conferences
        subject: all_conferences          # or conference / participants, with `conference: "1"`
        consumer_url: https://receiver.example.com/dma
        time_to_live: 3600                # 0 = the maximum, 26 h
        notification_credentials: {username: dma, password_block: dma-notify}
stream:                    # Stream feature-flag targeting (a context on a flag or in a segment)
  - connection: demo-stream
    targeting:
      - {name: acme-beta, context: merchant-acme, segment: beta-merchants}
thingspace:                # ThingSpace targets and the subscriptions on them
  - connection: demo-thingspace
    targets:
      - name: receiver
        address: https://receiver.example.com:8443
        subscriptions:
          - {name: device-events, streamkind: ts.event}
equinix:                   # Equinix SmartView stream subscriptions
  - connection: demo-equinix
    api: streaming                        # default streams (the seed API: one subscription per organisation)
    subscriptions:
      - name: paris-environment
        families: {environmental: [{account: "135888", ibx: [PA4]}]}
        channel: {type: WEBHOOK, url: https://receiver.example.com/equinix/paris}
```

Each subscription has a stable `name`, unique within its connection, which is how streamkeeper finds it at
the vendor again: DMA ``passback``, ThingSpace target and subscription ``name``; a PLT stream+tenant pair and
a Stream context+flag pair are their own identity; Equinix keeps no name, so the history store remembers
which subscription id belongs to which name (see `streamkeeper.provision`).

Secrets are never in a spec: fields ending in ``_block`` name a Prefect ``Secret`` block that holds the
value, resolved only when a change is applied.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from streamkeeper.environment import streamkeeper_home
from streamkeeper.errors import ConfigError
from streamkeeper.validation import describe
from streamkeeper.vendors.dma import MAX_TIME_TO_LIVE
from streamkeeper.vendors.equinix import (
    AlarmType,
    AssetClassification,
    BatchSize,
    ChannelType,
    ConcurrentCalls,
    ConditionName,
    Granularity,
    Method,
    Provider,
    Region,
    Retries,
    StreamingSubscriptionRequest,
    StreamsSubscriptionRequest,
)
from streamkeeper.vendors.thingspace import AddressScheme, StreamKind
from streamkeeper.yamlspec import (
    SETTINGS,
    load_yaml_model,
    load_yaml_text,
    one_line,
    parse_yaml,
    read_spec_file,
    setting,
    validate_model,
)

Vendor = Literal["plt", "dma", "stream", "thingspace", "equinix"]
VENDORS: tuple[Vendor, ...] = get_args(Vendor)

Name = Annotated[
    str,
    Field(
        min_length=1,
        max_length=120,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
        description="Stable name of the subscription, unique within its connection.",
    ),
]
BlockName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=120,
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="Name of a Prefect block (lowercase letters, digits and dashes).",
    ),
]


class SpecModel(BaseModel):
    """Base of the spec models: unknown fields are an error, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid")

    def desired(self) -> dict[str, Any]:
        """The spec entry as JSON for the history store (no secret is ever in a spec, only block names)."""
        return self.model_dump(mode="json", exclude_none=True)


Loc = tuple[int | str, ...]


def _fail(loc: Loc, message: str, value: Any = None) -> NoReturn:
    """Refuse the spec, naming the field at `loc` (relative to the model being validated) and so its line."""
    error = PydanticCustomError("spec_rule", "{message}", {"message": message})
    raise ValidationError.from_exception_data("spec", [InitErrorDetails(type=error, loc=loc, input=value)])


def _unique_names(names: list[str], loc: Callable[[int], Loc], what: str) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            _fail(
                loc(i), f"{what} name {name!r} is used more than once (names are unique per connection)", name
            )
        seen.add(name)


# -- PLT ---------------------------------------------------------------------------------------------------
class PLTStreamSpec(SpecModel):
    """A PLT stream that should be started for a tenant."""

    name: Name
    stream: str = Field(min_length=1, description="Stream name (e.g. QUICKDISCONNECT) or stream id.")
    tenant: str = Field(min_length=1, description="Tenant name or tenant id.")


class PLTConnection(SpecModel):
    """The PLT streams of one partner (a `PLTCredentials` block)."""

    connection: BlockName
    streams: list[PLTStreamSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names(self) -> PLTConnection:
        _unique_names([s.name for s in self.streams], lambda i: ("streams", i, "name"), "stream")
        return self


# -- DMA ---------------------------------------------------------------------------------------------------
DMASubject = Literal["all_conferences", "conference", "participants"]


class NotificationCredentials(SpecModel):
    """What the DMA sends to authenticate to the consumer (our receiver): a user and a password block."""

    username: str = Field(min_length=1, description="User name the DMA sends to the consumer.")
    password_block: BlockName = Field(description="Prefect Secret block holding the password.")


class DMASubscriptionSpec(SpecModel):
    """A DMA subscription to conference events."""

    name: Name
    subject: DMASubject = Field(
        default="all_conferences",
        description="all_conferences, one conference, or a conference's participants.",
    )
    conference: str | None = Field(
        default=None, min_length=1, description="Conference id (subject conference/participants)."
    )
    consumer_url: str = Field(min_length=1, description="Where the DMA posts notifications.")
    time_to_live: int = Field(
        ge=0, le=MAX_TIME_TO_LIVE, description="Seconds the subscription lives without a refresh; 0 = 26 h."
    )
    send_update_notifications: bool | None = None
    passthru: str | None = None
    notification_credentials: NotificationCredentials | None = None

    @field_validator("consumer_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _conference(self) -> DMASubscriptionSpec:
        if self.subject == "all_conferences" and self.conference is not None:
            raise ValueError("conference is only for subject conference or participants")
        if self.subject != "all_conferences" and self.conference is None:
            raise ValueError(f"subject {self.subject} needs a conference id")
        return self

    @property
    def subject_path(self) -> str:
        """The subject resource as the DMA client takes it: ``conferences[/{id}[/participants]]``."""
        if self.subject == "all_conferences":
            return "conferences"
        path = f"conferences/{self.conference}"
        return path + "/participants" if self.subject == "participants" else path


class DMAConnection(SpecModel):
    """The subscriptions of one DMA (a `DMACredentials` block)."""

    connection: BlockName
    subscriptions: list[DMASubscriptionSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names(self) -> DMAConnection:
        _unique_names(
            [s.name for s in self.subscriptions], lambda i: ("subscriptions", i, "name"), "subscription"
        )
        return self


# -- Stream ------------------------------------------------------------------------------------------------
class StreamTargetingSpec(SpecModel):
    """A Stream feature-flag context that should be in a flag's targeting or in a segment."""

    name: Name
    context: str = Field(min_length=1, description="The context key, e.g. a merchant id.")
    kind: str = Field(default="user", min_length=1, description="The context kind.")
    flag: str | None = Field(
        default=None, min_length=1, description="Feature flag key (give a flag or a segment)."
    )
    segment: str | None = Field(
        default=None, min_length=1, description="Segment key (give a flag or a segment)."
    )

    @model_validator(mode="after")
    def _one_target(self) -> StreamTargetingSpec:
        if (self.flag is None) == (self.segment is None):
            raise ValueError("give exactly one of flag or segment")
        return self


class StreamConnection(SpecModel):
    """The feature-flag targeting of one Stream partner (a `StreamCredentials` block)."""

    connection: BlockName
    targeting: list[StreamTargetingSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names(self) -> StreamConnection:
        _unique_names([t.name for t in self.targeting], lambda i: ("targeting", i, "name"), "targeting")
        seen: set[tuple[str, str, str]] = set()
        for i, t in enumerate(self.targeting):
            key = (t.kind, t.context, f"flag:{t.flag}" if t.flag else f"segment:{t.segment}")
            if key in seen:
                _fail(("targeting", i, "context"), f"context {t.context!r} is already on {key[2]}", t.context)
            seen.add(key)
        return self


# -- ThingSpace --------------------------------------------------------------------------------------------
class TargetCredentials(SpecModel):
    """How ThingSpace authenticates to a streamrest receiver: Basic (user + password block) or a bearer."""

    username: str | None = Field(default=None, min_length=1, description="Basic auth user name.")
    password_block: BlockName | None = Field(
        default=None, description="Prefect Secret block with the Basic password."
    )
    bearer_token_block: BlockName | None = Field(
        default=None, description="Prefect Secret block with a bearer token."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> TargetCredentials:
        basic = self.username is not None or self.password_block is not None
        if basic and (self.username is None or self.password_block is None):
            raise ValueError("Basic credentials need both username and password_block")
        if basic == (self.bearer_token_block is not None):
            raise ValueError("give username + password_block, or bearer_token_block")
        return self


class ThingSpaceSubscriptionSpec(SpecModel):
    """A ThingSpace subscription: which kind of events go to its target."""

    name: Name
    streamkind: StreamKind
    filter: str | None = None
    disabled: bool = False
    aggregation: bool = Field(default=False, description="allowaggregation: several events per message.")
    description: str | None = None
    email: str | None = None


class ThingSpaceTargetSpec(SpecModel):
    """A ThingSpace target (where events go) and the subscriptions that use it."""

    name: Name
    address: str = Field(
        min_length=1, description="host:port or URL (streamrest), ARN (streamawsiot), queue (sqs)."
    )
    scheme: AddressScheme = "streamrest"
    description: str | None = None
    region: str | None = None
    external_id: str | None = Field(
        default=None, description="streamawsiot: an id from newextid; asked for when empty."
    )
    credentials: TargetCredentials | None = None
    subscriptions: list[ThingSpaceSubscriptionSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _credentials_for_rest(self) -> ThingSpaceTargetSpec:
        if self.credentials is not None and self.scheme != "streamrest":
            raise ValueError("credentials are for streamrest targets only")
        return self


class ThingSpaceConnection(SpecModel):
    """The targets and subscriptions of one ThingSpace billing account (a `ThingSpaceCredentials` block)."""

    connection: BlockName
    account: str | None = Field(
        default=None, min_length=1, description="Billing account id; default: the block's."
    )
    targets: list[ThingSpaceTargetSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _rules(self) -> ThingSpaceConnection:
        _unique_names([t.name for t in self.targets], lambda i: ("targets", i, "name"), "target")
        locs = [
            ("targets", ti, "subscriptions", si)
            for ti, t in enumerate(self.targets)
            for si in range(len(t.subscriptions))
        ]
        _unique_names([s.name for _, s in self.subscriptions()], lambda i: (*locs[i], "name"), "subscription")
        clash = streamkind_clash(self.subscriptions())
        if clash is not None:
            i, message = clash
            _fail((*locs[i], "streamkind"), message)
        return self

    def subscriptions(self) -> list[tuple[ThingSpaceTargetSpec, ThingSpaceSubscriptionSpec]]:
        return [(t, s) for t in self.targets for s in t.subscriptions]


def streamkind_clash(
    pairs: list[tuple[ThingSpaceTargetSpec, ThingSpaceSubscriptionSpec]],
) -> tuple[int, str] | None:
    """One subscription per streamkind per account (seed): the first pair that breaks it, and why."""
    owners: dict[str, str] = {}
    for i, (_, sub) in enumerate(pairs):
        if sub.streamkind in owners:
            return i, (
                f"subscriptions {owners[sub.streamkind]!r} and {sub.name!r} both use streamkind "
                f"{sub.streamkind}: ThingSpace allows one subscription per streamkind per account"
            )
        owners[sub.streamkind] = sub.name
    return None


# -- Equinix -----------------------------------------------------------------------------------------------
EquinixApi = Literal["streams", "streaming"]
EquinixFamily = Literal[
    # the seed API ("streams")
    "alarm",
    "alert",
    "asset",
    "environment",
    "power",
    # the current API ("streaming"); asset and power are in both
    "environmental",
    "metered_power",
    "system_alert",
    "custom_alert",
]
# family -> the optional filter fields it takes, per API (from the client's request models)
EQUINIX_FAMILIES: dict[EquinixApi, dict[str, frozenset[str]]] = {
    "streams": {
        "alarm": frozenset({"alarm_type", "asset_classification", "condition_name", "region"}),
        "alert": frozenset(),
        "asset": frozenset({"classification"}),
        "environment": frozenset({"granularity"}),
        "power": frozenset(),
    },
    "streaming": {
        "asset": frozenset({"asset_classification", "asset_id"}),
        "environmental": frozenset({"level"}),
        "power": frozenset(),
        "metered_power": frozenset(),
        "system_alert": frozenset(),
        "custom_alert": frozenset({"user"}),
    },
}
_FILTER_FIELDS = (
    "alarm_type",
    "asset_classification",
    "condition_name",
    "region",
    "classification",
    "granularity",
    "level",
    "asset_id",
    "user",
)


class EquinixFilterSpec(SpecModel):
    """Events of one customer account at some IBXs, optionally narrowed by the family's filters."""

    account: str = Field(min_length=1, description="Customer account number, e.g. 135888.")
    ibx: list[str] = Field(min_length=1, description="IBX codes, e.g. [PA4, DE2].")
    alarm_type: list[AlarmType] | None = None
    asset_classification: list[AssetClassification] | None = None
    condition_name: list[ConditionName] | None = None
    region: list[Region] | None = None
    classification: list[AssetClassification] | None = None
    granularity: list[Granularity] | None = None
    level: list[Granularity] | None = None
    asset_id: list[str] | None = None
    user: str | None = None

    @field_validator("ibx", "region", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    def filters(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in _FILTER_FIELDS if getattr(self, f) is not None}


class EquinixChannelSpec(SpecModel):
    """The channel of a streaming (current API) subscription (its messages can be pulled whatever it is)."""

    type: ChannelType = Field(
        default="WEBHOOK", description="WEBHOOK (with url; the default), AWS_IOT_CORE (with url) or AZURE."
    )
    url: str | None = None
    batch_size: BatchSize | None = Field(default=None, description="Messages a delivery (5..20).")
    number_of_concurrent_calls: ConcurrentCalls | None = Field(default=None, description="20..50.")
    number_of_retries: Retries | None = Field(default=None, description="1..5.")
    ssl_certificate: str | None = Field(
        default=None, description="WEBHOOK: the receiver's certificate (base64) Equinix checks it against."
    )


class EquinixConfigSpec(SpecModel):
    """The delivery configuration of a streams (seed API) subscription."""

    method: Method | None = None
    provider: Provider | None = None
    region: str | None = None
    role_arn_to_assume: str | None = None
    subscription: str | None = None
    url: str | None = None
    token_block: BlockName | None = Field(
        default=None, description="Prefect Secret block with the push token."
    )


class EquinixSubscriptionSpec(SpecModel):
    """An Equinix SmartView stream subscription: event families per account and IBX, and a delivery."""

    name: Name
    families: dict[EquinixFamily, list[EquinixFilterSpec]] = Field(min_length=1)
    channel: EquinixChannelSpec | None = Field(default=None, description="streaming API: the channel.")
    config: EquinixConfigSpec | None = Field(default=None, description="streams API: the delivery config.")


class EquinixConnection(SpecModel):
    """The stream subscriptions of one Equinix organisation (an `EquinixCredentials` block)."""

    connection: BlockName
    api: EquinixApi = Field(
        default="streams",
        description="streams (the seed API, one subscription per organisation; the default) or streaming.",
    )
    subscriptions: list[EquinixSubscriptionSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _rules(self) -> EquinixConnection:
        _unique_names(
            [s.name for s in self.subscriptions], lambda i: ("subscriptions", i, "name"), "subscription"
        )
        if self.api == "streams" and len(self.subscriptions) > 1:
            _fail(
                ("subscriptions", 1),
                "the streams API holds one subscription per organisation: "
                f"{len(self.subscriptions)} are declared ({', '.join(s.name for s in self.subscriptions)})",
            )
        bodies: dict[str, str] = {}
        channels: dict[str, str] = {}
        for i, sub in enumerate(self.subscriptions):
            self._check(i, sub)
            if self.api == "streaming":
                kind = (sub.channel or EquinixChannelSpec()).type
                if channels and kind not in channels:
                    first, owner = next(iter(channels.items()))
                    _fail(
                        ("subscriptions", i, "channel"),
                        f"channel type {kind} differs from {owner!r}'s {first}: Equinix allows one channel "
                        "type per organisation",
                    )
                channels.setdefault(kind, sub.name)
            key = repr(equinix_body(self.api, sub))
            if key in bodies:
                _fail(
                    ("subscriptions", i, "families"),
                    f"{sub.name!r} is identical to {bodies[key]!r}: Equinix keeps no name, "
                    "so two identical subscriptions could not be told apart",
                )
            bodies[key] = sub.name
        return self

    def _check(self, i: int, sub: EquinixSubscriptionSpec) -> None:
        allowed = EQUINIX_FAMILIES[self.api]
        here: Loc = ("subscriptions", i)
        for family, filters in sub.families.items():
            if family not in allowed:
                _fail(
                    (*here, "families", family),
                    f"{family} is not a family of the {self.api} API (choose from {', '.join(allowed)})",
                )
            for j, entry in enumerate(filters):
                extra = sorted(set(entry.filters()) - allowed[family])
                if extra:
                    _fail(
                        (*here, "families", family, j, extra[0]),
                        f"not a filter of {family} in the {self.api} API",
                    )
        if self.api == "streams" and sub.channel is not None:
            _fail((*here, "channel"), "the streams API takes config, not channel")
        if self.api == "streaming" and sub.config is not None:
            _fail((*here, "config"), "the streaming API takes channel, not config")
        request = StreamsSubscriptionRequest if self.api == "streams" else StreamingSubscriptionRequest
        try:
            request.model_validate(equinix_body(self.api, sub))
        except ValidationError as exc:
            where = "config" if self.api == "streams" else "channel"
            _fail((*here, where if where in str(exc.errors()[0]["loc"]) else "families"), describe(exc))


def equinix_body(api: EquinixApi, sub: EquinixSubscriptionSpec) -> dict[str, Any]:
    """The client request body (snake_case, secrets left out) of an Equinix subscription spec.

    The streams API takes one IBX per filter entry, so an entry with several IBXs becomes one entry each.
    """
    if api == "streams":
        body: dict[str, Any] = {}
        for family, entries in sub.families.items():
            body[family] = [
                {"account_no": e.account, "ibx": ibx, **e.filters()} for e in entries for ibx in e.ibx
            ]
        if sub.config is not None:
            body["config"] = sub.config.model_dump(exclude_none=True, exclude={"token_block"})
        return body
    message_type = {
        family: [{"account_number": e.account, "ibx": list(e.ibx), **e.filters()} for e in entries]
        for family, entries in sub.families.items()
    }
    channel = sub.channel or EquinixChannelSpec()
    settings = channel.model_dump(exclude_none=True, exclude={"type"})
    config_field = {
        "AWS_IOT_CORE": "aws_iot_core_channel_configuration",
        "WEBHOOK": "webhook_channel_configuration",
        "AZURE": "azure_channel_configuration",
    }[channel.type]
    channel_body: dict[str, Any] = {"channel_type": channel.type}
    if settings or channel.type != "AZURE":
        channel_body[config_field] = settings
    return {"message_type": message_type, "channel": channel_body}


# -- the whole spec ----------------------------------------------------------------------------------------
Connection = PLTConnection | DMAConnection | StreamConnection | ThingSpaceConnection | EquinixConnection


class ProvisioningSpec(SpecModel):
    """Which subscriptions should exist, per vendor and connection."""

    version: Literal[1] = Field(default=1, description="Spec format version.")
    plt: list[PLTConnection] = Field(default_factory=list)
    dma: list[DMAConnection] = Field(default_factory=list)
    stream: list[StreamConnection] = Field(default_factory=list)
    thingspace: list[ThingSpaceConnection] = Field(default_factory=list)
    equinix: list[EquinixConnection] = Field(default_factory=list)

    @model_validator(mode="after")
    def _connections_once(self) -> ProvisioningSpec:
        for vendor in VENDORS:
            seen: set[tuple[str, str | None]] = set()
            for i, c in enumerate(getattr(self, vendor)):
                key = (c.connection, getattr(c, "account", None))  # ThingSpace: a block, several accounts
                if key in seen:
                    _fail((vendor, i, "connection"), f"connection {c.connection!r} is listed more than once")
                seen.add(key)
        return self

    def connections(self) -> list[tuple[Vendor, Connection]]:
        """Every connection with its vendor, in spec order (vendor by vendor)."""
        return [(vendor, c) for vendor in VENDORS for c in getattr(self, vendor)]

    def connection(self, vendor: Vendor, name: str, account: str | None = None) -> Connection:
        """The connection of `vendor` named `name` (and, for ThingSpace, of `account`)."""
        for c in getattr(self, vendor):
            if c.connection == name and getattr(c, "account", None) == account:
                return c  # type: ignore[no-any-return]
        raise ConfigError(
            f"the spec has no {vendor} connection {name!r}" + (f" ({account})" if account else "")
        )

    def count(self) -> int:
        """How many subscriptions (and ThingSpace targets) the spec declares."""
        total = 0
        for _, c in self.connections():
            if isinstance(c, PLTConnection):
                total += len(c.streams)
            elif isinstance(c, StreamConnection):
                total += len(c.targeting)
            elif isinstance(c, ThingSpaceConnection):
                total += len(c.targets) + len(c.subscriptions())
            else:
                total += len(c.subscriptions)
        return total


def load_spec(path: Path | str, cache: bool = True) -> ProvisioningSpec:
    """Read and validate a spec file; `ConfigError` names the file, line and field of a mistake.

    ``${STREAMKEEPER_RECEIVER_URL}`` in a text value is the setting (`streamkeeper.yamlspec.SETTINGS`).

    Parsing the YAML is most of the cost (~1 s for 10,000 entries): with `cache`, what a file parsed to is
    kept in ``$STREAMKEEPER_HOME/spec-cache`` under the hash of its content and of the settings' values, so
    a file read again (by the next flow run, in another process) is only validated; an edited file, or a
    changed setting, has another hash and is parsed.
    """
    if not cache:
        return load_yaml_model(path, ProvisioningSpec, settings=True)
    path = Path(path)
    source = one_line(path.name)
    text = read_spec_file(path)  # a missing, oversized or non-UTF-8 file is one line, cached or not
    key = spec_cache_key(text)
    cached = _spec_cache_read(key)
    if cached is not None:
        try:
            return validate_model(cached, ProvisioningSpec, source=source)
        except ConfigError:
            pass  # no longer valid (a newer streamkeeper is stricter): parse again, to name the line
    data, lines = parse_yaml(text, source=source, settings=True)
    spec = validate_model(data, ProvisioningSpec, lines, source=source)
    _spec_cache_write(key, data)
    return spec


def spec_cache_key(text: str) -> str:
    """The cache's name for what a spec text parses to: the hash of the text and of the settings' values."""
    digest = hashlib.sha256(text.encode())
    for name in sorted(SETTINGS):
        digest.update(f"\0{name}={setting(name)}".encode())
    return digest.hexdigest()


SPEC_CACHE_ENTRIES = 32
"""Parsed spec files kept in the cache (the least recently written beyond that are removed)."""


def spec_cache_dir() -> Path:
    return streamkeeper_home() / "spec-cache"


def _spec_cache_read(key: str) -> Any:
    try:
        return json.loads((spec_cache_dir() / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None  # not cached, or a torn or foreign file: parse


def _spec_cache_write(key: str, data: Any) -> None:
    """Keep what a spec parsed to, when JSON holds it exactly (YAML dates or non-text keys are not cached)."""
    try:
        text = json.dumps(data, separators=(",", ":"))
    except (TypeError, ValueError):
        return
    if json.loads(text) != data:
        return
    directory = spec_cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        scratch = directory / f".{key}.{os.getpid()}.tmp"
        scratch.write_text(text)
        scratch.replace(directory / f"{key}.json")  # atomic: a reader sees all of it or none
        entries = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in entries[SPEC_CACHE_ENTRIES:]:
            stale.unlink(missing_ok=True)
    except OSError:
        return  # a cache that cannot be written only costs the next run a parse


def load_spec_text(text: str, source: str = "<inline spec>") -> ProvisioningSpec:
    """Validate a spec given as YAML (or JSON) text."""
    return load_yaml_text(text, ProvisioningSpec, source=source, settings=True)


__all__ = [
    "VENDORS",
    "BlockName",
    "Connection",
    "DMAConnection",
    "DMASubscriptionSpec",
    "EquinixChannelSpec",
    "EquinixConfigSpec",
    "EquinixConnection",
    "EquinixFilterSpec",
    "EquinixSubscriptionSpec",
    "NotificationCredentials",
    "PLTConnection",
    "PLTStreamSpec",
    "ProvisioningSpec",
    "StreamConnection",
    "StreamTargetingSpec",
    "TargetCredentials",
    "ThingSpaceConnection",
    "ThingSpaceSubscriptionSpec",
    "ThingSpaceTargetSpec",
    "Vendor",
    "streamkind_clash",
    "equinix_body",
    "load_spec",
    "load_spec_text",
]
