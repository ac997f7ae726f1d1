"""The receiver's HTTP server: uvicorn, plus the limits on slow and idle clients that uvicorn lacks.

What uvicorn covers (0.54, measured against its source and over loopback):

- a kept-alive connection idle between two requests is closed after ``timeout_keep_alive``: set to the
  config's ``idle_timeout_seconds``; its timer starts only when a response is complete;
- a request head over h11's 16 KiB is answered 400.

What it does not, and this module adds (`ConnectionGuard`, a wrapper around uvicorn's protocol, and
`GuardMiddleware` in front of the app):

- **slow headers**: a request's head must be complete within ``header_timeout_seconds`` of the connection
  opening (a connection that never sends a byte is closed then too) or of the first byte of a later
  request on a kept-alive connection; else the connection is closed (with a 408 when part of a head came);
- **a stalled body**: answered 408 by the receiver's `read_body` (``body_timeout_seconds`` without a byte);
- **a connection cap**: beyond ``max_connections`` open connections, each new one is answered
  ``503 Service Unavailable`` with ``Retry-After: <retry_after_seconds>`` and closed: the one 5xx the
  receiver sends, asking the sender to come back; nothing of it is read or acknowledged.

Not covered: a TLS handshake that stalls is asyncio's to end (60 s, its default); a client that reads its
answer slowly holds its connection until the answer (a few hundred bytes) fits the socket buffers.

    server = ReceiverServer(create_app(config), port=8099)
    server.run()             # in the foreground, SIGINT/SIGTERM stop it gracefully
    server.start(); ...; server.stop()   # in a thread (tests, the demo)
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.protocols.http.h11_impl import H11Protocol

from streamkeeper.receiver.config import ReceiverConfig

log = logging.getLogger("streamkeeper.receiver")

Client = tuple[str, int]

LINGER_SECONDS = 2.0
"""How long a connection closed for a slow head still drains what its client sends (a lingering close)."""


class ConnectionGuard:
    """The connections of one server: which count against the cap, and the head timer of each."""

    def __init__(self, config: ReceiverConfig) -> None:
        self.config = config
        self.open = 0  # connections within the cap
        self.refused = 0  # connections answered 503
        self.timed_out = 0  # connections closed for slow headers
        self.connections: dict[Client, GuardedConnection] = {}

    def request_started(self, client: Client | None) -> bool:
        """A request's head is complete: stop its timer. False when its connection is over the cap."""
        connection = self.connections.get(client) if client else None
        if connection is None:
            return True
        connection.requests += 1
        connection.stop_timer()
        return not connection.over_cap

    def request_finished(self, client: Client | None) -> None:
        connection = self.connections.get(client) if client else None
        if connection is not None:
            connection.requests -= 1


class ClientCertificateProtocol(H11Protocol):
    """uvicorn's h11 protocol, handing each request the connection's client certificate in the ASGI TLS
    extension (``client_cert_chain``: PEM strings, the leaf first; empty without one)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        tls = {"server_cert": None, "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else []}
        app = self.app

        async def with_tls(
            scope: MutableMapping[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
        ) -> None:
            if scope.get("type") == "http":
                scope.setdefault("extensions", {})["tls"] = tls
            await app(scope, receive, send)

        self.app = with_tls  # type: ignore[assignment]


def mutual_tls_options(client_ca: Path) -> dict[str, Any]:
    """uvicorn settings of a receiver that asks senders for a client certificate signed by `client_ca`.

    Optional at the TLS layer (the DMA, ThingSpace and Stream present none); the Equinix route requires one.
    """
    return {
        "ssl_ca_certs": str(client_ca),
        "ssl_cert_reqs": ssl.CERT_OPTIONAL,
        "http": ClientCertificateProtocol,
    }


class GuardedConnection(asyncio.Protocol):
    """uvicorn's HTTP protocol for one connection, behind the head timer and the connection cap."""

    guard: ConnectionGuard  # set on the subclass `guarded_protocol` makes
    protocol: type[asyncio.Protocol] = AutoHTTPProtocol  # uvicorn's, or `ClientCertificateProtocol`

    def __init__(self, config: uvicorn.Config, server_state: Any, app_state: Any, _loop: Any = None) -> None:
        self.inner = self.protocol(  # type: ignore[call-arg]
            config=config, server_state=server_state, app_state=app_state, _loop=_loop
        )
        self.loop = _loop or asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.client: Client | None = None
        self.over_cap = False
        self.requests = 0  # requests whose head is complete and whose app has not returned
        self.head_bytes = 0  # bytes received since the head timer started
        self.timer: asyncio.TimerHandle | None = None
        self.closing = False  # the head timer fired: answered, and closing

    # -- asyncio.Protocol, delegated -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        guard = self.guard
        if guard.open >= guard.config.max_connections:
            self.over_cap = True  # the middleware answers its request 503
            guard.refused += 1
        else:
            guard.open += 1
        if self.client is not None:
            guard.connections[self.client] = self
        self.start_timer()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # a lingering close: what the client still sends is read and dropped
        if self.requests == 0:
            if self.timer is None:
                self.start_timer()  # the first byte of a request on a kept-alive connection
            self.head_bytes += len(data)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self.closing:
            assert self.transport is not None
            self.transport.close()
            return None
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_timer()
        guard = self.guard
        if self.client is not None and guard.connections.get(self.client) is self:
            del guard.connections[self.client]
        if not self.over_cap:
            guard.open -= 1
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # -- the head timer ------------------------------------------------------------------------------------
    def start_timer(self) -> None:
        self.stop_timer()
        self.head_bytes = 0
        self.timer = self.loop.call_later(self.guard.config.header_timeout_seconds, self._head_timeout)

    def stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _head_timeout(self) -> None:
        self.timer = None
        transport = self.transport
        if transport is None or transport.is_closing() or self.requests:
            return
        self.guard.timed_out += 1
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
        log.warning("connection from %s closed: no complete request head in time", client)
        if self.head_bytes:
            body = b'{"error":"header_timeout","message":"the request head did not come in time"}'
            transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
        if not transport.can_write_eof():
            transport.close()
            return
        # a lingering close (as HTTP servers do): closing a socket with unread bytes in it resets the
        # connection, which can destroy the 408 before the client reads it; so send FIN after the answer,
        # drop what still comes, and close when the client does or after LINGER_SECONDS
        self.closing = True
        transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, transport.close)


def guarded_protocol(
    guard: ConnectionGuard, protocol: type[asyncio.Protocol] = AutoHTTPProtocol
) -> type[GuardedConnection]:
    """The protocol class uvicorn instantiates per connection, bound to `guard`, around `protocol`."""
    return type("GuardedHTTPProtocol", (GuardedConnection,), {"guard": guard, "protocol": protocol})


class GuardMiddleware:
    """Tells the guard when a request's head is complete and when its app returned; answers 503 with
    ``Retry-After`` for a connection over the cap."""

    def __init__(self, app: Any, guard: ConnectionGuard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        key = (str(client[0]), int(client[1])) if client else None
        allowed = self.guard.request_started(key)
        try:
            if allowed:
                await self.app(scope, receive, send)
            else:
                await self._busy(send)
        finally:
            self.guard.request_finished(key)

    async def _busy(self, send: Send) -> None:
        config = self.guard.config
        body = json.dumps(
            {"error": "busy", "message": f"over {config.max_connections} connections: come back later"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(config.retry_after_seconds).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class ReceiverServer:
    """uvicorn serving a receiver app (`create_app`) with the connection guard, on a socket bound at once.

    Args:
        app: the receiver's app; its config (``app.state.receiver.config``) gives the limits.
        port: 0 takes a free port (see `port` after construction).
        certfile, keyfile: serve HTTPS.
        client_ca: with HTTPS, ask senders for a client certificate signed by this CA (optional at the TLS
            layer; a route that needs one reads it from the ASGI TLS extension, see
            `ClientCertificateProtocol`).
    """

    def __init__(
        self,
        app: Starlette,
        host: str = "127.0.0.1",
        port: int = 0,
        certfile: Path | None = None,
        keyfile: Path | None = None,
        log_level: str = "warning",
        client_ca: Path | None = None,
    ) -> None:
        config: ReceiverConfig = app.state.receiver.config
        self.guard = ConnectionGuard(config)
        self.host = host
        self.tls = certfile is not None
        # proto must say TCP so that asyncio sets TCP_NODELAY on accepted sockets (see sandbox/base.py)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port: int = self._sock.getsockname()[1]
        self._server = uvicorn.Server(
            uvicorn.Config(
                GuardMiddleware(app, self.guard),
                http=guarded_protocol(
                    self.guard, ClientCertificateProtocol if client_ca is not None else AutoHTTPProtocol
                ),
                log_level=log_level,
                access_log=False,
                lifespan="off",
                ssl_certfile=str(certfile) if certfile else None,
                ssl_keyfile=str(keyfile) if keyfile else None,
                ssl_ca_certs=str(client_ca) if client_ca is not None else None,
                ssl_cert_reqs=ssl.CERT_OPTIONAL if client_ca is not None else ssl.CERT_NONE,
                timeout_keep_alive=config.idle_timeout_seconds,
                timeout_graceful_shutdown=10,
            )
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def run(self) -> None:
        """Serve in this thread until SIGINT or SIGTERM (uvicorn finishes the requests in flight)."""
        self._server.run(sockets=[self._sock])

    def start(self, timeout: float = 15.0) -> ReceiverServer:
        """Serve in a thread; returns once the server accepts connections."""
        self._thread = threading.Thread(target=self.run, name=f"receiver-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the receiver on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving (open connections are closed) and release the socket."""
        self._server.should_exit = True
        self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        self._sock.close()
