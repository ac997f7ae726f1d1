"""Receiver under load: thousands of deliveries from concurrent senders, the receiver killed mid-way.

The receiver runs as its own process (``python -m streamkeeper.cli receive``) and is killed with SIGKILL
while deliveries are in flight, then started again on the same port and landing area. The senders retry
what was not acknowledged, as real senders do. Every delivery acknowledged with a 2xx must be in the
landing area, and, after loading, in ``events`` exactly once; the DMA numbering must come through the
crash without a false gap or a new epoch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pollkit import free_port
from rxkit import (
    DMA_PASSWORD,
    DMA_USER,
    STREAM_SECRET,
    TS_PASSWORD,
    TS_USER,
    assert_no_secrets,
    events,
    gaps,
    load_landing,
    wait_for,
)

from streamkeeper.vendors.stream import webhook_signature

KINDS = ("stream", "thingspace", "dma", "stream", "thingspace", "dma", "stream", "thingspace")
SENDERS = len(KINDS)  # concurrent senders, each its own connection; a DMA sender is one subscription
PER_SENDER = 400
TOTAL = SENDERS * PER_SENDER
CONFIG = """
max_body_bytes: 65536
dma:
  load:
    username: dma-notifier
    password: ${LOAD_DMA_PASSWORD}
thingspace:
  load:
    username: ts-receiver
    password: ${LOAD_TS_PASSWORD}
stream:
  load:
    secret: ${LOAD_STREAM_SECRET}
"""


class ReceiverProcess:
    """``streamkeeper receive`` in a child process; secrets reach it through its environment only."""

    def __init__(self, workdir: Path, landing: Path) -> None:
        self.workdir = workdir
        self.landing = landing
        self.port = free_port()
        self.config = workdir / "receiver.yaml"
        self.config.write_text(CONFIG)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        env = {
            **os.environ,
            "STREAMKEEPER_HOME": str(self.workdir / ".streamkeeper"),
            "LOAD_DMA_PASSWORD": DMA_PASSWORD,
            "LOAD_TS_PASSWORD": TS_PASSWORD,
            "LOAD_STREAM_SECRET": STREAM_SECRET,
        }
        args = ["--config", str(self.config), "--port", str(self.port), "--landing", str(self.landing)]
        with open(self.workdir / f"receiver-{self.starts}.log", "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamkeeper.cli", "receive", *args, "--log-level", "warning"],
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self.healthy, timeout=60, what="the receiver to start")

    def healthy(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log()
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def counts(self) -> dict[str, int]:
        return dict(httpx.get(f"{self.url}/healthz", timeout=5).json()["counts"])

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("receiver-*.log")))


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverProcess]:
    process = ReceiverProcess(tmp_path, tmp_path / "landing")
    process.start()
    yield process
    process.stop()


def delivery(kind: str, index: int, n: int) -> tuple[str, str, dict[str, Any]]:
    """Delivery `n` of sender `index`: its route, its stream, and its request arguments."""
    if kind == "stream":
        body = json.dumps({"id": f"evt-{index}-{n}", "type": "order.created"}).encode()
        headers = {"X-Stream-Signature": webhook_signature(body, STREAM_SECRET)}
        return "/stream/load", "load", {"content": body, "headers": headers}
    if kind == "thingspace":
        message = {"kind": "ts.event", "action": "create", "data": {"id": f"ts-{index}-{n}"}}
        return "/thingspace/load", "ts.event", {"json": message, "auth": (TS_USER, TS_PASSWORD)}
    notification = {
        "notificationType": "UPDATE",
        "subscriptionUrl": f"https://dma/api/rest/subscriptions/load-{index}",
        "sequenceNumber": n,
        "conference": {"id": "1"},
    }
    return "/dma/load", "load", {"json": notification, "auth": (DMA_USER, DMA_PASSWORD)}


def sender(url: str, index: int, acked: list[tuple[str, str, str]], lock: threading.Lock) -> None:
    """One sender: PER_SENDER deliveries in order, each retried until acknowledged (like a vendor)."""
    kind = KINDS[index]
    backoff = threading.Event()  # never set: its wait() is the sender's retry backoff
    with httpx.Client(timeout=5) as http:
        for n in range(1, PER_SENDER + 1):
            path, stream, arguments = delivery(kind, index, n)
            deadline = time.monotonic() + 90
            while True:
                try:
                    response: httpx.Response | None = http.post(url + path, **arguments)
                except httpx.TransportError:
                    response = None
                if response is not None and response.status_code == 200:
                    with lock:
                        acked.extend((kind, stream, e) for e in response.json()["event_ids"])
                    break
                assert response is None or response.status_code >= 500, response.text
                assert time.monotonic() < deadline, f"sender {index} gave up on delivery {n}"
                backoff.wait(0.05)


@pytest.mark.slow  # a load test: receiver processes, SIGKILL, thousands of deliveries
def test_every_acknowledged_delivery_lands_across_a_crash(
    receiver: ReceiverProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    acked: list[tuple[str, str, str]] = []
    lock = threading.Lock()
    threads = [
        threading.Thread(target=sender, args=(receiver.url, i, acked, lock), daemon=True)
        for i in range(SENDERS)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()

    wait_for(lambda: len(acked) >= TOTAL // 2, timeout=120, what="half of the deliveries")
    receiver.kill()  # SIGKILL: no graceful shutdown, requests in flight are cut
    at_kill = len(acked)
    down = time.perf_counter()
    receiver.start()
    restarted_in = time.perf_counter() - down
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive()
    elapsed = time.perf_counter() - started
    second_process = receiver.counts()
    receiver.stop()

    assert at_kill < TOTAL and sum(v for k, v in second_process.items() if k.endswith(".accepted")) > 0
    landed = events(receiver.landing)
    landed_ids = {(e["vendor"], e["stream"], e["event_id"]) for e in landed}
    assert set(acked) <= landed_ids  # every acknowledged delivery is in the landing area
    assert len(set(acked)) == len(landed_ids) == TOTAL  # and nothing else: one event per delivery
    assert gaps(receiver.landing) == []  # the DMA state came through the crash: no false gap
    epochs: dict[str, set[str]] = {}
    for e in landed:
        if e["vendor"] == "dma":
            epochs.setdefault(e["subscription_id"], set()).add(e["event_id"].rsplit(":", 2)[1])
    assert [len(runs) for runs in epochs.values()] == [1] * KINDS.count("dma")  # one run each, crash or not
    leftovers = [(p.name, p.stat().st_mtime - down) for p in receiver.landing.rglob("*.tmp")]
    assert not leftovers, (leftovers, restarted_in, receiver.log()[-3000:])

    assert_no_secrets(receiver.landing, receiver.log())
    store = load_landing(receiver.landing, tmp_path / "history.duckdb")
    by_vendor = store.query("SELECT vendor, count(*) AS n FROM events GROUP BY vendor")
    assert dict(zip(by_vendor.vendor, by_vendor.n.astype(int), strict=True)) == {
        kind: KINDS.count(kind) * PER_SENDER for kind in set(KINDS)
    }
    with capsys.disabled():
        print(
            f"\nreceiver load: {TOTAL} deliveries from {SENDERS} senders in {elapsed:.1f} s "
            f"({TOTAL / elapsed:.0f}/s including a SIGKILL + restart of {restarted_in:.1f} s); "
            f"{len(landed) - TOTAL} repeated deliveries landed twice and deduplicated at load"
        )
