"""Vendor payloads -> rows of the ``events`` table, and rows -> the DataFrame `HistoryStore.load_events` takes.

A row is a dict with the `EVENT_COLUMNS`: ``vendor, stream, event_id, subscription_id, account, event_type,
occurred_at, received_at, payload``. ``payload`` is JSON text (serialised once, here), the two times are
aware UTC datetimes (``occurred_at`` may be None).

Where each vendor puts the event type and the time it happened (see ``../shared/VENDORS.md``):

| vendor | event_type | occurred_at |
|---|---|---|
| PLT (PubNub) | ``eventType`` | ``timeStamp`` |
| Equinix | ``type`` | ``data.readingTime`` / ``triggeredTime`` / ... (`SubscriptionMessage.occurred_at`) |
| ThingSpace | ``kind`` (``ts.event``...) | ``data.createdon`` |
| anything else on SQS / Kinesis | ``eventType`` / ``type`` / ``kind`` | ``timeStamp`` / ``timestamp`` / ``time`` / ... |
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, overload

import pandas as pd
from pydantic import ValidationError

from streamkeeper.store.records import EVENT_COLUMNS
from streamkeeper.timestamps import parse_time
from streamkeeper.vendors.equinix import SubscriptionMessage

Row = dict[str, Any]

_TIME_KEYS = ("timeStamp", "timestamp", "time", "occurredAt", "occurred_at", "eventTime", "createdon")
_TYPE_KEYS = ("eventType", "event_type", "type", "kind")


def to_json(payload: Any) -> str:
    """A payload as compact JSON text (what the ``payload`` column holds).

    A string holding an unpaired UTF-16 surrogate (a sender's ``"\\ud800"``) is JSON that DuckDB's JSON
    type refuses, and one such row used to fail its whole batch, every run: it is stored with the surrogate
    spelled out instead (``holdable``), so the payload keeps what was sent, readably.
    """
    text = json.dumps(payload, separators=(",", ":"), default=str)
    if "\\ud" in text or "\\uD" in text:  # a surrogate escape: a pair (an emoji) or a lone one
        holdable_payload = _holdable_strings(payload)
        if holdable_payload is not payload:
            text = json.dumps(holdable_payload, separators=(",", ":"), default=str)
    return text


def _holdable_strings(value: Any) -> Any:
    """`value` with every string made `holdable` (the same object when nothing needed it)."""
    if isinstance(value, str):
        return holdable(value)
    if isinstance(value, dict):
        items = [(_holdable_strings(k), _holdable_strings(v)) for k, v in value.items()]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items(), strict=True)):
            return value
        return dict(items)
    if isinstance(value, list | tuple):
        converted = [_holdable_strings(v) for v in value]
        return value if all(a is b for a, b in zip(converted, value, strict=True)) else converted
    return value


def row(
    *,
    vendor: str,
    stream: str,
    event_id: str,
    payload: Any,
    received_at: datetime,
    event_type: str | None = None,
    occurred_at: datetime | None = None,
    subscription_id: str | None = None,
    account: str | None = None,
    previous_event_id: str | None = None,
) -> Row:
    """One events row; `payload` is serialised to JSON text unless it already is text.

    `previous_event_id`: the id the event had under an earlier id format (see `identity`); kept in the
    row dict, never a column.
    """
    out: Row = {
        "vendor": holdable(vendor),
        "stream": holdable(stream),
        "event_id": holdable(event_id),
        "subscription_id": holdable(subscription_id),
        "account": holdable(account),
        "event_type": holdable(event_type),
        "occurred_at": occurred_at,
        "received_at": received_at,
        "payload": payload if isinstance(payload, str) else to_json(payload),
    }
    if previous_event_id:
        out["previous_event_id"] = holdable(previous_event_id)
    return out


@overload
def holdable(text: str) -> str: ...
@overload
def holdable(text: None) -> None: ...
def holdable(text: str | None) -> str | None:
    """Text a VARCHAR column can hold: an unpaired UTF-16 surrogate (a sender's ``"\\ud800"``, which is
    not UTF-8) becomes its escape ``\\ud800``, so such a value costs neither its row nor its batch."""
    if text is None or text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


# -- PLT over PubNub ---------------------------------------------------------------------------------------
def plt_event(
    *,
    stream_id: str,
    channel_alias: str,
    timetoken: int,
    message: Any,
    received_at: datetime,
    subscription_id: str | None = None,
    tenant_id: str | None = None,
    channel_id: str | None = None,
) -> Row:
    """A PLT event from PubNub: ``eventType`` and ``timeStamp`` (doc); event_id ``<channel id>:<timetoken>``.

    `channel_alias` is the channel without the partner id (a secret), e.g. ``sub1``; `channel_id` is what
    identifies the channel among every partner's (`pubnub_source.channel_id`: the alias and a digest of the
    whole name, ``sub1~3fa9c2d1``). When given, the event's previous id (``<alias>:<timetoken>``, from
    before the partner was part of it) goes with the row (see `identity`).
    """
    body = message if isinstance(message, Mapping) else {}
    event_type = body.get("eventType")
    tenant = body.get("tenantId") or tenant_id
    return row(
        vendor="plt",
        stream=stream_id,
        event_id=f"{channel_id or channel_alias}:{timetoken}",
        previous_event_id=f"{channel_alias}:{timetoken}" if channel_id else None,
        subscription_id=subscription_id,
        account=str(tenant) if tenant else None,
        event_type=str(event_type) if event_type is not None else None,
        occurred_at=parse_time(body.get("timeStamp")),
        received_at=received_at,
        payload=message,
    )


# -- Equinix pull feed -------------------------------------------------------------------------------------
def equinix_event(
    *, account: str, subscription_id: str, message: SubscriptionMessage, received_at: datetime
) -> Row:
    """An Equinix SmartView message: ``type``, the reading or alert time; event_id: the message digest.

    The feed gives messages no id (and regroups a page by kind), so the id is `SubscriptionMessage.message_id`,
    a digest of the whole message: the same message read twice (or pulled and pushed) gets the same id.
    Values stay as they came (strings in the published definition, numbers in older answers); times with a
    ``T`` or a space, with or without a zone (UTC), parse alike. Heartbeats are the caller's to skip
    (`SubscriptionMessage.is_heartbeat`, either form).
    """
    return row(
        vendor="equinix",
        stream=subscription_id,
        event_id=message.message_id,
        subscription_id=subscription_id,
        account=account,
        event_type=message.type,
        occurred_at=parse_time(message.occurred_at),
        received_at=received_at,
        payload=message.model_dump(mode="json", by_alias=True, exclude_none=True),
    )


# -- whatever arrives on an AWS queue or stream ------------------------------------------------------------
def decode_body(body: str | bytes) -> Any:
    """A message body as JSON when it is JSON, else ``{"raw": <text>}`` (bytes that are not UTF-8: hex)."""
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return {"raw_hex": body.hex()}
    else:
        text = body
    try:
        return json.loads(text)
    except ValueError:
        return {"raw": text}


def describe(payload: Any) -> tuple[str | None, str | None, datetime | None, str | None]:
    """Guess ``(vendor, event_type, occurred_at, account)`` from a payload's shape; None where it says nothing.

    - ThingSpace (doc): ``{"kind": "ts.event...", "action", "data": {"createdon", ...}}``;
    - Equinix (doc): ``{"type": "environmental"|..., "data": {"readingTime", ...}}``;
    - PLT (doc): ``{"eventType", "timeStamp", "tenantId", ...}``.
    """
    if not isinstance(payload, Mapping):
        return None, None, None, None
    data = payload.get("data")
    data = data if isinstance(data, Mapping) else {}
    kind = payload.get("kind")
    if isinstance(kind, str) and kind.startswith("ts.") and data:
        return "thingspace", kind, parse_time(data.get("createdon")), None
    if isinstance(payload.get("type"), str) and data and ("ibx" in data or "readingTime" in data):
        try:
            message = SubscriptionMessage.model_validate(dict(payload))
        except ValidationError:  # not quite Equinix's shape: described as anything else would be
            message = None
        if message is not None:
            return "equinix", message.type, parse_time(message.occurred_at), None
    if isinstance(payload.get("eventType"), str) and "timeStamp" in payload:
        tenant = payload.get("tenantId")
        return "plt", payload["eventType"], parse_time(payload.get("timeStamp")), tenant and str(tenant)
    event_type = next((payload[k] for k in _TYPE_KEYS if isinstance(payload.get(k), str)), None)
    occurred = next((t for k in _TIME_KEYS if (t := parse_time(payload.get(k))) is not None), None)
    return None, event_type, occurred, None


def aws_events(
    *,
    fallback_vendor: str,
    stream: str,
    event_id: str,
    body: str | bytes,
    received_at: datetime,
    sent_at: datetime | None = None,
) -> list[Row]:
    """Rows from one SQS message or Kinesis record: one row, or one per element when the body is a list.

    A vendor that aggregates (ThingSpace with ``allowaggregation``) sends a JSON list; its elements get
    ``<event_id>#<index>``. The vendor is guessed from the payload shape (`describe`), else `fallback_vendor`.
    """
    decoded = decode_body(body)
    items = decoded if isinstance(decoded, list) else [decoded]
    rows = []
    for index, payload in enumerate(items):
        vendor, event_type, occurred_at, account = describe(payload)
        rows.append(
            row(
                vendor=vendor or fallback_vendor,
                stream=stream,
                event_id=event_id if not isinstance(decoded, list) else f"{event_id}#{index}",
                account=account,
                event_type=event_type,
                occurred_at=occurred_at or sent_at,
                received_at=received_at,
                payload=payload,
            )
        )
    return rows


# -- the receiver's landing files --------------------------------------------------------------------------
_REQUIRED_TEXT = ("vendor", "stream", "event_id")


def landing_event(record: Mapping[str, Any]) -> Row:
    """A row from a landing file's JSON object (the CONVENTIONS format).

    An ``occurred_at`` that does not parse, or is a sender's "unset" (`streamkeeper.timestamps`), is
    stored as NULL: a vendor's odd time is data, never a reason to lose the event (the payload keeps it).

    Raises:
        ValueError: a required column is missing or empty, or ``received_at`` does not parse.
    """
    for name in _REQUIRED_TEXT:
        value = record.get(name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")
    received_at = parse_time(record.get("received_at"))
    if received_at is None:
        raise ValueError("received_at must be an ISO 8601 time")
    return row(
        vendor=record["vendor"],
        stream=record["stream"],
        event_id=record["event_id"],
        subscription_id=_text(record.get("subscription_id")),
        account=_text(record.get("account")),
        event_type=_text(record.get("event_type")),
        occurred_at=parse_time(record.get("occurred_at")),
        received_at=received_at,
        payload=to_json(record.get("payload")),
        previous_event_id=_text(record.get("previous_event_id")),
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# -- rows -> DataFrame -------------------------------------------------------------------------------------
def frame(rows: Sequence[Row]) -> pd.DataFrame:
    """The events batch for `HistoryStore.load_events` (times as ``datetime64[us, UTC]``)."""
    batch = pd.DataFrame.from_records(list(rows), columns=EVENT_COLUMNS)
    for column in ("occurred_at", "received_at"):
        batch[column] = pd.to_datetime(batch[column], utc=True).astype("datetime64[us, UTC]")
    return batch


__all__ = [
    "Row",
    "aws_events",
    "decode_body",
    "describe",
    "equinix_event",
    "frame",
    "holdable",
    "landing_event",
    "parse_time",
    "plt_event",
    "row",
    "to_json",
]
