"""Fuzz tier: generated requests against ``streamkeeper receive`` (its own process) over loopback.

Properties: never a 5xx (the cap's 503 with Retry-After aside), the receiver stays up, its memory stays
bounded (peak RSS, measured), and every delivery it acknowledged loads into ``events`` (none is even
quarantined: the receiver refuses before its 2xx what the store could not hold).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fuzzkit import (
    FUZZ,
    TIMEOUT,
    dma_notifications,
    encode_json,
    json_values,
    odd_text,
    raw_text_bodies,
    stream_events,
    thingspace_messages,
    xml_bodies,
)
from hypothesis import given
from hypothesis import strategies as st
from pollkit import free_port, wait_for

from streamkeeper.ingest import load_landing
from streamkeeper.store import HistoryStore
from streamkeeper.vendors.stream import webhook_signature

DMA_USER, DMA_PASSWORD = "fuzz-dma", "S3NTINEL-fuzz-dma"
TS_USER, TS_PASSWORD, TS_TOKEN = "fuzz-ts", "S3NTINEL-fuzz-ts", "S3NTINEL-fuzz-token"
STREAM_SECRET = "S3NTINEL-fuzz-stream"
MAX_BODY = 65536
CONFIG = f"""
max_body_bytes: {MAX_BODY}
dma:
  conf: {{account: dma-fuzz, username: {DMA_USER}, password: "${{FUZZ_DMA_PASSWORD}}"}}
thingspace:
  devices: {{account: "0000000000-00001", username: {TS_USER}, password: "${{FUZZ_TS_PASSWORD}}"}}
  tokens: {{account: "0000000000-00002", bearer_token: "${{FUZZ_TS_TOKEN}}"}}
stream:
  orders: {{account: org-1, secret: "${{FUZZ_STREAM_SECRET}}"}}
"""
PEAK_RSS_BOUND = 400 * 1024 * 1024  # the receiver peaks ~80-100 MB here; a blow-up passes this by far


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


# any byte a client can put in a header value (h11 refuses controls and leading or trailing blanks)
header_bytes = st.binary(max_size=60).map(lambda b: bytes(c for c in b if c >= 0x21 and c != 0x7F) or b"x")


def dma_request() -> st.SearchStrategy[tuple[str, str, list[tuple[bytes, bytes]], bytes]]:
    auth = st.one_of(
        st.just(basic(DMA_USER, DMA_PASSWORD)),
        st.just(basic(DMA_USER, "wrong")),
        header_bytes.map(lambda b: b"Basic " + b),
    )
    body = st.one_of(st.builds(encode_json, dma_notifications, st.booleans()), xml_bodies, raw_text_bodies)
    return st.builds(lambda a, b: ("POST", "/dma/conf", [(b"authorization", a)], b), auth, body)


def thingspace_request() -> st.SearchStrategy[tuple[str, str, list[tuple[bytes, bytes]], bytes]]:
    route = st.sampled_from(
        [
            ("/thingspace/devices", basic(TS_USER, TS_PASSWORD)),
            ("/thingspace/tokens", b"Bearer " + TS_TOKEN.encode()),
        ]
    )
    messages = st.one_of(thingspace_messages, st.lists(thingspace_messages, min_size=0, max_size=4))
    body = st.one_of(
        st.builds(encode_json, messages, st.booleans()), raw_text_bodies, st.binary(max_size=200)
    )
    wrong = st.booleans()
    return st.builds(
        lambda r, b, w: ("POST", r[0], [(b"authorization", b"Bearer nope" if w else r[1])], b),
        route,
        body,
        wrong,
    )


def stream_request() -> st.SearchStrategy[tuple[str, str, list[tuple[bytes, bytes]], bytes]]:
    body = st.one_of(
        st.builds(encode_json, stream_events, st.booleans()),
        st.builds(encode_json, json_values, st.booleans()),
        raw_text_bodies,
        st.binary(max_size=300),
        st.integers(MAX_BODY - 50, MAX_BODY + 50).map(lambda n: b'{"id": "big", "pad": "' + b"x" * n + b'"}'),
    )

    def build(content: bytes, signed: bool, odd: bytes) -> tuple[str, str, list[tuple[bytes, bytes]], bytes]:
        signature = webhook_signature(content, STREAM_SECRET).encode() if signed else odd
        return "POST", "/stream/orders", [(b"x-stream-signature", signature)], content

    signed = st.sampled_from([True, True, True, False])  # mostly signed: the body is what is fuzzed
    return st.builds(build, body, signed, header_bytes)


def stray_request() -> st.SearchStrategy[tuple[str, str, list[tuple[bytes, bytes]], bytes]]:
    segment = odd_text.map(lambda t: quote(t, safe="", errors="surrogatepass"))
    path = st.one_of(
        st.builds(lambda p, s: f"/{p}/{s}", st.sampled_from(["dma", "thingspace", "stream", "x"]), segment),
        st.sampled_from(["/", "/healthz", "/dma/conf", "/dma/conf/more", "//stream//orders", "/%ff"]),
    )
    method = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
    headers = st.lists(
        st.tuples(st.sampled_from([b"content-type", b"x-odd", b"accept"]), header_bytes), max_size=3
    )
    return st.builds(lambda m, p, h, b: (m, p, h, b), method, path, headers, st.binary(max_size=200))


requests = st.one_of(dma_request(), thingspace_request(), stream_request(), stray_request())


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc")


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.slow  # a receiver process (~3 s to start) and a few hundred requests
def test_no_request_gets_a_5xx_and_every_acknowledged_delivery_loads(tmp_path: Path, db_path: Path) -> None:
    config = tmp_path / "receiver.yaml"
    config.write_text(CONFIG)
    landing = tmp_path / "landing"
    port = free_port()
    env = {
        **os.environ,
        "STREAMKEEPER_HOME": str(tmp_path / "home"),
        "FUZZ_DMA_PASSWORD": DMA_PASSWORD,
        "FUZZ_TS_PASSWORD": TS_PASSWORD,
        "FUZZ_TS_TOKEN": TS_TOKEN,
        "FUZZ_STREAM_SECRET": STREAM_SECRET,
    }
    log = tmp_path / "receiver.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamkeeper.cli",
                "receive",
                "--config",
                str(config),
                "--port",
                str(port),
            ]
            + ["--landing", str(landing), "--log-level", "warning"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    acknowledged: set[tuple[str, str]] = set()
    statuses: dict[int, int] = {}
    try:

        def healthy() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return client.get("/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, 90, "the receiver to start")

        @FUZZ
        @given(request=requests)
        def one(request: tuple[str, str, list[tuple[bytes, bytes]], bytes]) -> None:
            method, path, headers, body = request
            answer = client.request(method, path, headers=headers, content=body)
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
            assert answer.status_code < 500 or (
                answer.status_code == 503 and "retry-after" in answer.headers
            ), (answer.status_code, answer.text[:300])
            if (
                method == "POST"
                and answer.status_code == 200
                and path.startswith(("/dma/", "/thingspace/", "/stream/"))
            ):
                vendor = path.split("/")[1]
                acknowledged.update((vendor, event_id) for event_id in answer.json()["event_ids"])

        one()
        assert client.get("/healthz").status_code == 200  # still up
        peak = peak_rss(proc.pid)
        assert peak < PEAK_RSS_BOUND, f"receiver peak RSS {peak / 2**20:.0f} MiB"
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=30)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    print(
        f"\nstatuses {dict(sorted(statuses.items()))}; acknowledged {len(acknowledged)}; peak RSS {peak / 2**20:.0f} MiB"
    )

    store = HistoryStore(db_path)
    report = load_landing(store, landing)
    rejected = store.query("SELECT landing_path, reason FROM rejected_deliveries")
    assert report.quarantined == 0, rejected.to_dict("records")
    stored = set(store.query("SELECT vendor, event_id FROM events").itertuples(index=False, name=None))
    assert acknowledged <= stored, sorted(acknowledged - stored)[:5]
    assert len(acknowledged) > 0 and statuses.get(400, 0) > 0  # the fuzz reached both sides
