"""The receiver's Equinix SmartView route: ``POST /equinix/<name>``, pushes of both subscription APIs.

- A **WEBHOOK** channel (the current API) posts batches of messages over mutual TLS (doc: "Webhook uses
  mutual TLS (mTLS) authentication"): Equinix presents its client certificate, which this route accepts only
  when its SHA-256 fingerprint is one the route's config pins. The certificate reaches the route through
  the ASGI TLS extension (``scope["extensions"]["tls"]["client_cert_chain"]``); uvicorn does not fill it in,
  so a receiver that terminates TLS itself asks for client certificates (`ReceiverServer(client_ca=...)`).
- A **PUSH** config of the streams (seed) API posts to its ``url`` with its ``token`` (seed: "Token used to
  send push request from the pub/sub layer"; ours: as ``Authorization: Bearer <token>``).

The body (ours: Equinix does not publish a webhook body) is one message ``{"type", "data"}`` or a JSON
array of them (a batch, up to the channel's ``batchSize``). Each message lands as one event: ``stream`` and
``subscription_id`` are the subscription named by the ``X-Equinix-Subscription-Id`` header (ours) when the
sender gives it, else the route name; ``event_id`` is the message digest the pull feed gives it too, so a
message received both ways is in ``events`` once. Heartbeats (``data.heartbeat: true`` or ``heartbeat:
"true"``) are acknowledged and not landed, as the pull feed skips them.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from streamkeeper.receiver.app import Reject, _now, ascii_header, check_bearer, parse_json
from streamkeeper.receiver.landing import EventRecord, new_delivery_id
from streamkeeper.vendors.equinix import SubscriptionMessage

if TYPE_CHECKING:
    from streamkeeper.receiver.app import Receiver

SUBSCRIPTION_HEADER = "x-equinix-subscription-id"  # ours


# -- mutual TLS: the client certificate, for the route -----------------------------------------------------
def client_certificate_sha256(scope: MutableMapping[str, Any]) -> str | None:
    """The hex SHA-256 fingerprint of the client certificate the connection presented, if any."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        return None
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(chain[0])).hexdigest()


# -- the route ---------------------------------------------------------------------------------------------
async def equinix_push(receiver: Receiver, request: Request, name: str) -> Response:
    route = receiver.config.equinix.get(name)
    if route is None:
        raise Reject(404, "not_found", "no such push URL")
    if route.token is not None:
        if not check_bearer(ascii_header(request, "authorization"), route.token):
            raise Reject(401, "unauthorized", "bad credentials")
    else:
        presented = client_certificate_sha256(request.scope)
        pinned = route.client_certificate_sha256 or []
        if presented is None or not any(hmac.compare_digest(presented, p) for p in pinned):
            raise Reject(401, "client_certificate", "no pinned client certificate was presented (mutual TLS)")
    body = parse_json(await receiver.read_body(request))
    items = body if isinstance(body, list) else [body]
    if not items:
        raise Reject(400, "not_a_message", "the body is an empty list")
    messages = []
    for item in items:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("type"), str)
            or not isinstance(item.get("data"), dict)
        ):
            raise Reject(400, "not_a_message", "a message is not an object with a type and a data object")
        try:
            messages.append((item, SubscriptionMessage.model_validate(item)))
        except ValidationError:
            raise Reject(400, "not_a_message", "a message does not parse") from None
    subscription = request.headers.get(SUBSCRIPTION_HEADER, "").strip() or None
    received = _now()
    base_id = new_delivery_id(received)
    records: list[EventRecord] = []
    heartbeats = 0
    for index, (raw, message) in enumerate(messages):
        if message.is_heartbeat:
            heartbeats += 1
            continue
        occurred = message.occurred_at
        records.append(
            receiver._event(
                "equinix",
                name,
                subscription or name,
                message.message_id,
                received,
                raw,
                subscription_id=subscription,
                account=route.account,
                event_type=message.type,
                occurred_at=occurred.isoformat() if occurred else None,
                delivery_id=base_id if len(messages) == 1 else f"{base_id}-{index}",
            )
        )
    if records:
        await receiver.land(records)
    receiver.counts["equinix.heartbeats"] += heartbeats
    return receiver._accepted("equinix", records, heartbeats=heartbeats)


__all__ = ["client_certificate_sha256", "equinix_push"]
