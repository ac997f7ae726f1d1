"""Ingest benchmarks: loading events into DuckDB with deduplication, and PubNub -> DuckDB end to end.

1. 1,000,000 events, 10 % of them duplicates (re-deliveries of earlier events), loaded with
   `HistoryStore.load_events` (what every ingest source uses: anti-join dedup, one transaction per batch,
   the inter-process lock, a connection per batch), against a bare DuckDB insert of the same DataFrame
   batches into the same ``events`` table (no dedup, one connection), in the same run; and, to tell the
   dedup's cost from the connection-per-batch cost, load_events' statement on one open connection.
2. The PubNub emulator (in its own process) -> the real ``pubnub`` SDK -> `drain_pubnub` -> DuckDB, in
   events per second: a backlog (published before the drain: all from history), and live (published at
   full speed while the drain listens; most of it is recovered from history, see docs/ingest.md).

Run: ``.venv/bin/python bench/bench_ingest.py`` (``--events``, ``--duplicates``, ``--batch``,
``--pubnub-events``, ``--repeat``; ``--help``). Figures move a lot with the machine's load: the load
average is printed; ``--repeat 3`` keeps the best of three runs of each method.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from streamkeeper.ingest import PubNubOptions, PubNubStream, drain_pubnub
from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.pubnub import PubNubEmulator
from streamkeeper.store import HistoryStore
from streamkeeper.store.records import EVENT_COLUMNS

VENDORS = np.array(["plt", "equinix", "thingspace", "dma", "stream"])
DEDUP_INSERT = """
    INSERT INTO events BY NAME
    SELECT b.* FROM (
        SELECT * FROM batch
        QUALIFY row_number() OVER (PARTITION BY vendor, stream, event_id ORDER BY received_at) = 1
    ) AS b
    ANTI JOIN events AS e ON e.vendor = b.vendor AND e.stream = b.stream AND e.event_id = b.event_id
"""
"""The statement `HistoryStore.load_events` runs (streamkeeper/store/history.py)."""


def events_frame(total: int, duplicate_share: float, seed: int = 7) -> pd.DataFrame:
    """`total` rows: unique events, plus a share of re-deliveries of earlier ones, in arrival order."""
    rng = np.random.default_rng(seed)
    duplicates = int(total * duplicate_share)
    unique = total - duplicates
    order = np.concatenate([np.arange(unique), rng.integers(0, unique, duplicates)])
    order.sort(kind="stable")  # a re-delivery arrives after (or right next to) its original
    n = pd.Series(order)
    vendor = VENDORS[order % len(VENDORS)]
    base = pd.Timestamp("2026-01-01", tz="UTC")
    return pd.DataFrame(
        {
            "vendor": vendor,
            "stream": "stream-" + (order % 20).astype(str),
            "event_id": "ev-" + n.astype(str),
            "subscription_id": "sub-" + (order % 20).astype(str),
            "account": "acct-" + (order % 3).astype(str),
            "event_type": np.where(order % 2 == 0, "isConnected", "reading"),
            "occurred_at": base + pd.to_timedelta(order, unit="ms"),
            "received_at": base + pd.to_timedelta(order + 250, unit="ms"),
            "payload": '{"n":' + n.astype(str) + ',"value":"' + (order % 97).astype(str) + '"}',
        },
        columns=EVENT_COLUMNS,
    )


def best_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """The best time of each method over several runs, and the rates and ratio from those."""
    out = dict(runs[0])
    for method in ("store", "bare", "dedup"):
        out[f"{method}_seconds"] = min(r[f"{method}_seconds"] for r in runs)
        out[f"{method}_rate"] = out["rows"] / out[f"{method}_seconds"]
    out["ratio"] = out["store_rate"] / out["bare_rate"]
    return out


def batches(frame: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    return [frame.iloc[i : i + size].reset_index(drop=True) for i in range(0, len(frame), size)]


def bench_load(total: int, duplicate_share: float, batch: int, workdir: Path) -> dict[str, float]:
    frame = events_frame(total, duplicate_share)
    parts = batches(frame, batch)
    unique = frame.drop_duplicates(["vendor", "stream", "event_id"]).shape[0]

    # bare DuckDB: the same batches, straight INSERT ... SELECT from the DataFrame, one open connection
    bare_path = workdir / "bare.duckdb"
    HistoryStore(bare_path).schema_version()  # the same schema
    con = duckdb.connect(str(bare_path))
    started = time.perf_counter()
    for part in parts:
        part = part.assign(loaded_at=datetime.now(UTC), flow_run_id=None)
        con.register("batch", part)
        con.execute("BEGIN TRANSACTION")
        con.execute("INSERT INTO events BY NAME SELECT * FROM batch")
        con.execute("COMMIT")
        con.unregister("batch")
    bare_seconds = time.perf_counter() - started
    bare_rows = con.execute("SELECT count(*) FROM events").fetchone()[0]  # type: ignore[index]
    con.close()
    assert bare_rows == total

    # the dedup statement of load_events (window + anti-join), on one open connection
    dedup_path = workdir / "dedup.duckdb"
    HistoryStore(dedup_path).schema_version()
    con = duckdb.connect(str(dedup_path))
    started = time.perf_counter()
    for part in parts:
        part = part.assign(loaded_at=datetime.now(UTC), flow_run_id=None)
        con.register("batch", part)
        con.execute("BEGIN TRANSACTION")
        con.execute(DEDUP_INSERT)
        con.execute("COMMIT")
        con.unregister("batch")
    dedup_seconds = time.perf_counter() - started
    dedup_rows = con.execute("SELECT count(*) FROM events").fetchone()[0]  # type: ignore[index]
    con.close()
    assert dedup_rows == unique

    # HistoryStore.load_events: the same, plus the lock, a connection (and its checkpoint) per batch
    store = HistoryStore(workdir / "store.duckdb")
    store.schema_version()
    started = time.perf_counter()
    loaded = sum(store.load_events(part) for part in parts)
    store_seconds = time.perf_counter() - started
    stored = int(store.query("SELECT count(*) AS n FROM events")["n"][0])
    assert loaded == stored == unique, (loaded, stored, unique)
    return {
        "rows": total,
        "unique": unique,
        "batch": batch,
        "store_seconds": store_seconds,
        "store_rate": total / store_seconds,
        "bare_seconds": bare_seconds,
        "bare_rate": total / bare_seconds,
        "dedup_seconds": dedup_seconds,
        "dedup_rate": total / dedup_seconds,
        "ratio": (total / store_seconds) / (total / bare_seconds),
    }


CHANNELS = tuple(f"bench-partner_sub{i}" for i in range(1, 5))
MESSAGE = {"eventType": "isConnected", "timeStamp": "2026-01-01T00:00:00Z", "isConnected": "false"}


def _emulator(conn: Connection) -> None:
    """The PubNub emulator in its own process (as PubNub is remote), publishing on command."""
    emulator = PubNubEmulator(long_poll_timeout=1.0)
    server = SandboxServer(emulator).start()
    conn.send(server.port)
    try:
        while (command := conn.recv()) is not None:
            if command == "long_polls":
                conn.send(emulator.long_polls)
                continue
            first, count = command
            for n in range(first, first + count):
                emulator.publish(CHANNELS[n % len(CHANNELS)], {**MESSAGE, "n": n})
            conn.send(count)
    finally:
        server.stop()


def bench_pubnub(count: int, workdir: Path) -> dict[str, float]:
    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(target=_emulator, args=(theirs,), daemon=True)
    child.start()
    try:
        port = ours.recv()
        options = PubNubOptions(
            origin=f"http://127.0.0.1:{port}", idle_seconds=0.5, max_events=10**7, batch_size=20_000
        )
        streams = [
            PubNubStream("bench-a", "sub-key", CHANNELS[:2]),
            PubNubStream("bench-b", "sub-key", CHANNELS[2:]),
        ]

        # backlog: everything published before the drain (a first run, or a consumer that was down)
        ours.send((0, count))
        ours.recv()
        backlog_store = HistoryStore(workdir / "pubnub-backlog.duckdb")
        backlog_store.schema_version()
        started = time.perf_counter()
        backlog = drain_pubnub(backlog_store, streams, options)
        backlog_seconds = time.perf_counter() - started - options.idle_seconds  # the idle wait is not work
        assert backlog.loaded == count, backlog

        # live: published at full speed while the drain listens (live + history reconciliation)
        live_store = HistoryStore(workdir / "pubnub-live.duckdb")
        live_store.schema_version()
        drain_pubnub(live_store, streams, options)  # cursors at the tip: only new messages count
        before = int(live_store.query("SELECT count(*) AS n FROM events")["n"][0])
        result: list[object] = []
        listener = threading.Thread(target=lambda: result.append(drain_pubnub(live_store, streams, options)))
        listener.start()
        deadline = time.monotonic() + 30
        while True:  # the clock starts once the subscribe is listening
            ours.send("long_polls")
            if ours.recv() > 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the drain never subscribed")
        started = time.perf_counter()
        ours.send((count, count))
        ours.recv()
        listener.join()
        live_seconds = time.perf_counter() - started - options.idle_seconds
        live_loaded = int(live_store.query("SELECT count(*) AS n FROM events")["n"][0]) - before
        assert live_loaded == count, (live_loaded, result)
        return {
            "count": count,
            "backlog_seconds": backlog_seconds,
            "backlog_rate": count / backlog_seconds,
            "live_seconds": live_seconds,
            "live_rate": count / live_seconds,
        }
    finally:
        ours.send(None)
        child.join(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--duplicates", type=float, default=0.10, help="share of duplicate deliveries")
    parser.add_argument("--batch", type=int, nargs="+", default=[100_000, 5_000], help="rows per commit")
    parser.add_argument("--pubnub-events", type=int, default=50_000)
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per batch size; the best time of each counts"
    )
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        workdir = Path(tmp)
        print(f"load {args.events:,} events ({args.duplicates:.0%} duplicates) into events")
        print(
            f"{'batch':>8} {'load_events rows/s':>19} {'bare insert rows/s':>19} {'ratio':>6}"
            f" {'dedup SQL, 1 conn rows/s':>25}"
        )
        for size in args.batch:
            runs = []
            for k in range(args.repeat):
                sub = workdir / f"batch-{size}-{k}"
                sub.mkdir()
                runs.append(bench_load(args.events, args.duplicates, size, sub))
                shutil.rmtree(sub)
            r = best_of(runs)
            print(
                f"{size:>8,} {r['store_rate']:>19,.0f} {r['bare_rate']:>19,.0f} {r['ratio']:>6.2f}"
                f" {r['dedup_rate']:>25,.0f}"
            )
            print(
                f"         ({r['store_seconds']:.2f} s vs {r['bare_seconds']:.2f} s bare, "
                f"{r['dedup_seconds']:.2f} s dedup SQL on one connection; {r['unique']:,} unique rows stored)"
            )
        print()
        p = bench_pubnub(args.pubnub_events, workdir)
        print(
            f"PubNub emulator (own process) -> real SDK -> drain_pubnub -> DuckDB, "
            f"{p['count']:,} events on 4 channels"
        )
        print(
            f"  backlog (history catch-up): {p['backlog_rate']:>10,.0f} events/s ({p['backlog_seconds']:.2f} s)"
        )
        print(f"  live (published meanwhile): {p['live_rate']:>10,.0f} events/s ({p['live_seconds']:.2f} s)")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
