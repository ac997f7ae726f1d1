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
streamed body passes the limit); 408 a body that stalls for ``body_timeout_seconds``; 400 malformed JSON
(strict: no NaN or Infinity, no number beyond a double, no unpaired UTF-16 surrogate), a body that is not
the vendor's shape, or a value the history store could not hold (every record is validated by the landing
models before it is written); 404 unknown name; 503 with ``Retry-After`` when the landing area (its disk,
its S3 bucket) refuses the write. Nothing lands for a 4xx, and nothing is acknowledged with a 503.
Credentials are compared in constant time, never logged or stored; headers are never stored; untrusted
values (route names, ids) are logged escaped, never raw. Connection limits (slow headers, idle connections, the connection cap with its
503) are the server's: `streamkeeper.receiver.server`.
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
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio.to_thread
from pydantic import SecretStr, ValidationError
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from streamkeeper.errors import StreamkeeperError
from streamkeeper.receiver.config import ReceiverConfig
from streamkeeper.receiver.landing import (
    BIGINT_MAX,
    EventRecord,
    GapRecord,
    LandingArea,
    landing_dir,
    new_delivery_id,
)
from streamkeeper.receiver.sequence import SequenceStates, body_digest, classify
from streamkeeper.timestamps import parse_time
from streamkeeper.validation import describe
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
    """A sender's timestamp as ISO 8601 (UTC), or None when absent, unreadable or a sender's "unset"."""
    parsed = parse_time(value)
    return parsed.isoformat() if parsed else None


_PLAIN = re.compile(r"^[A-Za-z0-9._:@/+-]{0,120}$")


def untrusted(value: Any) -> str:
    """A sender's value as it may go into a log line: plain when it is a plain token, else its escaped repr
    (cut to 120 characters), so a newline or an escape sequence cannot forge or colour a line."""
    text = value if isinstance(value, str) else repr(value)
    if _PLAIN.match(text):
        return text
    quoted = repr(text)
    return quoted if len(quoted) <= 120 else quoted[:117] + "..."


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise Reject(400, "number_out_of_range", "a JSON number is beyond what a double holds")
    return value


def parse_json(body: bytes) -> Any:
    """Strict JSON: no NaN/Infinity, no number beyond a double, no unpaired surrogate; a 400 otherwise."""
    try:
        value = json.loads(body, parse_constant=_reject_constant, parse_float=_finite)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Reject(400, "malformed_json", "the body is not valid JSON") from None
    if _has_lone_surrogate(value):
        raise Reject(400, "unpaired_surrogate", "a JSON string holds an unpaired UTF-16 surrogate")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    """Whether any string (key or value) holds a surrogate that is not half of a pair (not UTF-8 text)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _content_hash(value: Any) -> str:
    """A stable id for an event that has none: the digest of its canonical JSON (ours)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _id(value: Any) -> str | None:
    """A sender's id field as text: a non-empty string or an integer; anything else is no id."""
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _scalar(value: Any) -> str | None:
    """A short descriptive field (a type, an action) as text, or None when it is not a scalar."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def ascii_header(request: Request, name: str) -> str | None:
    """A credential header's value, or None when absent or not ASCII (it cannot match, and comparing a
    non-ASCII ``str`` in constant time raises)."""
    value = request.headers.get(name)
    return value if value is not None and value.isascii() else None


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

    def __init__(self, config: ReceiverConfig, landing: Path | str | None = None, lock: bool = True) -> None:
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

    # -- plumbing: what every route gets ---------------------------------------------------------------------
    def endpoint(self, vendor: str, handler: Callable[[Request, str], Awaitable[Response]]) -> Any:
        """A route of `vendor`: a `Reject` becomes its 4xx (logged with the values escaped), a client that
        goes away mid-body a 400 that no one reads; nothing lands for either."""

        async def run(request: Request) -> Response:
            name = request.path_params["name"]
            try:
                response = await handler(request, name)
            except Reject as reject:
                self.counts[f"{vendor}.{reject.status}"] += 1
                client = request.client.host if request.client else "-"
                log.warning(
                    "%s/%s: %d %s (from %s)", vendor, untrusted(name), reject.status, reject.code, client
                )
                headers = dict(reject.headers)
                if reject.status in (408, 413):
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
        """The body: 413 once it passes the limit (before reading it when Content-Length says so), 408 when
        no part of it arrives for ``body_timeout_seconds``."""
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            if not (declared.isascii() and declared.strip().isdigit()):
                raise Reject(400, "bad_content_length", "Content-Length is not a number")
            if int(declared) > limit:
                raise Reject(413, "body_too_large", f"the body is over {limit} bytes")
        chunks: list[bytes] = []
        received = 0
        stream = request.stream()
        while True:
            try:
                async with asyncio.timeout(self.config.body_timeout_seconds):
                    chunk = await anext(stream)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise Reject(
                    408, "body_timeout", f"no part of the body came for {self.config.body_timeout_seconds} s"
                ) from None
            received += len(chunk)
            if received > limit:
                raise Reject(413, "body_too_large", f"the body is over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def land(self, records: Sequence[EventRecord | GapRecord]) -> None:
        """Write a delivery's records durably (all validated already: they are landing models); a 503 with
        ``Retry-After`` when the landing area (disk, S3) refuses them: nothing was acknowledged."""
        rows = [record.model_dump(mode="json", exclude_none=False) for record in records]
        try:
            await anyio.to_thread.run_sync(self.landing.write, rows)
        except (OSError, StreamkeeperError) as exc:
            log.error("landing area %s: %s", self.landing.location, exc)
            raise Reject(
                503,
                "landing_unavailable",
                "the delivery could not be stored; send it again",
                {"Retry-After": "5"},
            ) from None

    def _event(
        self,
        vendor: str,
        route: str,
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
        previous_event_id: str | None = None,
    ) -> EventRecord:
        """An event record; a value the store could not hold is a 400 naming the field (never its value)."""
        return _record(
            EventRecord,
            delivery_id=delivery_id or new_delivery_id(received),
            vendor=vendor,
            route=route,
            stream=stream,
            event_id=event_id,
            previous_event_id=previous_event_id,
            subscription_id=subscription_id,
            account=account,
            event_type=_scalar(event_type),
            occurred_at=occurred_at,
            received_at=received,
            payload=payload,
        )

    def _accepted(self, vendor: str, records: list[EventRecord], **more: Any) -> Response:
        self.counts[f"{vendor}.accepted"] += 1
        self.counts[f"{vendor}.events"] += len(records)
        return JSONResponse({"status": "accepted", "event_ids": [r.event_id for r in records], **more})

    # -- DMA -----------------------------------------------------------------------------------------------
    async def dma_validate(self, request: Request) -> Response:
        if request.path_params["name"] not in self.config.dma:
            return JSONResponse({"error": "not_found", "message": "no such consumer"}, 404)
        return JSONResponse({"status": "ok"})

    async def dma_notify(self, request: Request, name: str) -> Response:
        consumer = self.config.dma.get(name)
        if consumer is None:
            raise Reject(404, "not_found", "no such consumer")
        if not check_basic(ascii_header(request, "authorization"), consumer.username, consumer.password):
            raise Reject(
                401, "unauthorized", "bad credentials", {"WWW-Authenticate": 'Basic realm="receiver"'}
            )
        body = parse_json(await self.read_body(request))
        if not isinstance(body, dict):
            raise Reject(400, "not_a_notification", "the body is not a JSON object")
        fields = {_hyphenated(k): v for k, v in body.items()}
        subscription_id = _dma_subscription_id(fields)
        seq = _sequence_number(fields.get("sequence-number"))
        received = _now()
        key = (name, subscription_id)
        lock = self._dma_locks.setdefault(key, asyncio.Lock())
        async with lock:
            state = await anyio.to_thread.run_sync(self.sequences.load, name, subscription_id)
            verdict = classify(state, seq, body_digest(body), int(time.time() * 1000))
            records: list[EventRecord | GapRecord] = []
            if verdict.gap is not None:
                gap = verdict.gap
                records.append(
                    _record(
                        GapRecord,
                        delivery_id="gap-"
                        + hashlib.sha256(
                            f"{name}|{subscription_id}|{verdict.epoch}|{gap.expected}|{gap.received}".encode()
                        ).hexdigest()[:24],
                        vendor="dma",
                        stream=name,
                        subscription_id=subscription_id,
                        expected=gap.expected,
                        received=gap.received,
                        detail=gap.detail,
                        detected_at=received,
                    )
                )
                log.warning(
                    "dma/%s: subscription %s: notifications %d..%d not received (%s)",
                    name,
                    untrusted(subscription_id),
                    gap.expected,
                    gap.received - 1,
                    gap.detail,
                )
            if verdict.restart:
                log.info(
                    "dma/%s: subscription %s: numbering restarted (epoch %d)",
                    name,
                    untrusted(subscription_id),
                    verdict.epoch,
                )
            event = self._event(
                "dma",
                f"/dma/{name}",
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
        header = ascii_header(request, "authorization")
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
            kind = message.get("kind") or data.get("kind") or "ts.event"
            if not isinstance(kind, str):
                raise Reject(400, "not_a_message", "kind is not a string")
            vendor_id = _id(data.get("id")) or _id(data.get("transactionid")) or _content_hash(message)
            records.append(
                self._event(
                    "thingspace",
                    f"/thingspace/{name}",
                    kind,
                    # the target is part of the identity: the same data.id on two targets (two accounts)
                    # is two events; `previous_event_id` is the id before the target was part of it
                    f"{name}:{vendor_id}",
                    received,
                    message,
                    account=target.account,
                    event_type=message.get("action"),
                    occurred_at=_iso(data.get("createdon")),
                    delivery_id=base_id if len(messages) == 1 else f"{base_id}-{index}",
                    previous_event_id=vendor_id,
                )
            )
        await self.land(list(records))
        return self._accepted("thingspace", records)

    # -- Stream --------------------------------------------------------------------------------------------
    async def stream(self, request: Request, name: str) -> Response:
        webhook = self.config.stream.get(name)
        if webhook is None:
            raise Reject(404, "not_found", "no such webhook")
        raw = await self.read_body(request)
        if not verify_webhook_signature(raw, webhook.secret, ascii_header(request, SIGNATURE_HEADER)):
            raise Reject(401, "bad_signature", f"{SIGNATURE_HEADER} does not match the body")
        body = parse_json(raw)
        if not isinstance(body, dict):
            raise Reject(400, "not_an_event", "the body is not a JSON object")
        received = _now()
        record = self._event(
            "stream",
            f"/stream/{name}",
            name,  # the webhook (one organisation's) is the stream: it is part of the identity already
            _id(body.get("id")) or _content_hash(body),
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


R = TypeVar("R", EventRecord, GapRecord)


def _record(model: type[R], **fields: Any) -> R:
    """A landing record, or a 400 naming the fields the store could not hold."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise Reject(400, "invalid_value", describe(exc)) from None


def _sequence_number(value: Any) -> int:
    """A DMA ``sequence-number``: an integer (or ASCII digits) in 1 .. 2**63-1 (the BIGINT of event_gaps)."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip()) if len(value.strip()) <= 19 else BIGINT_MAX + 1
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= BIGINT_MAX:
        raise Reject(
            400,
            "not_a_notification",
            "sequence-number is missing or not an integer in 1..9223372036854775807",
        )
    return value


def _hyphenated(key: str) -> str:
    """``sequenceNumber`` (the JSON representation) -> ``sequence-number`` (the documented name)."""
    return "".join("-" + c.lower() if c.isupper() else c for c in key)


def _dma_subscription_id(fields: dict[str, Any]) -> str:
    given = fields.get("subscription-identifier")
    if given not in (None, ""):
        identifier = _id(given)
        if identifier is None:
            raise Reject(400, "not_a_notification", "subscription-identifier is not a string or an integer")
        return identifier
    url = fields.get("subscription-url")
    if isinstance(url, str) and url.strip():
        try:
            last = urlsplit(url.strip()).path.rstrip("/").rsplit("/", 1)[-1]
        except ValueError:  # e.g. an unclosed IPv6 bracket
            raise Reject(400, "not_a_notification", "subscription-url is not a URL") from None
        if last:
            return last
    raise Reject(400, "not_a_notification", "no subscription-url or subscription-identifier")


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "not_found", "message": f"no route {request.url.path}"}, 404)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "method_not_allowed", "message": f"{request.method} not allowed"}, 405)


def create_app(config: ReceiverConfig, landing: Path | str | None = None) -> Starlette:
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
