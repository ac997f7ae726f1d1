"""What the push receiver accepts: its senders, their credentials and the body-size limit.

A YAML file (``streamkeeper receive --config FILE``) or a `ReceiverConfig` built in code (the demo)::

    max_body_bytes: 1048576
    header_timeout_seconds: 10    # limits of slow and idle clients, see streamkeeper.receiver.server
    body_timeout_seconds: 30
    idle_timeout_seconds: 30
    max_connections: 256          # beyond: 503 with Retry-After (retry_after_seconds)
    dma:                          # POST /dma/<name>: DMA notifications, Basic credentials
      conferences:
        account: dma-east         # optional: stored in events.account
        username: streamkeeper
        password: ${STREAMKEEPER_RECEIVER_DMA_PASSWORD}
    thingspace:                   # POST /thingspace/<name>: streamrest deliveries
      devices:
        account: "0000000000-00001"
        username: ts-receiver     # Basic, as `CreateTargetRequest.streamrest(username=, password=)` sets
        password: ${STREAMKEEPER_RECEIVER_TS_PASSWORD}
        # or: bearer_token: ${...} (the target's key1)
    stream:                       # POST /stream/<name>: webhooks signed with X-Stream-Signature
      orders:
        secret: ${STREAMKEEPER_RECEIVER_STREAM_SECRET}
    equinix:                      # POST /equinix/<name>: Equinix SmartView pushes
      paris:                      # a WEBHOOK channel: mutual TLS, Equinix's client certificate pinned
        account: demo-equinix
        client_certificate_sha256: ["3f:a1:..."]
      org:                        # the streams API's PUSH config: its token, as a bearer
        token: ${STREAMKEEPER_RECEIVER_EQUINIX_TOKEN}

A secret field holding ``${NAME}`` takes the value of the environment variable NAME (an error names the
field and the variable, never a value). Secrets are `SecretStr` and are only unwrapped to compare them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from streamkeeper.errors import ConfigError
from streamkeeper.yamlspec import load_yaml_model

if TYPE_CHECKING:
    from streamkeeper.spec import ProvisioningSpec

DEFAULT_MAX_BODY_BYTES = 1024 * 1024  # ours: 1 MiB; a DMA notification or a webhook is a few KiB

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
"""A route name: the last path segment of the sender's URL (letters, digits, ``.``, ``_``, ``-``)."""

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def _from_env(value: Any) -> Any:
    """``${NAME}`` -> the value of environment variable NAME."""
    if isinstance(value, str):
        match = _ENV_REF.match(value.strip())
        if match:
            name = match.group(1)
            found = os.environ.get(name)
            if not found:
                raise ValueError(f"environment variable {name} is not set")
            return found
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DMAConsumer(_Strict):
    """A consumer path ``/dma/<name>``: the Basic credentials the DMA subscriptions pointing at it were given."""

    account: str | None = Field(None, description="Stored in events.account (e.g. the DMA's block name).")
    username: str = Field(min_length=1, description="The subscription's `username`.")
    password: SecretStr = Field(description="The subscription's `password`.")

    _env = field_validator("password", mode="before")(_from_env)


class ThingSpaceTarget(_Strict):
    """A streamrest target ``/thingspace/<name>``: the credentials the target was created with.

    Basic (``username`` + ``password``, sent in ``fields.httpheaders.Authorization``) or a bearer token (the
    target's ``key1``). OAuth2 targets are not supported by this receiver.
    """

    account: str | None = Field(None, description="Stored in events.account (the billing account id).")
    username: str | None = Field(None, min_length=1)
    password: SecretStr | None = None
    bearer_token: SecretStr | None = None

    _env = field_validator("password", "bearer_token", mode="before")(_from_env)

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        basic = self.username is not None or self.password is not None
        if basic and (self.username is None or self.password is None):
            raise ValueError("Basic credentials need both username and password")
        if basic == (self.bearer_token is not None):
            raise ValueError("give either username and password (Basic) or bearer_token")
        return self


class StreamWebhook(_Strict):
    """A webhook URL ``/stream/<name>``: the secret Stream signs its deliveries with."""

    account: str | None = Field(None, description="Stored in events.account (e.g. the organisation).")
    secret: SecretStr = Field(description="The webhook secret (HMAC-SHA256 key of X-Stream-Signature).")

    _env = field_validator("secret", mode="before")(_from_env)

    @field_validator("secret")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("the webhook secret is empty")
        return value


class EquinixPush(_Strict):
    """An Equinix push URL ``/equinix/<name>``: how its sender is authenticated.

    A WEBHOOK channel of the current API authenticates with mutual TLS (doc): give the SHA-256 fingerprints
    of the client certificate(s) Equinix presents (the receiver must serve HTTPS and ask for client
    certificates, ``streamkeeper receive --client-ca``). A ``PUSH`` config of the streams (seed) API sends
    its ``token`` (seed: "Token used to send push request from the pub/sub layer"; ours: as ``Authorization:
    Bearer``): give that token. Exactly one of the two.
    """

    account: str | None = Field(None, description="Stored in events.account (e.g. the Equinix block name).")
    token: SecretStr | None = Field(None, description="The streams API's config.token.")
    client_certificate_sha256: list[str] | None = Field(
        None, min_length=1, description="SHA-256 fingerprints (hex, colons allowed) of Equinix's certificate."
    )

    _env = field_validator("token", mode="before")(_from_env)

    @field_validator("client_certificate_sha256")
    @classmethod
    def _fingerprints(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        cleaned = [v.replace(":", "").strip().lower() for v in value]
        if not all(re.fullmatch(r"[0-9a-f]{64}", v) for v in cleaned):
            raise ValueError("each fingerprint is 64 hex digits (colons allowed)")
        return cleaned

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.token is None) == (self.client_certificate_sha256 is None):
            raise ValueError("give either token (a streams PUSH) or client_certificate_sha256 (a WEBHOOK)")
        return self


class ReceiverConfig(_Strict):
    """The senders the receiver accepts (at least one) and its limits."""

    landing: Path | None = Field(
        None, description="Landing directory (default: $STREAMKEEPER_LANDING, else data/landing)."
    )
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1, le=64 * 1024 * 1024)
    header_timeout_seconds: float = Field(
        10.0, gt=0, le=3600, description="A request's headers must be complete within this time."
    )
    body_timeout_seconds: float = Field(
        30.0, gt=0, le=3600, description="A body that sends nothing for this long is answered 408."
    )
    idle_timeout_seconds: int = Field(
        30, ge=1, le=3600, description="A kept-alive connection idle this long between requests is closed."
    )
    max_connections: int = Field(
        256, ge=1, le=100_000, description="Connections beyond this many are answered 503 + Retry-After."
    )
    retry_after_seconds: int = Field(5, ge=0, le=3600, description="The Retry-After of that 503.")
    dma: dict[Name, DMAConsumer] = Field(default_factory=dict)
    thingspace: dict[Name, ThingSpaceTarget] = Field(default_factory=dict)
    stream: dict[Name, StreamWebhook] = Field(default_factory=dict)
    equinix: dict[Name, EquinixPush] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _some_sender(self) -> Self:
        if not (self.dma or self.thingspace or self.stream or self.equinix):
            raise ValueError("no senders: configure at least one of dma, thingspace, stream, equinix")
        return self

    def limits(self) -> dict[str, Any]:
        """The size, time and connection limits (what `config_from_spec` carries over from a base)."""
        return {name: getattr(self, name) for name in LIMITS}

    def secrets(self) -> list[str]:
        """Every secret value (for log redaction)."""
        out: list[str] = []
        for item in [
            *self.dma.values(),
            *self.thingspace.values(),
            *self.stream.values(),
            *self.equinix.values(),
        ]:
            for value in item.__dict__.values():
                if isinstance(value, SecretStr):
                    out.append(value.get_secret_value())
        return out


LIMITS = (
    "max_body_bytes",
    "header_timeout_seconds",
    "body_timeout_seconds",
    "idle_timeout_seconds",
    "max_connections",
    "retry_after_seconds",
)


def load_config(path: Path | str) -> ReceiverConfig:
    """Read a receiver config YAML file; a `ConfigError` names the file, line and field."""
    return load_yaml_model(path, ReceiverConfig)


def _route_name(url: str, prefix: str) -> str | None:
    """``https://rx.example.com/dma/conferences`` -> ``conferences`` (None: not one of our routes)."""
    match = re.match(rf"^/{prefix}/([A-Za-z0-9][A-Za-z0-9._-]{{0,63}})/?$", urlsplit(url).path)
    return match.group(1) if match else None


def config_from_spec(
    spec: ProvisioningSpec,
    secret: Callable[[str], str | SecretStr],
    base: ReceiverConfig | None = None,
) -> ReceiverConfig:
    """The senders a provisioning spec points at this receiver, added to `base` (Stream webhooks, limits).

    DMA subscriptions whose ``consumer_url`` path is ``/dma/<name>`` and that have notification credentials,
    and ThingSpace ``streamrest`` targets whose address path is ``/thingspace/<name>`` and that have
    credentials, become routes with those credentials; `secret` resolves a spec's ``*_block`` name to its
    value (Prefect ``Secret`` blocks: the caller's job, this package does not import Prefect). Spec entries
    on one route must agree (same connection and credentials), and a route of `base` cannot come again.
    """
    dma: dict[str, DMAConsumer] = dict(base.dma) if base else {}
    thingspace: dict[str, ThingSpaceTarget] = dict(base.thingspace) if base else {}
    equinix: dict[str, EquinixPush] = dict(base.equinix) if base else {}
    sources: dict[str, tuple[str | None, ...]] = {f"/dma/{n}": ("config",) for n in dma}
    sources.update({f"/thingspace/{n}": ("config",) for n in thingspace})  # route -> what made it
    sources.update({f"/equinix/{n}": ("config",) for n in equinix})

    def first(route: str, source: tuple[str | None, ...]) -> bool:
        """True the first time a route is seen; a route seen again must agree."""
        if route in sources:
            if sources[route] != source:
                raise ConfigError(f"spec: {route} is given twice, with different connections or credentials")
            return False
        sources[route] = source
        return True

    def value(block: str | None) -> SecretStr | None:
        if block is None:
            return None
        resolved = secret(block)
        return resolved if isinstance(resolved, SecretStr) else SecretStr(resolved)

    for connection in spec.dma:
        for sub in connection.subscriptions:
            name = _route_name(sub.consumer_url, "dma")
            notify = sub.notification_credentials
            if name is None or notify is None:
                continue
            if first(f"/dma/{name}", (connection.connection, notify.username, notify.password_block)):
                password = value(notify.password_block)
                assert password is not None
                dma[name] = DMAConsumer(
                    account=connection.connection, username=notify.username, password=password
                )
    for ts in spec.thingspace:
        for target in ts.targets:
            name = _route_name(target.address, "thingspace") if "://" in target.address else None
            creds = target.credentials
            if name is None or creds is None or target.scheme != "streamrest":
                continue
            source = (ts.account, creds.username, creds.password_block, creds.bearer_token_block)
            if first(f"/thingspace/{name}", source):
                thingspace[name] = ThingSpaceTarget(
                    account=ts.account,
                    username=creds.username,
                    password=value(creds.password_block),
                    bearer_token=value(creds.bearer_token_block),
                )
    for eq in spec.equinix:  # the streams API's PUSH url with its token (WEBHOOK routes come from `base`)
        for subscription in eq.subscriptions:
            push = subscription.config
            name = _route_name(push.url or "", "equinix") if push is not None else None
            if push is None or name is None or push.method != "PUSH" or push.token_block is None:
                continue
            if first(f"/equinix/{name}", (eq.connection, push.token_block)):
                equinix[name] = EquinixPush(account=eq.connection, token=value(push.token_block))
    limits = base.limits() if base else {}
    return ReceiverConfig(
        landing=base.landing if base else None,
        dma=dma,
        thingspace=thingspace,
        stream=dict(base.stream) if base else {},
        equinix=equinix,
        **limits,
    )
