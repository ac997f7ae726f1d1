"""Throughput of ``streamkeeper receive``: N deliveries from C concurrent connections (asyncio clients).

    .venv/bin/python tests/receiver/bench_receiver.py [--deliveries 3000] [--connections 32] [--kind stream]

Starts the receiver as a child process (as ``tests/receiver/test_load.py`` does) over a temporary landing
area, sends signed Stream webhooks, ThingSpace messages or DMA notifications (one subscription per
connection, in order), prints deliveries/s, then checks that every acknowledged delivery landed once.
Not collected by pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))  # pollkit, which rxkit uses
from rxkit import events  # noqa: E402
from test_load import ReceiverProcess, delivery  # noqa: E402


async def drive(url: str, kind: str, deliveries: int, connections: int) -> set[str]:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    acked: set[str] = set()
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def sender(index: int) -> None:
            for n in range(1, deliveries // connections + 1):
                path, _, arguments = delivery(kind, index, n)
                response = await client.post(url + path, **arguments)
                response.raise_for_status()
                acked.update(response.json()["event_ids"])

        await asyncio.gather(*(sender(i) for i in range(connections)))
    return acked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--kind", choices=("stream", "thingspace", "dma"), default="stream")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rx-bench-") as tmp:
        receiver = ReceiverProcess(Path(tmp), Path(tmp) / "landing")
        receiver.start()
        try:
            started = time.perf_counter()
            acked = asyncio.run(drive(receiver.url, args.kind, args.deliveries, args.connections))
            elapsed = time.perf_counter() - started
        except BaseException:
            receiver.stop()
            print(receiver.log()[-4000:], file=sys.stderr)
            raise
        receiver.stop()
        landed = {e["event_id"] for e in events(receiver.landing)}
        assert acked <= landed and len(acked) == len(landed), "an acknowledged delivery did not land"
        print(
            f"{args.kind}: {len(acked)} deliveries over {args.connections} connections in {elapsed:.2f} s: "
            f"{len(acked) / elapsed:.0f} deliveries/s (each fsync'ed and renamed before its 200)"
        )


if __name__ == "__main__":
    main()
