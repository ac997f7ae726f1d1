"""What every vendor emulator shares: state reset, request counters, admin routes, faults, a server.

A vendor emulator subclasses `VendorSandbox`, keeps its state in memory, and lists its routes (async
Starlette endpoints, so all state changes happen on the server's event loop). `SandboxServer` runs one on
loopback in a background thread, on a given port or a free one (port 0), over HTTP or HTTPS.

Admin routes, on every emulator (never part of the vendor's API):

- ``GET /_sandbox/stats``: request counts (total, writes, by ``METHOD path``) and injected faults;
- ``POST /_sandbox/faults`` / ``DELETE /_sandbox/faults``: set or clear fault injection (see `faults`);
- ``POST /_sandbox/reset``: forget all state and counts;
- ``POST /_sandbox/clock`` with ``{"advance": seconds}``: move the emulator's clock forward (answers the
  offset).

Every emulator tells time by its `SandboxClock` (wall time plus an offset a test or a soak moves forward,
never back); `Sandbox` gives all the emulators it starts one clock, so moving it moves every vendor.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from streamkeeper.sandbox.faults import FaultMiddleware, Faults
from streamkeeper.sandbox.tls import TLSFiles

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@functools.cache
def outbound_tls() -> ssl.SSLContext:
    """The TLS settings of what an emulator sends out (DMA notifications, Stream webhooks): httpx's default,
    made once. httpx builds this context for every new client (~20 ms of CPU loading the CA bundle): with a
    client per delivery, that was ~4 % of the fault suite's CPU (py-spy)."""
    return httpx.create_ssl_context()


class RequestCounter:
    """Counts requests by ``METHOD path`` and writes, for tests that assert "no write call"."""

    def __init__(self, read_only: Sequence[str]) -> None:
        self._read_only = [re.compile(p) for p in read_only]
        self._lock = threading.Lock()
        self.by_route: Counter[str] = Counter()
        self.total = 0
        self.writes = 0

    def count(self, method: str, path: str) -> None:
        with self._lock:
            self.total += 1
            self.by_route[f"{method} {path}"] += 1
            if method in WRITE_METHODS and not any(p.search(path) for p in self._read_only):
                self.writes += 1

    def reset(self) -> None:
        with self._lock:
            self.by_route.clear()
            self.total = 0
            self.writes = 0

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"total": self.total, "writes": self.writes, "by_route": dict(self.by_route)}


class SandboxClock:
    """An emulator's time: the wall clock plus an offset that only moves forward.

    One instance may be shared by several emulators (`VendorSandbox.clock`), so a test moves time for every
    vendor at once. Thread-safe: the server loop reads it while a test moves it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0

    @property
    def offset(self) -> float:
        """Seconds this clock is ahead of the wall clock."""
        return self._offset

    def now(self) -> float:
        """Seconds since the epoch, as the emulators see it."""
        return time.time() + self._offset

    def now_utc(self) -> datetime:
        """`now` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.now(), UTC)

    def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds` (tokens, sessions, subscriptions expire by it).

        Raises:
            ValueError: `seconds` is negative (the emulated clock never goes back).
        """
        if seconds < 0:
            raise ValueError(f"a sandbox clock only moves forward, not by {seconds} s")
        with self._lock:
            self._offset += seconds

    def reset(self) -> None:
        """Back to the wall clock."""
        with self._lock:
            self._offset = 0.0


class VendorSandbox:
    """Base class of the vendor emulators.

    Subclasses set `name`, implement `routes()` and `reset_state()`, and override `error_body()` with the
    vendor's error shape and `expire_tokens()` when the vendor issues tokens. `read_only` lists regexes of
    POST paths that only read (token requests, queries), so they do not count as writes.
    """

    name: ClassVar[str] = "vendor"
    read_only: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.clock = SandboxClock()
        self.faults = Faults()
        self.requests = RequestCounter(self.read_only)
        self.server: SandboxServer | None = None
        self.reset_state()

    # -- to implement --------------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        raise NotImplementedError

    def reset_state(self) -> None:
        raise NotImplementedError

    def error_body(self, status: int, code: str, message: str) -> tuple[bytes, str]:
        """The vendor's error shape; the default is ``{"error", "error_description"}``."""
        return json.dumps({"error": code, "error_description": message}).encode(), "application/json"

    def expire_tokens(self) -> None:
        """Revoke every token issued so far (fault ``token_expiry``). No-op for vendors without tokens."""

    # -- shared --------------------------------------------------------------------------------------------
    def now(self) -> float:
        """The emulator's time, in seconds since the epoch (see `clock`)."""
        return self.clock.now()

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock (shared with every emulator of its `Sandbox`) forward."""
        self.clock.advance(seconds)

    def error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
        """An error response in the vendor's shape."""
        body, ctype = self.error_body(status, code, message)
        return Response(body, status_code=status, media_type=ctype, headers=headers)

    def reset(self) -> None:
        """Forget all state, counts and faults, and put the clock back to the wall clock."""
        self.clock.reset()
        self.reset_state()
        self.requests.reset()
        self.faults.clear()

    def call_in_loop(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine on the server's event loop from another thread and return its result.

        The way tests and generators change state or send deliveries while the server runs.
        """
        if self.server is None or self.server.loop is None:
            raise RuntimeError(f"{self.name} sandbox is not running")
        return asyncio.run_coroutine_threadsafe(coro, self.server.loop).result(timeout)

    @property
    def url(self) -> str:
        """The base URL of the running emulator."""
        if self.server is None:
            raise RuntimeError(f"{self.name} sandbox is not running")
        return self.server.url

    def build_app(self) -> ASGIApp:
        admin: list[BaseRoute] = [
            Route("/_sandbox/stats", self._stats, methods=["GET"]),
            Route("/_sandbox/faults", self._set_faults, methods=["POST"]),
            Route("/_sandbox/faults", self._clear_faults, methods=["DELETE"]),
            Route("/_sandbox/reset", self._reset, methods=["POST"]),
            Route("/_sandbox/clock", self._clock, methods=["POST"]),
        ]
        app = Starlette(routes=[*admin, *self.routes()])
        app.add_exception_handler(404, self._not_found)
        app.add_exception_handler(405, self._not_allowed)
        faulty = FaultMiddleware(app, self.faults, self.error_body, self._abort, self.expire_tokens)
        return _Counting(faulty, self.requests)

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        return self.error(404, "not_found", f"no route {request.method} {request.url.path}")

    async def _not_allowed(self, request: Request, exc: Exception) -> Response:
        return self.error(405, "method_not_allowed", f"{request.method} not allowed on {request.url.path}")

    def _abort(self, scope: Scope) -> None:
        if self.server is not None:
            self.server.abort(scope.get("client"))

    async def _stats(self, request: Request) -> Response:
        return JSONResponse(
            {"requests": self.requests.snapshot(), "faults_injected": dict(self.faults.injected)}
        )

    async def _set_faults(self, request: Request) -> Response:
        try:
            self.faults.set(**(await request.json()))
        except Exception as exc:  # admin route: report, do not crash
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(self.faults.settings.model_dump())

    async def _clear_faults(self, request: Request) -> Response:
        self.faults.clear()
        return Response(status_code=204)

    async def _clock(self, request: Request) -> Response:
        try:
            self.advance(float((await request.json()).get("advance", 0)))
        except (ValueError, TypeError, AttributeError) as exc:  # admin route: report, do not crash
            return JSONResponse({"error": f"clock: {exc}"}, status_code=400)
        return JSONResponse({"offset": self.clock.offset})

    async def _reset(self, request: Request) -> Response:
        self.reset()
        return Response(status_code=204)


class _Counting:
    def __init__(self, app: ASGIApp, counter: RequestCounter) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith("/_sandbox"):
            self.counter.count(scope["method"], scope["path"])
        await self.app(scope, receive, send)


class SandboxServer:
    """Runs an ASGI app with uvicorn on loopback in a daemon thread.

    Args:
        app: the ASGI app (or a `VendorSandbox`, whose app is built and which learns its server).
        port: the port; 0 picks a free one.
        tls: serve HTTPS with this certificate.
    """

    def __init__(
        self,
        app: ASGIApp | VendorSandbox,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: TLSFiles | None = None,
    ) -> None:
        self.sandbox = app if isinstance(app, VendorSandbox) else None
        asgi = app.build_app() if isinstance(app, VendorSandbox) else app
        if self.sandbox is not None:
            self.sandbox.server = self
        self.host = host
        self.tls = tls
        # proto must say TCP: asyncio only sets TCP_NODELAY on accepted sockets whose proto is IPPROTO_TCP,
        # and without it every request on a kept-alive connection waits ~40 ms (Nagle + delayed ACK).
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(
            asgi,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ssl_certfile=str(tls.certfile) if tls else None,
            ssl_keyfile=str(tls.keyfile) if tls else None,
            timeout_keep_alive=30,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the server runs on (None before start)."""
        return self._loop

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> SandboxServer:
        """Start serving; returns once the server accepts connections."""
        self._thread = threading.Thread(target=self._run, name=f"sandbox-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"sandbox server on port {self.port} failed to start")
            if time.monotonic() > deadline:
                raise RuntimeError(f"sandbox server on port {self.port} did not start in {timeout} s")
            time.sleep(0.01)
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._server.serve(sockets=[self._sock]))

    def abort(self, client: tuple[str, int] | None) -> None:
        """Close the connection of the given client address at once, without an answer."""
        for conn in list(self._server.server_state.connections):
            if client is None or getattr(conn, "client", None) == tuple(client):
                conn.transport.abort()  # type: ignore[union-attr]

    def stop(self) -> None:
        """Stop serving and close every open connection (kept-alive ones too)."""
        self._server.should_exit = True
        if self._loop is not None and not self._loop.is_closed():
            # on the loop, listeners first: a connection accepted after a snapshot taken here would
            # otherwise hold stop() until the graceful-shutdown timeout and get a 500, not an outage
            self._loop.call_soon_threadsafe(self._close_connections)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sock.close()

    def _close_connections(self) -> None:
        for listener in getattr(self._server, "servers", []):
            listener.close()
        for conn in list(self._server.server_state.connections):
            transport = getattr(conn, "transport", None)
            if transport is not None:
                transport.abort()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
