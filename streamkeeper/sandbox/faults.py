"""Fault injection for the sandbox emulators, switchable at run time.

A `Faults` object says which share of requests get which fault; the `FaultMiddleware` applies it in front
of a vendor app. Kinds:

- ``429``: answer 429 with ``Retry-After`` (the vendor's error shape);
- ``5xx``: answer 502, 503 or 504;
- ``slow``: wait `slow_seconds`, then answer normally;
- ``drop``: close the connection without answering, before the app sees the request;
- ``drop_after``: let the app handle the request (it may create something), then close the connection
  without sending the answer: the case of a create whose answer was lost;
- ``token_expiry``: revoke every token the vendor has issued, then handle the request (so it gets 401);
- ``malformed``: handle the request, then send a truncated, unparseable body with the real status;
- ``html_error``: answer 500 with an HTML error page (what a proxy in front of a vendor sends);
- ``empty``: answer 200 with an empty body;
- ``wrong_shape``: answer 200 with valid JSON of the wrong shape (a bare number);
- ``huge``: answer 200 with a JSON body of `huge_bytes` bytes.

Set from Python (``sandbox.faults.set(rate=0.2, kinds=["429", "5xx"])``) or over HTTP
(``POST /_sandbox/faults`` with the same fields as JSON).
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

FaultKind = Literal[
    "429",
    "5xx",
    "slow",
    "drop",
    "drop_after",
    "token_expiry",
    "malformed",
    "html_error",
    "empty",
    "wrong_shape",
    "huge",
]


class FaultSettings(BaseModel):
    """What to inject. `rate` is the share of matching requests that get a fault."""

    rate: float = Field(0.0, ge=0.0, le=1.0, description="Share of requests to disturb, 0..1.")
    kinds: list[FaultKind] = Field(default_factory=list, description="Faults to pick from at random.")
    retry_after: str = Field("1", description="Retry-After value sent with 429.")
    slow_seconds: float = Field(2.0, ge=0, description="Delay of a slow response.")
    path: str | None = Field(None, description="Only requests whose path matches this regex.")
    method: str | None = Field(None, description="Only requests with this method.")
    seed: int | None = Field(None, description="Random seed, for repeatable runs.")
    limit: int | None = Field(None, ge=0, description="Stop after injecting this many faults.")
    huge_bytes: int = Field(48 * 1024 * 1024, ge=1, description="Size of a huge body.")


class Faults:
    """The run-time switch of one emulator's faults, and a count of what it injected."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.settings = FaultSettings()
        self._rng = random.Random()
        self._path_re: re.Pattern[str] | None = None
        self.injected: dict[str, int] = {}
        self._since_set = 0

    def set(self, **settings: object) -> None:
        """Replace the settings (fields of `FaultSettings`)."""
        new = FaultSettings.model_validate(settings)
        with self._lock:
            self.settings = new
            self._rng = random.Random(new.seed)
            self._path_re = re.compile(new.path) if new.path else None
            self._since_set = 0

    def clear(self) -> None:
        """No more faults."""
        self.set()

    def pick(self, method: str, path: str) -> FaultKind | None:
        """Decide whether this request gets a fault, and which."""
        with self._lock:
            s = self.settings
            if not s.kinds or s.rate <= 0:
                return None
            if s.method and s.method.upper() != method.upper():
                return None
            if self._path_re and not self._path_re.search(path):
                return None
            if s.limit is not None and self._since_set >= s.limit:
                return None
            if self._rng.random() >= s.rate:
                return None
            kind = self._rng.choice(s.kinds)
            self.injected[kind] = self.injected.get(kind, 0) + 1
            self._since_set += 1
            return kind

    def pick_5xx(self) -> int:
        with self._lock:
            return self._rng.choice((502, 503, 504))


ErrorResponder = Callable[[int, str, str], tuple[bytes, str]]
"""(status, code, message) -> (body, content type) in the vendor's own error shape."""


class FaultMiddleware:
    """ASGI middleware applying `Faults` to every request except the ``/_sandbox`` admin routes.

    Args:
        app: the vendor app.
        faults: the switch.
        error_body: renders the vendor's error shape.
        abort: closes the client connection of a request, given its ASGI scope.
        expire_tokens: revokes every token the vendor issued.
    """

    def __init__(
        self,
        app: ASGIApp,
        faults: Faults,
        error_body: ErrorResponder,
        abort: Callable[[Scope], None],
        expire_tokens: Callable[[], None],
    ) -> None:
        self.app = app
        self.faults = faults
        self.error_body = error_body
        self.abort = abort
        self.expire_tokens = expire_tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sandbox"):
            await self.app(scope, receive, send)
            return
        kind = self.faults.pick(scope["method"], scope["path"])
        if kind is None:
            await self.app(scope, receive, send)
        elif kind == "429":
            body, ctype = self.error_body(429, "rate_limited", "Too many requests (injected)")
            await _answer(
                send, 429, body, ctype, [(b"retry-after", self.faults.settings.retry_after.encode())]
            )
        elif kind == "5xx":
            status = self.faults.pick_5xx()
            body, ctype = self.error_body(status, "unavailable", "Service unavailable (injected)")
            await _answer(send, status, body, ctype)
        elif kind == "slow":
            await asyncio.sleep(self.faults.settings.slow_seconds)
            await self.app(scope, receive, send)
        elif kind == "drop":
            self.abort(scope)
        elif kind == "drop_after":
            await self.app(scope, receive, _discard)
            self.abort(scope)
        elif kind == "token_expiry":
            self.expire_tokens()
            await self.app(scope, receive, send)
        elif kind == "malformed":
            await self.app(scope, receive, _Truncating(send))
        elif kind == "html_error":
            page = b"<html><head><title>500 Internal Server Error</title></head><body><h1>Oops</h1></body></html>"
            await _answer(send, 500, page, "text/html; charset=utf-8")
        elif kind == "empty":
            await _answer(send, 200, b"", "application/json")
        elif kind == "wrong_shape":
            await _answer(send, 200, b"42", "application/json")
        elif kind == "huge":
            await _stream_huge(send, self.faults.settings.huge_bytes)


async def _answer(
    send: Send, status: int, body: bytes, ctype: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    if extra is None:
        extra = []
    headers = [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _stream_huge(send: Send, size: int) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(size).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    chunk = b" " * (1024 * 1024)
    sent = 0
    try:
        while sent < size:
            piece = chunk[: min(len(chunk), size - sent)]
            sent += len(piece)
            await send({"type": "http.response.body", "body": piece, "more_body": sent < size})
    except OSError:  # the client hung up once it had seen enough
        return


async def _discard(message: Message) -> None:
    return None


_TRUNCATED = b'{"truncated": '


class _Truncating:
    """Sends the real status with a body cut to an unparseable prefix."""

    def __init__(self, send: Send) -> None:
        self.send = send

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(_TRUNCATED)).encode()))
            await self.send({**message, "headers": headers})
        elif message["type"] == "http.response.body" and not getattr(self, "_sent", False):
            self._sent = True
            await self.send({"type": "http.response.body", "body": _TRUNCATED, "more_body": False})
