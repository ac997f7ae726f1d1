"""Refresh 10,000 DMA subscriptions and audit them twice, through the Prefect flows, against a bare loop.

The DMA emulator (HTTPS with a self-signed certificate, as a real DMA) holds N subscriptions with a
600 s time-to-live. Each measurement runs the flow as ``streamkeeper refresh`` / ``streamkeeper audit``
do (Prefect's ephemeral API, a credentials block, the history store in a temp dir), and then, in the
same run and with the same client (a `DMAClient` from the same block), a bare loop of the same HTTP calls
with the same parallelism, storing nothing:

1. ``refresh-subscriptions``: the conditional list GET + N PUTs with the ETag (8 threads); bare: the same.
2. ``audit-subscriptions`` against a spec naming all N, first audit (the list has changed since the
   refresh: one 200, N bodies stored, the spec compared), bare: the one list GET with the stale ETag.
3. the same audit again (nothing changed: one 304, no body stored), bare: the one conditional GET.

Then, to show where an audit's time goes: loading the spec alone, and a third audit as a library call
(`audit_connection`: no Prefect, the spec already loaded).

Setup (not timed) writes the subscriptions straight into the emulator's state and warms the Prefect API
up with one flow run.

Run: ``.venv/bin/python bench/bench_refresh_audit.py`` (``--subscriptions``, ``--workers``; ``--help``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HOME = Path(tempfile.mkdtemp(prefix="bench-refresh-audit-"))
os.environ.setdefault("STREAMKEEPER_HOME", str(HOME / "home"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from streamkeeper import environment  # noqa: E402

environment.prepare()  # before Prefect is imported: its state in a temp dir, not ~/.prefect


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=10_000, help="DMA subscriptions (default 10000)")
    parser.add_argument(
        "--workers", type=int, default=8, help="parallel PUTs, flow and bare loop (default 8)"
    )
    args = parser.parse_args()
    n = args.subscriptions

    environment.ensure_prefect_database()
    from prefect import flow
    from pydantic import SecretStr

    from blocks.dma import DMACredentials
    from flows.audit import audit_subscriptions
    from flows.refresh import refresh_subscriptions
    from streamkeeper.audit import audit_connection
    from streamkeeper.provision.adapters import make_adapter
    from streamkeeper.sandbox.base import SandboxServer
    from streamkeeper.sandbox.dma import DMASandbox, _Subscription
    from streamkeeper.sandbox.tls import self_signed
    from streamkeeper.spec import load_spec
    from streamkeeper.store import HistoryStore

    tls = self_signed(HOME / "tls")
    dma = DMASandbox(validate_consumer_url=False)
    server = SandboxServer(dma, tls=tls).start()
    db = HOME / "history.duckdb"
    try:

        async def fill() -> None:
            now = dma.now()
            for i in range(1, n + 1):
                dma.subscriptions[str(i)] = _Subscription(
                    id=str(i),
                    owner="provisioner",
                    subject="conferences",
                    consumer_url=f"http://consumer.test/dma/{i}",
                    time_to_live=600,
                    expires_at=now + 600,
                    passback=f"sub-{i:05d}",
                )

        dma.call_in_loop(fill())
        spec = HOME / "spec.yaml"
        lines = ["dma:", "  - connection: bench-dma", "    subscriptions:"]
        lines += [
            f"      - {{name: sub-{i:05d}, subject: all_conferences, "
            f"consumer_url: 'http://consumer.test/dma/{i}', time_to_live: 600}}"
            for i in range(1, n + 1)
        ]
        spec.write_text("\n".join(lines) + "\n")

        @flow(name="bench-warm-up")
        def warm_up() -> None:
            return None

        warm_up()  # start the ephemeral API before timing
        block = DMACredentials(
            base_url=dma.url + "/api/rest",
            username="provisioner",
            password=SecretStr("provisioner-pass"),
            ca_bundle=tls.cert_pem,
        )
        block.save("bench-dma", overwrite=True)
        client = DMACredentials.load("bench-dma").get_client()

        # -- 1. refresh ---------------------------------------------------------------------------------------
        def bare_refresh() -> int:
            listing = client.list_subscriptions()
            assert listing is not None
            with ThreadPoolExecutor(max_workers=args.workers) as pool:
                done = list(
                    pool.map(
                        lambda s: client.update_time_to_live(
                            s.subscription_identifier, 600, s.entity_tag or ""
                        ),
                        listing.subscriptions,
                    )
                )
            return len(done)

        bare_refresh_s, puts = timed(bare_refresh)
        assert puts == n
        flow_refresh_s, summary = timed(
            lambda: refresh_subscriptions(
                dma_blocks=["bench-dma"], refresh_within_seconds=3600, db_path=str(db)
            )
        )
        assert summary.refreshed == n, (summary.refreshed, summary.failed)

        # -- 2. and 3. audits ---------------------------------------------------------------------------------
        stale_etag, _ = HistoryStore(db).cache_get("dma", "bench-dma", "/subscriptions")
        bare_audit1_s, first_listing = timed(lambda: client.list_subscriptions(etag=stale_etag))
        assert first_listing is not None and len(first_listing.subscriptions) == n
        flow_audit1_s, audit1 = timed(lambda: audit_subscriptions(spec_path=str(spec), db_path=str(db)))
        a1 = audit1.audits[0]
        assert (a1.observed, a1.bodies_stored, a1.requests, len(a1.findings)) == (n, n, 1, 0), a1

        current_etag, _ = HistoryStore(db).cache_get("dma", "bench-dma", "/subscriptions")
        bare_audit2_s, unchanged = timed(lambda: client.list_subscriptions(etag=current_etag))
        assert unchanged is None  # 304
        flow_audit2_s, audit2 = timed(lambda: audit_subscriptions(spec_path=str(spec), db_path=str(db)))
        a2 = audit2.audits[0]
        assert (a2.not_modified, a2.bodies_stored, a2.requests) == (n, 0, 1), a2

        # -- where the audit's time goes: the spec's loading, and the audit itself without Prefect ------------
        spec_s, loaded = timed(lambda: load_spec(spec))
        adapter = make_adapter("dma", loaded.dma[0], client)
        library_s, a3 = timed(lambda: audit_connection(adapter, HistoryStore(db)))
        assert (a3.not_modified, a3.bodies_stored, a3.requests) == (n, 0, 1), a3
    finally:
        server.stop()

    rows = [
        (f"refresh {n} (list + {n} PUTs, {args.workers} threads)", flow_refresh_s, bare_refresh_s),
        (f"audit #1 (list 200, {n} bodies stored, spec compared)", flow_audit1_s, bare_audit1_s),
        ("audit #2 (list 304, no body stored, spec compared)", flow_audit2_s, bare_audit2_s),
    ]
    print(
        f"\nDMA emulator over HTTPS, {n} subscriptions; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    print(f"{'measurement':<58}{'flow s':>9}{'bare s':>9}{'ratio':>8}")
    for label, flow_s, bare_s in rows:
        print(f"{label:<58}{flow_s:>9.2f}{bare_s:>9.3f}{flow_s / bare_s:>8.1f}")
    print(
        f"refresh: {n / flow_refresh_s:,.0f} subscriptions/s through the flow, {n / bare_refresh_s:,.0f}/s bare"
    )
    print(
        f"audit #2 breakdown: loading the {n}-entry spec alone {spec_s:.2f} s; the same audit as a library call "
        f"(audit_connection, no Prefect, spec loaded) {library_s:.2f} s"
    )


if __name__ == "__main__":
    main()
