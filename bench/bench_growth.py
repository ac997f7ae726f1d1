"""The cost of one commit as ``events`` grows: 1,000-event batches through `HistoryStore.load_events` into a
table of 1 M, 10 M and 30 M rows, against a bare append of the same frames to the same table, side by side.

The table is grown in SQL to each size (setup, not timed: events numbered in time order, 1 ms apart, with
their ``event_keys`` rows as migration 8 writes them). At each size a fresh process opens the store and
commits `--commits` batches of `--batch` deliveries continuing the stream (10 % re-deliveries of events of
the same batches, and 1 % re-deliveries of random events already in the table, carrying their old times,
which must be dropped), inside `HistoryStore.session` as every drain does; another fresh process appends
the same frames bare (one open connection, a transaction per batch, no dedup). Each prints its median and
worst commit and its peak resident memory (``ru_maxrss``: the process only opens the store and commits).

Backends: the embedded file (default), and DuckLake with ``--lake`` (a PostgreSQL catalog started here,
the Parquet files in a directory).

Run: ``.venv/bin/python bench/bench_growth.py`` (``--sizes 1000000 10000000 30000000 --commits 40
--batch 1000``, ``--lake``). The machine's load is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from bench_ingest import EVENTS_PER_SECOND, VENDORS, batches, events_frame  # noqa: E402

from streamkeeper.store import HistoryStore  # noqa: E402
from streamkeeper.store.history import KEY_SQL  # noqa: E402

GROW_CHUNK = 2_000_000
BASE = "TIMESTAMPTZ '2026-01-01 00:00:00+00'"


def grow(start: int, stop: int) -> None:
    """Append events numbered `start`..`stop` (and their keys) to the store in ``$STREAMKEEPER_STORE``."""
    store = HistoryStore()
    vendors = ", ".join(f"'{v}'" for v in VENDORS)
    for low in range(start, stop, GROW_CHUNK):
        high = min(stop, low + GROW_CHUNK)
        with store.writer() as con:
            con.execute(
                f"""
                CREATE OR REPLACE TEMP TABLE grown AS
                SELECT ([{vendors}])[i % {len(VENDORS)} + 1] AS vendor, 'stream-' || (i % 20) AS stream,
                       'ev-' || i AS event_id, 'sub-' || (i % 20) AS subscription_id,
                       'acct-' || (i % 3) AS account,
                       CASE WHEN i % 2 = 0 THEN 'isConnected' ELSE 'reading' END AS event_type,
                       {BASE} + to_milliseconds(i) AS occurred_at,
                       {BASE} + to_milliseconds(i + 250) AS received_at,
                       now() AS loaded_at,
                       '{{"n":' || i || ',"value":"' || (i % 97) || '"}}' AS payload,
                       'grown' AS flow_run_id
                FROM range({low}, {high}) AS t(i)
                """
            )
            con.execute("INSERT INTO events BY NAME SELECT * FROM grown")
            con.execute(
                f"""
                INSERT INTO event_keys
                SELECT md5_number_upper(key), md5_number_lower(key), occurred_at
                FROM (SELECT {KEY_SQL} AS key, occurred_at FROM grown) ORDER BY occurred_at
                """
            )
            con.execute("DROP TABLE grown")
    if store.settings.kind == "embedded":
        with store.writer() as con:
            con.execute("CHECKPOINT")


def frames(table_rows: int, first: int, commits: int, batch: int) -> tuple[list[pd.DataFrame], int]:
    """The batches to commit after `table_rows` events, and how many of their rows are new."""
    frame = events_frame(commits * batch, 0.10, seed=first % 1000, first=first)
    rng = np.random.default_rng(first)
    old = rng.integers(0, table_rows, len(frame) // 100)  # re-deliveries of stored events, with their time
    at = rng.choice(len(frame), len(old), replace=False)
    frame.loc[at, "vendor"] = VENDORS[old % len(VENDORS)]
    frame.loc[at, "stream"] = [f"stream-{n % 20}" for n in old]
    frame.loc[at, "event_id"] = [f"ev-{n}" for n in old]
    frame.loc[at, "occurred_at"] = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(old, unit="ms")
    new = frame.drop_duplicates(["vendor", "stream", "event_id"]).shape[0] - len(np.unique(old))
    return batches(frame, batch), new


def measure(mode: str, table_rows: int, first: int, commits: int, batch: int) -> dict[str, float]:
    """Commit the batches (`mode`: ``store`` through load_events in a session, ``bare`` appended)."""
    parts, new = frames(table_rows, first, commits, batch)
    store = HistoryStore(flow_run_id=mode)
    store.schema_version()
    seconds: list[float] = []
    loaded = 0
    if mode == "store":
        with store.session():
            for part in parts:
                started = time.perf_counter()
                loaded += store.load_events(part)
                seconds.append(time.perf_counter() - started)
        assert loaded == new, (loaded, new)
    elif store.settings.kind == "embedded":
        import duckdb

        con = duckdb.connect(str(store.path))
        for part in parts:
            started = time.perf_counter()
            part = part.assign(loaded_at=datetime.now(UTC), flow_run_id=mode)
            con.register("batch", part)
            con.execute("BEGIN TRANSACTION")
            con.execute("INSERT INTO events BY NAME SELECT * FROM batch")
            con.execute("COMMIT")
            con.unregister("batch")
            seconds.append(time.perf_counter() - started)
        con.close()
    else:  # DuckLake: the same append on a cursor of the attached lake, as load_events gets
        for part in parts:
            started = time.perf_counter()
            part = part.assign(loaded_at=datetime.now(UTC), flow_run_id=mode)
            with store.backend.connect(write=True) as con:
                con.register("batch", part)
                con.execute("BEGIN TRANSACTION")
                con.execute("INSERT INTO events BY NAME SELECT * FROM batch")
                con.execute("COMMIT")
                con.unregister("batch")
            seconds.append(time.perf_counter() - started)
    if mode == "bare":  # setup again, not timed: the keys of what the bare run appended, as if loaded
        with store.writer() as con:
            con.execute(
                f"INSERT INTO event_keys SELECT md5_number_upper(key), md5_number_lower(key), occurred_at "
                f"FROM (SELECT {KEY_SQL} AS key, occurred_at FROM events WHERE flow_run_id = 'bare')"
            )
    steady = seconds[2:] or seconds  # the first commits warm the process up
    return {
        "median_ms": statistics.median(steady) * 1000,
        "p90_ms": float(np.percentile(steady, 90)) * 1000,
        "max_ms": max(steady) * 1000,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def worker(env: dict[str, str], *args: object) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "{}")
    return result


def run(label: str, env: dict[str, str], sizes: list[int], commits: int, batch: int) -> None:
    print(f"\n{label}: {commits} commits of {batch:,} deliveries at each size")
    print(
        f"{'events rows':>12} {'load_events ms/commit':>22} {'p90':>7} {'bare ms/commit':>15} {'ratio':>6}"
        f" {'load_events peak MiB':>21} {'bare peak MiB':>14} {'vs 1st size':>12}"
    )
    rows = 0
    first_median = None
    for size in sizes:
        started = time.perf_counter()
        worker(env, "grow", rows, size)
        grow_s = time.perf_counter() - started
        rows = size
        stream_at = size  # the batches continue the stream after the table's newest event
        store = worker(env, "store", size, stream_at, commits, batch)
        bare = worker(env, "bare", size, stream_at + commits * batch, commits, batch)
        rows = size + 2 * commits * batch
        first_median = first_median or store["median_ms"]
        print(
            f"{size:>12,} {store['median_ms']:>22.1f} {store['p90_ms']:>7.1f} {bare['median_ms']:>15.1f}"
            f" {bare['median_ms'] / store['median_ms']:>6.2f} {store['peak_mib']:>21.0f} {bare['peak_mib']:>14.0f}"
            f" {store['median_ms'] / first_median:>12.2f}   (grown in {grow_s:.0f} s)",
            flush=True,
        )
        # the next growth continues the stream after the measured batches' events


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        what, *rest = sys.argv[2:]
        numbers = [int(x) for x in rest]
        if what == "grow":
            grow(numbers[0], numbers[1])
            print("{}")
        else:
            print(json.dumps(measure(what, *numbers)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000, 30_000_000])
    parser.add_argument("--commits", type=int, default=40)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument(
        "--lake", action="store_true", help="also DuckLake (PostgreSQL catalog, data in a dir)"
    )
    args = parser.parse_args()
    print(f"$ {' '.join(sys.argv)}")
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(
        f"the stream: {EVENTS_PER_SECOND:,} events/s of event time; 30 M rows span {30e6 / EVENTS_PER_SECOND / 3600:.1f} h"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMKEEPER_", "AWS_"))}
    with tempfile.TemporaryDirectory(prefix="bench-growth-") as tmp:
        work = Path(tmp)
        path = work / "growth.duckdb"
        env = base | {"STREAMKEEPER_STORE": str(path)}
        HistoryStore(path).schema_version()
        run("embedded file", env, args.sizes, args.commits, args.batch)
        for leftover in work.glob("growth.duckdb*"):
            leftover.unlink()
        if args.lake:
            from lakekit import start_postgres

            pg = start_postgres(durable=True)
            try:
                pg.create_database("growth")
                lake_env = base | {
                    "STREAMKEEPER_STORE": f"ducklake:postgres:{pg.conninfo('growth')}",
                    "STREAMKEEPER_DATA_PATH": str(work / "lake") + "/",
                }
                run(
                    "DuckLake (PostgreSQL catalog, Parquet in a directory)",
                    lake_env,
                    args.sizes,
                    args.commits,
                    args.batch,
                )
            finally:
                pg.stop()
    print(f"\nuptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
