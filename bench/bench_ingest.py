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
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from pubnub.pubnub import PubNub

from streamkeeper.ingest import PubNubOptions, PubNubStream, drain_pubnub
from streamkeeper.ingest.pubnub_source import HISTORY_PAGE, sdk_config
from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.pubnub import PubNubEmulator
from streamkeeper.store import HistoryStore
from streamkeeper.store.records import EVENT_COLUMNS

VENDORS = np.array(["plt", "equinix", "thingspace", "dma", "stream"])
EVENTS_PER_SECOND = 1_000
"""The benchmark's stream: its events' own times (``occurred_at``) are 1 ms apart."""


def events_frame(total: int, duplicate_share: float, seed: int = 7, first: int = 0) -> pd.DataFrame:
    """`total` deliveries in arrival order: unique events numbered from `first`, each with its own time
    (``occurred_at``, `EVENTS_PER_SECOND`), and a share of re-deliveries of earlier ones, which carry the
    original's time and id and arrive later: most within seconds, 1 in 20 minutes later, 1 in 100 from
    anywhere before (a consumer replaying old history)."""
    rng = np.random.default_rng(seed)
    duplicates = int(total * duplicate_share)
    unique = total - duplicates
    original = rng.integers(0, unique, duplicates)
    lag = rng.exponential(2_000, duplicates)  # in events, i.e. ms: 2 s on average
    late = rng.random(duplicates)
    lag = np.where(late < 0.05, rng.integers(0, 20 * 60_000, duplicates), lag)
    arrival = np.where(late < 0.01, unique - 1, original + lag).clip(max=unique - 1)
    order = np.concatenate([np.arange(unique), original])
    arrives = np.concatenate([np.arange(unique, dtype=float), arrival + 0.5])
    order = order[np.argsort(arrives, kind="stable")] + first
    n = pd.Series(order)
    vendor = VENDORS[order % len(VENDORS)]
    base = pd.Timestamp("2026-01-01", tz="UTC")
    arrived = base + pd.to_timedelta(np.sort(arrives) + first + 250, unit="ms")
    return pd.DataFrame(
        {
            "vendor": vendor,
            "stream": "stream-" + (order % 20).astype(str),
            "event_id": "ev-" + n.astype(str),
            "subscription_id": "sub-" + (order % 20).astype(str),
            "account": "acct-" + (order % 3).astype(str),
            "event_type": np.where(order % 2 == 0, "isConnected", "reading"),
            "occurred_at": (base + pd.to_timedelta(order, unit="ms")).astype("datetime64[us, UTC]"),
            "received_at": pd.Series(arrived).astype("datetime64[us, UTC]"),
            "payload": '{"n":' + n.astype(str) + ',"value":"' + (order % 97).astype(str) + '"}',
        },
        columns=EVENT_COLUMNS,
    )


def batches(frame: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    return [frame.iloc[i : i + size].reset_index(drop=True) for i in range(0, len(frame), size)]


def bare_load(path: Path, parts: list[pd.DataFrame]) -> float:
    """The bare baseline: the same frames appended to the same ``events`` table, one open connection, a
    transaction per batch, no dedup. Returns seconds."""
    con = duckdb.connect(str(path))
    started = time.perf_counter()
    for part in parts:
        part = part.assign(loaded_at=datetime.now(UTC), flow_run_id=None)
        con.register("batch", part)
        con.execute("BEGIN TRANSACTION")
        con.execute("INSERT INTO events BY NAME SELECT * FROM batch")
        con.execute("COMMIT")
        con.unregister("batch")
    seconds = time.perf_counter() - started
    con.close()
    return seconds


def store_load(path: Path, parts: list[pd.DataFrame], session: bool) -> tuple[float, int]:
    """`HistoryStore.load_events`, one call per batch, inside `HistoryStore.session` (as every drain) or
    not (a connection per batch). Returns seconds and rows stored."""
    store = HistoryStore(path)
    store.schema_version()
    started = time.perf_counter()
    if session:
        with store.session():
            loaded = sum(store.load_events(part) for part in parts)
    else:
        loaded = sum(store.load_events(part) for part in parts)
    seconds = time.perf_counter() - started
    return seconds, loaded


def bench_load(
    total: int, duplicate_share: float, batch: int, workdir: Path, repeat: int
) -> dict[str, float]:
    """Each method `repeat` times, interleaved (bare, session, per batch), on fresh files; medians."""
    frame = events_frame(total, duplicate_share)
    parts = batches(frame, batch)
    unique = frame.drop_duplicates(["vendor", "stream", "event_id"]).shape[0]
    times: dict[str, list[float]] = {"bare": [], "store": [], "per_batch": []}
    for k in range(repeat):
        paths = {name: workdir / f"{name}-{batch}-{k}.duckdb" for name in times}
        for path in paths.values():
            HistoryStore(path).schema_version()  # the same schema, made before timing
        times["bare"].append(bare_load(paths["bare"], parts))
        seconds, loaded = store_load(paths["store"], parts, session=True)
        assert loaded == unique, (loaded, unique)
        times["store"].append(seconds)
        if k == 0 or batch >= 50_000:  # per-batch connections: once at small batches (slow, for reference)
            seconds, loaded = store_load(paths["per_batch"], parts, session=False)
            assert loaded == unique, (loaded, unique)
            times["per_batch"].append(seconds)
        stored = HistoryStore(paths["store"]).query(
            "SELECT count(*) AS n, count(DISTINCT (vendor, stream, event_id)) AS d FROM events"
        )
        assert int(stored["n"][0]) == int(stored["d"][0]) == unique
        for path in paths.values():
            for leftover in path.parent.glob(path.name + "*"):
                leftover.unlink()
    out: dict[str, float] = {"rows": total, "unique": unique, "batch": batch}
    for name, values in times.items():
        out[f"{name}_seconds"] = float(np.median(values))
        out[f"{name}_rate"] = total / out[f"{name}_seconds"]
        out[f"{name}_runs"] = len(values)
    out["ratio"] = out["store_rate"] / out["bare_rate"]
    out["ratios"] = ", ".join(f"{b / s:.2f}" for b, s in zip(times["bare"], times["store"], strict=True))  # type: ignore[assignment]
    out["per_batch_ratio"] = out["per_batch_rate"] / out["bare_rate"]
    return out


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


def sdk_history_alone(options: PubNubOptions, channels: tuple[str, ...]) -> tuple[float, int]:
    """The bare baseline of the backlog: the same SDK client reading every channel's whole history in pages
    of `HISTORY_PAGE` from the service's time back, as the drain does, keeping the messages in a list and
    storing nothing. Returns seconds and messages read."""
    pubnub = PubNub(sdk_config("sub-key", options))
    kept: list[object] = []
    started = time.perf_counter()
    try:
        high = int(pubnub.time().sync().result)
        for name in channels:
            start = high + 1
            while True:
                result = (
                    pubnub.fetch_messages()
                    .channels([name])
                    .maximum_per_channel(HISTORY_PAGE)
                    .start(start)
                    .sync()
                ).result
                items = result.channels.get(name, [])
                if not items:
                    break
                kept.extend((name, int(item.timetoken), item.message) for item in items)
                oldest = min(int(item.timetoken) for item in items)
                if oldest >= start:
                    break
                start = oldest
    finally:
        pubnub.stop()
    return time.perf_counter() - started, len(kept)


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
        sdk_seconds, sdk_read = sdk_history_alone(options, CHANNELS)
        assert sdk_read == count, (sdk_read, count)

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
            "sdk_seconds": sdk_seconds,
            "sdk_rate": count / sdk_seconds,
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
        "--repeat", type=int, default=3, help="runs per batch size, interleaved; the median counts"
    )
    args = parser.parse_args()
    print(f"$ {' '.join(sys.argv)}")
    print(f"uptime: {uptime()}  ({os.cpu_count()} CPUs)")

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        workdir = Path(tmp)
        print(f"load {args.events:,} events ({args.duplicates:.0%} duplicates) into events")
        print(
            f"{'batch':>8} {'load_events rows/s':>19} {'bare insert rows/s':>19} {'ratio':>6}"
            f" {'no session rows/s':>25} {'ratio':>6}"
        )
        for size in args.batch:
            r = bench_load(args.events, args.duplicates, size, workdir, args.repeat)
            print(
                f"{size:>8,} {r['store_rate']:>19,.0f} {r['bare_rate']:>19,.0f} {r['ratio']:>6.2f}"
                f" {r['per_batch_rate']:>25,.0f} {r['per_batch_ratio']:>6.2f}"
            )
            print(
                f"         (medians of {r['store_runs']:.0f} runs: {r['store_seconds']:.2f} s vs "
                f"{r['bare_seconds']:.2f} s bare, ratios per run {r['ratios']}; "
                f"{r['unique']:,} unique rows stored)"
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
        print(
            f"  the SDK alone reading the same history, storing nothing: {p['sdk_rate']:>10,.0f} events/s "
            f"({p['sdk_seconds']:.2f} s); backlog vs it: {p['backlog_rate'] / p['sdk_rate']:.2f}"
        )
        print(f"  live (published meanwhile): {p['live_rate']:>10,.0f} events/s ({p['live_seconds']:.2f} s)")
    print(f"uptime: {uptime()}")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    main()
