"""Refresh 10,000 DMA subscriptions and audit them twice, through the Prefect flows, against bare baselines.

The DMA emulator (HTTPS with a self-signed certificate, as a real DMA) runs in a process of its own, as a
real DMA is remote: the figures measure streamkeeper, not the emulator sharing its interpreter. It holds N
subscriptions with a 600 s time-to-live. Each measurement runs the flow as ``streamkeeper refresh`` /
``streamkeeper audit`` do (Prefect's ephemeral API, a credentials block, the history store in a temp dir)
and, in the same run, a bare baseline with the same client (a `DMAClient` from the same block):

1. ``refresh-subscriptions``, twice: the conditional list GET + N PUTs with the ETag (8 threads), first
   into an empty history, then again as every hourly run does (each new version closes the last); bare:
   the same calls with the same parallelism, storing nothing, beside each. The CPU time of this process
   (streamkeeper's side: the flow, the client, the history; not the emulator's) is measured for all.
2. ``audit-subscriptions`` against a spec naming all N, first audit (a spec never seen before; no list
   cached, as the refresh keeps none it made stale: one 200, N bodies stored, the spec compared); bare:
   the one list GET.
3. the same audit again (nothing changed: one 304, one snapshot row pointing at the first); bare: the one
   conditional GET plus one parse of the spec (what the audit needed before the spec cache). Run in this
   process, the second audit finds the spec in the on-disk cache as a new worker process would.

Each round uses a new history file and a new spec text (a comment with the round's number), so that every
round's first audit is a first audit; ``--repeat`` runs several rounds, each printed with its ratios.

Run: ``.venv/bin/python bench/bench_refresh_audit.py`` (``--subscriptions``, ``--workers``, ``--repeat``).
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

HOME = Path(tempfile.mkdtemp(prefix="bench-refresh-audit-"))
os.environ.setdefault("STREAMKEEPER_HOME", str(HOME / "home"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from streamkeeper import environment  # noqa: E402

environment.prepare()  # before Prefect is imported: its state in a temp dir, not ~/.prefect


class Timing:
    """Wall-clock and CPU seconds of this process (all its threads) for one action.

    The garbage of earlier actions is collected first, so that no action pays for another's.
    """

    def __init__(self, action: Callable[[], Any]) -> None:
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        self.result = action()
        self.seconds = time.perf_counter() - wall
        self.cpu = time.process_time() - cpu


def _emulator(conn: Connection, tls_dir: str) -> None:
    """The DMA emulator in its own process; it fills itself with N subscriptions on command."""
    from streamkeeper.sandbox.base import SandboxServer
    from streamkeeper.sandbox.dma import DMASandbox, _Subscription
    from streamkeeper.sandbox.tls import self_signed

    tls = self_signed(Path(tls_dir))
    dma = DMASandbox(validate_consumer_url=False)
    server = SandboxServer(dma, tls=tls).start()
    conn.send((dma.url, tls.cert_pem))

    async def fill(n: int) -> None:
        now = dma.now()
        dma.subscriptions.clear()
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

    try:
        while (command := conn.recv()) is not None:
            dma.call_in_loop(fill(command))
            conn.send(time.process_time())
    finally:
        server.stop()


def write_spec(path: Path, n: int, round_no: int) -> Path:
    lines = [f"# round {round_no}", "dma:", "  - connection: bench-dma", "    subscriptions:"]
    lines += [
        f"      - {{name: sub-{i:05d}, subject: all_conferences, "
        f"consumer_url: 'http://consumer.test/dma/{i}', time_to_live: 600}}"
        for i in range(1, n + 1)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=10_000, help="DMA subscriptions (default 10000)")
    parser.add_argument(
        "--workers", type=int, default=8, help="parallel PUTs, flow and bare loop (default 8)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="rounds, each printed (default 1)")
    args = parser.parse_args()
    n = args.subscriptions
    load_before = os.getloadavg()

    environment.ensure_prefect_database()
    from prefect import flow
    from pydantic import SecretStr

    from blocks.dma import DMACredentials
    from flows.audit import audit_subscriptions
    from flows.refresh import refresh_subscriptions
    from streamkeeper.spec import load_spec
    from streamkeeper.store import HistoryStore

    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(
        target=_emulator, args=(theirs, str(HOME / "tls")), daemon=True
    )
    child.start()
    rounds: list[dict[str, Timing]] = []
    try:
        url, ca_pem = ours.recv()

        @flow(name="bench-warm-up")
        def warm_up() -> None:
            return None

        warm_up()  # start the ephemeral API before timing
        DMACredentials(
            base_url=url + "/api/rest",
            username="provisioner",
            password=SecretStr("provisioner-pass"),
            ca_bundle=ca_pem,
        ).save("bench-dma", overwrite=True)
        client = DMACredentials.load("bench-dma").get_client()

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

        for round_no in range(1, args.repeat + 1):
            ours.send(n)
            ours.recv()
            db = HOME / f"history-{round_no}.duckdb"
            spec = write_spec(HOME / f"spec-{round_no}.yaml", n, round_no)
            t: dict[str, Timing] = {}

            # -- 1. refresh, twice: into an empty history, then as every hourly run does (each version
            #       closes the last one) ---------------------------------------------------------------------
            HistoryStore(db).schema_version()  # the history file made and migrated before timing
            t["bare_list"] = Timing(lambda: len(client.list_subscriptions().subscriptions))  # type: ignore[union-attr]
            for run in ("refresh1", "refresh2"):
                t[f"bare_{run}"] = Timing(bare_refresh)
                assert t[f"bare_{run}"].result == n
                t[f"flow_{run}"] = Timing(
                    lambda db=db: refresh_subscriptions(
                        dma_blocks=["bench-dma"], refresh_within_seconds=3600, db_path=str(db)
                    )
                )
                summary = t[f"flow_{run}"].result
                assert summary.refreshed == n, (summary.refreshed, summary.failed)

            # -- 2. first audit -----------------------------------------------------------------------------
            stale_etag, _ = HistoryStore(db).cache_get("dma", "bench-dma", "/subscriptions")
            t["bare_audit1"] = Timing(
                lambda etag=stale_etag: len(client.list_subscriptions(etag=etag).subscriptions)  # type: ignore[union-attr]
            )
            assert t["bare_audit1"].result == n
            t["flow_audit1"] = Timing(
                lambda spec=spec, db=db: audit_subscriptions(spec_path=str(spec), db_path=str(db))
            )
            a1 = t["flow_audit1"].result.audits[0]
            assert (a1.observed, a1.bodies_stored, a1.requests, len(a1.findings)) == (n, n, 1, 0), a1

            # -- 3. the same audit again: nothing changed ---------------------------------------------------
            current_etag, _ = HistoryStore(db).cache_get("dma", "bench-dma", "/subscriptions")
            t["bare_304"] = Timing(lambda etag=current_etag: client.list_subscriptions(etag=etag))
            assert t["bare_304"].result is None  # 304
            t["bare_parse"] = Timing(lambda spec=spec: load_spec(spec, cache=False))
            t["flow_audit2"] = Timing(
                lambda spec=spec, db=db: audit_subscriptions(spec_path=str(spec), db_path=str(db))
            )
            a2 = t["flow_audit2"].result.audits[0]
            assert (a2.not_modified, a2.bodies_stored, a2.requests, len(a2.findings)) == (n, 0, 1, 0), a2
            rows = HistoryStore(db).query(
                "SELECT count(*) AS n FROM subscription_snapshots WHERE snapshot_id = ?", [a2.audit_id]
            )
            t["audit2_rows"] = Timing(lambda rows=rows: int(rows["n"][0]))
            rounds.append(t)
    finally:
        ours.send(None)
        child.join(30)
    load_after = os.getloadavg()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    command = " ".join([Path(sys.executable).name, *sys.argv])
    print(
        f"\n{command}\nDMA emulator over HTTPS in its own process, {n} subscriptions, {args.repeat} round(s); "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after"
    )
    print(f"{'measurement':<62}{'flow s':>9}{'baseline s':>12}{'ratio':>8}")
    for round_no, t in enumerate(rounds, 1):
        audit2_baseline = t["bare_304"].seconds + t["bare_parse"].seconds
        table = [
            (
                f"refresh #1 (list + {n} PUTs), empty history, vs bare",
                "flow_refresh1",
                t["bare_refresh1"].seconds,
            ),
            (
                "refresh #2, each version closing the last, vs bare",
                "flow_refresh2",
                t["bare_refresh2"].seconds,
            ),
            (
                f"audit #1 (list 200, {n} bodies stored) vs bare list GET",
                "flow_audit1",
                t["bare_audit1"].seconds,
            ),
            (
                "audit #2 (list 304, unchanged) vs one 304 GET + one spec parse",
                "flow_audit2",
                audit2_baseline,
            ),
            ("audit #2 vs audit #1", "flow_audit2", t["flow_audit1"].seconds),
        ]
        print(f"round {round_no}")
        for label, key, base in table:
            print(f"  {label:<60}{t[key].seconds:>9.2f}{base:>12.3f}{t[key].seconds / base:>8.2f}")
    for round_no, t in enumerate(rounds, 1):
        for run in ("refresh1", "refresh2"):
            refresh, bare = t[f"flow_{run}"], t[f"bare_{run}"]
            print(
                f"round {round_no}: {run.replace('refresh', 'refresh #')}: {n / refresh.seconds:,.0f} subscriptions/s "
                f"through the flow, {n / bare.seconds:,.0f}/s bare; CPU of this process per subscription "
                f"{1000 * refresh.cpu / n:.3f} ms through the flow, {1000 * bare.cpu / n:.3f} ms bare "
                f"(streamkeeper's own {1000 * (refresh.cpu - bare.cpu) / n:.3f} ms)"
            )
        print(
            f"round {round_no}: the list GET alone: CPU {1000 * t['bare_list'].cpu / n:.4f} ms per subscription"
        )
        print(
            f"round {round_no}: audit #2: one 304 GET {t['bare_304'].seconds:.3f} s, one parse of the "
            f"{n}-entry spec {t['bare_parse'].seconds:.2f} s; snapshot rows it wrote: {t['audit2_rows'].result}; "
            f"CPU {t['flow_audit2'].cpu:.2f} s (audit #1 {t['flow_audit1'].cpu:.2f} s)"
        )
    print(f"peak memory of this process {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
