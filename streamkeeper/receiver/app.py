"""The push receiver: a Starlette app that authenticates senders and lands each delivery before its 2xx.

Routes (the names come from the `ReceiverConfig`):

- ``GET  /dma/<name>``: 200, the DMA's validation of a consumer URL (no credentials: the DMA sends none);
- ``POST /dma/<name>``: a DMA notification, Basic credentials of the subscription;
- ``POST /thingspace/<name>``: a ThingSpace ``streamrest`` delivery (one message, or a list when the
  subscription allows aggregation), Basic or bearer credentials of the target;
- ``POST /stream/<name>``: a Stream webhook, ``X-Stream-Signature`` = hex HMAC-SHA256 of the body;
- ``POST /equinix/<name>``: an Equinix SmartView push (a WEBHOOK channel over mutual TLS, or the streams
  API's PUSH with its token), see `streamkeeper.receiver.equinix`;
- ``GET  /healthz``: 200 and counters.

Answers: 200 once every record of the delivery is durable in the landing area; 401 bad credentials or
signature; 413 body over ``max_body_bytes`` (at once when Content-Length says so, else as soon as the
streamed body passes the limit); 400 malformed JSON or a body that is not the vendor's shape; 404 unknown
name. Nothing lands for a 4xx. Credentials are compared in constant time, never logged or stored; headers
are never stored.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import hmac
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from streamkeeper.receiver.config import ReceiverConfig
from streamkeeper.receiver.landing import LandingArea, landing_dir, new_delivery_id
from streamkeeper.receiver.sequence import SequenceStates, body_digest, classify
from streamkeeper.vendors.http.redact import register_secret
from streamkeeper.vendors.stream import verify_webhook_signature

log = logging.getLogger("streamkeeper.receiver")

SIGNATURE_HEADER = "x-stream-signature"


class Reject(Exception):
    """A delivery refused with a 4xx; nothing of it lands."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: Any) -> str | None:
    """A sender's timestamp as ISO 8601 (UTC), or None when absent or unreadable."""
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float):
            seconds = value / 1000 if value > 1e11 else value  # ours: milliseconds when that large
            return datetime.fromtimestamp(seconds, UTC).isoformat()
        if isinstance(value, str) and value.strip():
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes) -> Any:
    """Strict JSON (no NaN/Infinity); a 400 otherwise."""
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Reject(400, "malformed_json", "the body is not valid JSON") from None


def _content_hash(value: Any) -> str:
    """A stable id for an event that has none: the digest of its canonical JSON (ours)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _equal(given: str, expected: SecretStr | str) -> bool:
    value = expected.get_secret_value() if isinstance(expected, SecretStr) else expected
    return hmac.compare_digest(given.encode(), value.encode())


def check_basic(header: str | None, username: str, password: SecretStr) -> bool:
    """Constant-time check of a Basic ``Authorization`` header (user and password are both compared)."""
    scheme, _, credential = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, sep, given = base64.b64decode(credential.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return False
    user_ok = _equal(user, username)
    password_ok = _equal(given, password)
    return bool(sep) and user_ok and password_ok


def check_bearer(header: str | None, token: SecretStr) -> bool:
    scheme, _, credential = (header or "").partition(" ")
    return scheme.lower() == "bearer" and _equal(credential.strip(), token)


class Receiver:
    """The receiver's state: config, landing area, DMA sequence states, counters."""

    def __init__(self, config: ReceiverConfig, landing: Path | None = None, lock: bool = True) -> None:
        self.config = config
        self.landing = LandingArea(landing_dir(landing or config.landing), lock=lock)
        self.sequences = SequenceStates(self.landing)
        self.counts: Counter[str] = Counter()
        self._dma_locks: dict[tuple[str, str], asyncio.Lock] = {}
        for secret in config.secrets():
            register_secret(secret)
        for consumer in config.dma.values():
            register_secret(self._basic_token(consumer.username, consumer.password))
        for target in config.thingspace.values():
            if target.username and target.password:
                register_secret(self._basic_token(target.username, target.password))

    @staticmethod
    def _basic_token(username: str, password: SecretStr) -> str:
        return base64.b64encode(f"{username}:{password.get_secret_value()}".encode()).decode()

    def close(self) -> None:
        """Release the landing directory (the lock)."""
        self.landing.close()

    # -- plumbing ------------------------------------------------------------------------------------------
    def endpoint(self, vendor: str, handler: Callable[[Request, str], Awaitable[Response]]) -> Any:
        async def run(request: Request) -> Response:
            name = request.path_params["name"]
            try:
                response = await handler(request, name)
            except Reject as reject:
                self.counts[f"{vendor}.{reject.status}"] += 1
                client = request.client.host if request.client else "-"
                log.warning("%s/%s: %d %s (from %s)", vendor, name, reject.status, reject.code, client)
                headers = dict(reject.headers)
                if reject.status == 413:
                    headers["Connection"] = "close"  # the rest of the body is not read
                return JSONResponse(
                    {"error": reject.code, "message": reject.message}, reject.status, headers=headers
                )
            except ClientDisconnect:
                self.counts[f"{vendor}.disconnected"] += 1
                return Response(status_code=400)
            return response

        return run

    async def read_body(self, request: Request) -> bytes:
        """The body, refused with 413 once it passes the limit (before reading it when Content-Length does)."""
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                raise Reject(400, "bad_content_length", "Content-Length is not a number") from None
            if size > limit:
                raise Reject(413, "body_too_large", f"the body is over {limit} bytes")
        chunks: list[bytes] = []
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise Reject(413, "body_too_large", f"the body is over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def land(self, records: list[dict[str, Any]]) -> None:
        await anyio.to_thread.run_sync(self.landing.write, records)

    def _event(
        self,
        vendor: str,
        stream: str,
        event_id: str,
        received: datetime,
        payload: Any,
        *,
        subscription_id: str | None = None,
        account: str | None = None,
        event_type: Any = None,
        occurred_at: str | None = None,
        delivery_id: str | None = None,
    ) -> dict[str, Any]:
        return {
            "kind": "event",
            "delivery_id": delivery_id or new_delivery_id(received),
            "vendor": vendor,
            "stream": stream,
            "event_id": event_id,
            "subscription_id": subscription_id,
            "account": account,
            "event_type": None if event_type is None else str(event_type),
            "occurred_at": occurred_at,
            "received_at": received.isoformat(),
            "payload": payload,
        }

    def _accepted(self, vendor: str, records: list[dict[str, Any]], **more: Any) -> Response:
        self.counts[f"{vendor}.accepted"] += 1
        self.counts[f"{vendor}.events"] += len(records)
        event_ids = [r["event_id"] for r in records if r.get("kind") == "event"]
        return JSONResponse({"status": "accepted", "event_ids": event_ids, **more})

    # -- DMA -----------------------------------------------------------------------------------------------
    async def dma_validate(self, request: Request) -> Response:
        if request.path_params["name"] not in self.config.dma:
            return JSONResponse({"error": "not_found", "message": "no such consumer"}, 404)
        return JSONResponse({"status": "ok"})

    async def dma_notify(self, request: Request, name: str) -> Response:
        consumer = self.config.dma.get(name)
        if consumer is None:
            raise Reject(404, "not_found", "no such consumer")
        if not check_basic(request.headers.get("authorization"), consumer.username, consumer.password):
            raise Reject(
                401, "unauthorized", "bad credentials", {"WWW-Authenticate": 'Basic realm="receiver"'}
            )
        body = parse_json(await self.read_body(request))
        if not isinstance(body, dict):
            raise Reject(400, "not_a_notification", "the body is not a JSON object")
        fields = {_hyphenated(k): v for k, v in body.items()}
        subscription_id = _dma_subscription_id(fields)
        seq = fields.get("sequence-number")
        if isinstance(seq, str) and seq.strip().isdigit():
            seq = int(seq)
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise Reject(400, "not_a_notification", "sequence-number is missing or not a positive integer")
        received = _now()
        key = (name, subscription_id)
        lock = self._dma_locks.setdefault(key, asyncio.Lock())
        async with lock:
            state = await anyio.to_thread.run_sync(self.sequences.load, name, subscription_id)
            verdict = classify(state, seq, body_digest(body), int(time.time() * 1000))
            records: list[dict[str, Any]] = []
            if verdict.gap is not None:
                gap = verdict.gap
                records.append(
                    {
                        "kind": "gap",
                        "delivery_id": "gap-"
                        + hashlib.sha256(
                            f"{name}|{subscription_id}|{verdict.epoch}|{gap.expected}|{gap.received}".encode()
                        ).hexdigest()[:24],
                        "vendor": "dma",
                        "stream": name,
                        "subscription_id": subscription_id,
                        "expected": gap.expected,
                        "received": gap.received,
                        "detail": gap.detail,
                        "detected_at": received.isoformat(),
                    }
                )
                log.warning(
                    "dma/%s: subscription %s: notifications %d..%d not received (%s)",
                    name,
                    subscription_id,
                    gap.expected,
                    gap.received - 1,
                    gap.detail,
                )
            if verdict.restart:
                log.info(
                    "dma/%s: subscription %s: numbering restarted (epoch %d)",
                    name,
                    subscription_id,
                    verdict.epoch,
                )
            event = self._event(
                "dma",
                name,
                verdict.event_id(subscription_id),
                received,
                body,
                subscription_id=subscription_id,
                account=consumer.account,
                event_type=fields.get("notification-type"),
            )
            records.append(event)
            # order matters: the gap and the event land first, then the state moves (see sequence.py)
            await self.land(records)
            if verdict.state is not state:
                await anyio.to_thread.run_sync(self.sequences.save, name, subscription_id, verdict.state)
        if verdict.repeat:
            self.counts["dma.repeats"] += 1
        if verdict.gap is not None:
            self.counts["dma.gaps"] += 1
        return self._accepted("dma", [event], repeat=verdict.repeat)

    # -- ThingSpace ----------------------------------------------------------------------------------------
    async def thingspace(self, request: Request, name: str) -> Response:
        target = self.config.thingspace.get(name)
        if target is None:
            raise Reject(404, "not_found", "no such target")
        header = request.headers.get("authorization")
        if target.bearer_token is not None:
            ok = check_bearer(header, target.bearer_token)
        else:
            assert target.username is not None and target.password is not None
            ok = check_basic(header, target.username, target.password)
        if not ok:
            raise Reject(401, "unauthorized", "bad credentials")
        body = parse_json(await self.read_body(request))
        messages = body if isinstance(body, list) else [body]
        if not messages:
            raise Reject(400, "not_a_message", "the body is an empty list")
        received = _now()
        base_id = new_delivery_id(received)
        records = []
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("data"), dict):
                raise Reject(400, "not_a_message", "a message is not an object with a data object")
            data = message["data"]
            event_id = data.get("id") or data.get("transactionid") or _content_hash(message)
            records.append(
                self._event(
                    "thingspace",
                    str(message.get("kind") or data.get("kind") or "ts.event"),
                    str(event_id),
                    received,
                    message,
                    account=target.account,
                    event_type=message.get("action"),
                    occurred_at=_iso(data.get("createdon")),
                    delivery_id=base_id if len(messages) == 1 else f"{base_id}-{index}",
                )
            )
        await self.land(records)
        return self._accepted("thingspace", records)

    # -- Stream --------------------------------------------------------------------------------------------
    async def stream(self, request: Request, name: str) -> Response:
        webhook = self.config.stream.get(name)
        if webhook is None:
            raise Reject(404, "not_found", "no such webhook")
        raw = await self.read_body(request)
        if not verify_webhook_signature(raw, webhook.secret, request.headers.get(SIGNATURE_HEADER)):
            raise Reject(401, "bad_signature", f"{SIGNATURE_HEADER} does not match the body")
        body = parse_json(raw)
        if not isinstance(body, dict):
            raise Reject(400, "not_an_event", "the body is not a JSON object")
        received = _now()
        event_id = body.get("id") or _content_hash(body)
        record = self._event(
            "stream",
            name,
            str(event_id),
            received,
            body,
            account=webhook.account,
            event_type=body.get("type"),
            occurred_at=_iso(body.get("created_at")),
        )
        await self.land([record])
        return self._accepted("stream", [record])

    # -- health --------------------------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "counts": dict(self.counts)})


def _hyphenated(key: str) -> str:
    """``sequenceNumber`` (the JSON representation) -> ``sequence-number`` (the documented name)."""
    return "".join("-" + c.lower() if c.isupper() else c for c in key)


def _dma_subscription_id(fields: dict[str, Any]) -> str:
    given = fields.get("subscription-identifier")
    if given not in (None, ""):
        return str(given)
    url = fields.get("subscription-url")
    if isinstance(url, str) and url.strip():
        last = urlsplit(url.strip()).path.rstrip("/").rsplit("/", 1)[-1]
        if last:
            return last
    raise Reject(400, "not_a_notification", "no subscription-url or subscription-identifier")


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "not_found", "message": f"no route {request.url.path}"}, 404)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "method_not_allowed", "message": f"{request.method} not allowed"}, 405)


def create_app(config: ReceiverConfig, landing: Path | None = None) -> Starlette:
    """The receiver's ASGI app; ``app.state.receiver`` is its `Receiver` (call ``close()`` when done)."""
    from streamkeeper.receiver.equinix import equinix_push

    receiver = Receiver(config, landing)
    routes = [
        Route("/healthz", receiver.health, methods=["GET"]),
        Route("/dma/{name}", receiver.dma_validate, methods=["GET"]),
        Route("/dma/{name}", receiver.endpoint("dma", receiver.dma_notify), methods=["POST"]),
        Route("/thingspace/{name}", receiver.endpoint("thingspace", receiver.thingspace), methods=["POST"]),
        Route("/stream/{name}", receiver.endpoint("stream", receiver.stream), methods=["POST"]),
        Route(
            "/equinix/{name}",
            receiver.endpoint("equinix", functools.partial(equinix_push, receiver)),
            methods=["POST"],
        ),
    ]
    app = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_allowed})
    app.state.receiver = receiver
    return app
