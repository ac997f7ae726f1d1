"""Slow and idle clients over real loopback sockets: slow headers, a stalled body, idle connections, and
more connections than the cap (issue 11, class 6). The timeouts are made small by the config; each test
waits for the server to act (a close, an answer) with a generous deadline, never for a fixed time."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable

import httpx
from rxkit import Running, receiver_config, wait_for

HEAD = b"POST /stream/orders HTTP/1.1\r\nHost: rx\r\nContent-Type: application/json\r\n"
DEADLINE = 20.0  # seconds: far above every timeout below, so a loaded machine never fails a test


def connect(rx: Running) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", rx.server.port), timeout=DEADLINE)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (socket timeout: the deadline)."""
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def read_response(sock: socket.socket) -> bytes:
    """One whole answer (head and Content-Length body) on a connection that stays open."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def trickle_until_closed(sock: socket.socket, payload: bytes) -> tuple[bytes, int]:
    """Send `payload` a byte at a time, a byte each 50 ms, until the server answers or closes."""
    deadline = time.monotonic() + DEADLINE
    sent = 0
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], 0.05)
        if readable:
            return read_until_closed(sock), sent
        try:
            sock.send(payload[sent % len(payload) : sent % len(payload) + 1])
        except (BrokenPipeError, ConnectionResetError):
            return b"", sent
        sent += 1
    raise AssertionError("the server neither answered nor closed the connection")


def test_slow_headers_a_stalled_body_and_idle_connections_are_closed(
    start_receiver: Callable[..., Running],
) -> None:
    rx = start_receiver(
        receiver_config(header_timeout_seconds=0.5, body_timeout_seconds=0.5, idle_timeout_seconds=1)
    )
    guard = rx.server.guard

    # headers sent a byte at a time (a slowloris): the head never completes, 408 and closed
    with connect(rx) as sock:
        started = time.monotonic()
        answer, sent = trickle_until_closed(sock, HEAD + b"X-Padding: " + b"a" * 10_000)
        assert answer.startswith(b"HTTP/1.1 408") and b"header_timeout" in answer, answer
        assert sent >= 3 and time.monotonic() - started < DEADLINE
    assert guard.timed_out == 1

    # a connection that never sends a byte: closed too, without an answer
    with connect(rx) as sock:
        assert read_until_closed(sock) == b""
    assert guard.timed_out == 2

    # a body that stops coming: 408 from the receiver, nothing lands
    with connect(rx) as sock:
        sock.sendall(HEAD + b"Content-Length: 100\r\n\r\n" + b'{"id": "stalled"')
        answer = read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 408") and b"body_timeout" in answer, answer
    assert rx.receiver.counts["stream.408"] == 1
    assert not list(rx.receiver.landing.root.glob("stream/*/*"))

    # a kept-alive connection idle after its answer: closed by uvicorn's keep-alive timeout
    with connect(rx) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: rx\r\n\r\n")
        answer = read_until_closed(sock)  # the answer, then nothing until the idle close
        assert answer.startswith(b"HTTP/1.1 200") and answer.count(b"HTTP/1.1") == 1
    # ... and one whose next request comes slowly: that request's head is timed from its first byte
    with connect(rx) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: rx\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        answer, _ = trickle_until_closed(sock, HEAD)
        assert answer.startswith(b"HTTP/1.1 408")
    assert httpx.get(f"{rx.url}/healthz").status_code == 200  # and the receiver still serves


def test_connections_beyond_the_cap_get_503_with_retry_after(start_receiver: Callable[..., Running]) -> None:
    rx = start_receiver(receiver_config(max_connections=3, retry_after_seconds=7, header_timeout_seconds=60))
    guard = rx.server.guard
    held = [connect(rx) for _ in range(3)]  # three connections that send nothing yet
    try:
        wait_for(lambda: guard.open == 3, timeout=DEADLINE, what="three accepted connections")

        for _ in range(2):  # every connection beyond the cap, each in turn
            busy = httpx.post(f"{rx.url}/stream/orders", content=b"{}")
            assert busy.status_code == 503 and busy.headers["retry-after"] == "7"
            assert busy.headers["connection"] == "close" and busy.json()["error"] == "busy"
        assert guard.refused == 2 and guard.open == 3
        assert not list(rx.receiver.landing.root.glob("stream/*/*"))  # nothing acknowledged

        # a held connection is still served: it is within the cap
        held[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: rx\r\nConnection: close\r\n\r\n")
        assert read_until_closed(held[0]).startswith(b"HTTP/1.1 200")
        wait_for(lambda: guard.open == 2, timeout=DEADLINE, what="the closed connection to be counted out")
        assert httpx.get(f"{rx.url}/healthz").status_code == 200  # room again
    finally:
        for sock in held:
            sock.close()
