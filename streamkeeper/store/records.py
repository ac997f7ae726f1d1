"""The rows the history store takes, as pydantic models (the store's boundary)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_serializer

Change = Literal[
    "created", "updated", "refreshed", "deleted", "adopted", "drifted", "expired", "recreated", "observed"
]


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_json(value: Any) -> str | None:
    """JSON text for a JSON column (None stays NULL)."""
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, default=str)


class SubscriptionVersion(BaseModel):
    """One version of one subscription at a vendor. Writing it closes the previous version."""

    vendor: str
    account: str
    subscription_id: str
    name: str | None = None
    kind: str | None = None
    desired: dict[str, Any] | None = None
    observed: dict[str, Any] | None = None
    etag: str | None = None
    time_to_live: int | None = None
    expires_at: datetime | None = None
    previous_expires_at: datetime | None = None
    status: str | None = None
    change: Change
    detail: str | None = None
    owner: str | None = None
    """The flow that owns it, when not the spec (provision-subscriptions): e.g. ``onboard-organization``."""
    valid_from: datetime = Field(default_factory=utcnow)
    version_id: str = Field(default_factory=lambda: uuid.uuid4().hex)

    @field_serializer("desired", "observed")
    def _json(self, value: dict[str, Any] | None) -> str | None:
        return to_json(value)


class Snapshot(BaseModel):
    """What an audit saw of one subscription (body is None when the vendor answered 304)."""

    snapshot_id: str
    taken_at: datetime = Field(default_factory=utcnow)
    vendor: str
    account: str
    subscription_id: str
    name: str | None = None
    etag: str | None = None
    not_modified: bool = False
    body: dict[str, Any] | None = None

    @field_serializer("body")
    def _json(self, value: dict[str, Any] | None) -> str | None:
        return to_json(value)


class OnboardingStep(BaseModel):
    """One step of an organisation's onboarding (ids only, never a secret)."""

    org_key: str
    org_id: str | None = None
    step: str
    status: Literal["done", "skipped", "failed", "waiting"]
    ids: dict[str, Any] | None = None
    detail: str | None = None
    started_at: datetime
    finished_at: datetime | None = None
    duration_ms: float | None = None

    @field_serializer("ids")
    def _json(self, value: dict[str, Any] | None) -> str | None:
        return to_json(value)


class TokenEvent(BaseModel):
    """A token lifecycle event (never the token itself)."""

    vendor: str
    account: str
    event: Literal["issued", "refreshed", "rotated", "failed", "renewed"]
    expires_at: datetime | None = None
    detail: str | None = None
    at: datetime = Field(default_factory=utcnow)


class EventGap(BaseModel):
    """A gap detected in a stream's sequence numbers (lost deliveries)."""

    vendor: str
    stream: str
    subscription_id: str | None = None
    expected: int | None = None
    received: int | None = None
    detail: str | None = None
    detected_at: datetime = Field(default_factory=utcnow)


class RejectedDelivery(BaseModel):
    """An acknowledged delivery the loader could not load: moved aside (``landing_path``), with the reason."""

    vendor: str | None = None
    route: str | None = None
    delivery_id: str | None = None
    received_at: datetime | None = None
    reason: str
    landing_path: str
    quarantined_at: datetime = Field(default_factory=utcnow)


EVENT_COLUMNS = [
    "vendor",
    "stream",
    "event_id",
    "subscription_id",
    "account",
    "event_type",
    "occurred_at",
    "received_at",
    "payload",
]
"""The columns an events batch (a DataFrame) carries; `loaded_at` and `flow_run_id` are added on load."""
