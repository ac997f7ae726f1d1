"""DuckLake against the embedded file, side by side in one run: concurrent writers, a report's latency while
they write, and the cost of a commit as the table grows.

Everything is real and started here: a PostgreSQL 15 cluster in a temp dir (fsync on, as in production), the
lake's catalog in it, its Parquet files on moto's S3 server (through DuckDB's httpfs) or in a directory.

1. **Writers**: 1, 2 and 4 processes at once, each loading `--batches` batches of `--rows` events with
   `HistoryStore.load_events` (dedup, a cursor moved with each batch), each on streams of its own (a source
   per process, as ingest workers on several hosts are). Total rows/s, against the embedded file's single
   writer loading the same batches (and the embedded file with the same 4 processes, which queue on its
   lock).
2. **A report while writers run**: `streamkeeper report current_subscriptions` and an events count, in a
   loop, idle and then while 4 writers load; median and p95 latency.
3. **Commit cost as the table grows**: one writer, batches of `--rows` into a lake that grows to
   `--grow-to` rows; the seconds per commit at each size, and the catalog rows each commit adds.

Run: ``.venv/bin/python bench/bench_lake.py`` (``--rows 5000 --batches 10 --grow-to 500000``; ``--data
dir`` puts the Parquet files in a directory instead of S3). Figures move with the machine's load: it is
printed; read the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from lakekit import Postgres, S3Server, lake_env, start_postgres, start_s3  # noqa: E402

from streamkeeper.store import HistoryStore, StoreSettings  # noqa: E402

WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np, pandas as pd
    from datetime import UTC, datetime
    from streamkeeper.store import HistoryStore
    name, rows, batches, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    store = HistoryStore(flow_run_id=name)
    store.schema_version()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    frames = []
    for b in range(batches):
        n = np.arange(b * rows, (b + 1) * rows)
        frames.append(pd.DataFrame({
            "vendor": "dma", "stream": [f"{name}-s{i % 20}" for i in n], "event_id": [f"{name}-{i}" for i in n],
            "subscription_id": None, "account": name, "event_type": "conference.updated",
            "occurred_at": t0, "received_at": t0, "payload": [f'{{"n": {i}, "pad": "{"x" * 120}"}}' for i in n],
        }))
    while time.time() < start:
        time.sleep(0.01)
    began = time.perf_counter()
    for b, frame in enumerate(frames):
        store.load_events(frame, cursors={f"bench:{name}": str(b)})
    print(f"{time.perf_counter() - began:.4f}")
    """
)

READER = textwrap.dedent(
    """
    import sys, time
    from streamkeeper.reports import run_report
    from streamkeeper.store import HistoryStore
    seconds = float(sys.argv[1])
    store = HistoryStore()
    out, end = [], time.time() + seconds
    while time.time() < end:
        t = time.perf_counter()
        run_report("current_subscriptions")
        store.query("SELECT vendor, count(*) AS n FROM events GROUP BY vendor")
        out.append(time.perf_counter() - t)
    print(" ".join(f"{x:.4f}" for x in out))
    """
)


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def run_writers(
    env: dict[str, str], count: int, rows: int, batches: int, reader_s: float = 0.0
) -> tuple[float, list[float]]:
    """`count` writer processes starting together; returns (total rows/s, the reader's latencies)."""
    start = time.time() + 8.0  # every process imported and connected before the clock starts
    tag = uuid.uuid4().hex[:6]
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, f"w{n}{tag}", str(rows), str(batches), str(start)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(count)
    ]
    reader = None
    if reader_s:
        reader = subprocess.Popen(
            [sys.executable, "-c", READER, str(reader_s)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    took = []
    for proc in writers:
        out, err = proc.communicate(timeout=1800)
        if proc.returncode:
            raise SystemExit(f"writer failed: {err[-2000:]}")
        took.append(float(out.strip().splitlines()[-1]))
    latencies: list[float] = []
    if reader is not None:
        out, err = reader.communicate(timeout=1800)
        if reader.returncode:
            raise SystemExit(f"reader failed: {err[-2000:]}")
        latencies = [float(x) for x in out.strip().splitlines()[-1].split()]
    return count * rows * batches / max(took), latencies


def read_alone(env: dict[str, str], seconds: float) -> list[float]:
    proc = subprocess.run(
        [sys.executable, "-c", READER, str(seconds)], env=env, capture_output=True, text=True, timeout=600
    )
    if proc.returncode:
        raise SystemExit(f"reader failed: {proc.stderr[-2000:]}")
    return [float(x) for x in proc.stdout.strip().splitlines()[-1].split()]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def catalog_rows(pg: Postgres, dbname: str) -> int:
    import psycopg

    with psycopg.connect(pg.conninfo(dbname), autocommit=True) as con:
        tables = [
            r[0] for r in con.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'ducklake_%'")
        ]
        return sum(int(con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]) for t in tables)  # type: ignore[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000, help="events per batch (commit)")
    parser.add_argument("--batches", type=int, default=10, help="batches per writer")
    parser.add_argument("--grow-to", type=int, default=500_000, help="rows the lake grows to in part 3")
    parser.add_argument("--data", choices=["s3", "dir"], default="s3", help="where the Parquet files go")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-lake-"))
    print(f"load average at start: {load()}")
    pg = start_postgres(durable=True)
    s3: S3Server | None = None
    try:
        s3 = start_s3(log=work / "moto.log")
        s3.create_bucket("bench")
        base = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMKEEPER_", "AWS_"))}

        def lake(name: str) -> dict[str, str]:
            pg.create_database(name)
            assert s3 is not None
            env = base | lake_env(pg, name, s3, "bench", prefix=f"{name}/")
            if args.data == "dir":
                env["STREAMKEEPER_DATA_PATH"] = str(work / name) + "/"
            return env

        def embedded(name: str) -> dict[str, str]:
            return base | {"STREAMKEEPER_STORE": str(work / f"{name}.duckdb")}

        # 1. writers
        print(f"\n1. writers: {args.batches} batches of {args.rows:,} events each (data on {args.data})")
        print(f"{'store':<34}{'writers':>8}{'rows/s':>12}{'vs embedded x1':>16}")
        base_rate, _ = run_writers(embedded("single"), 1, args.rows, args.batches)
        print(f"{'embedded file':<34}{1:>8}{base_rate:>12,.0f}{1.0:>16.2f}")
        rate4, _ = run_writers(embedded("four"), 4, args.rows, args.batches)
        print(f"{'embedded file (queue on its lock)':<34}{4:>8}{rate4:>12,.0f}{rate4 / base_rate:>16.2f}")
        for count in (1, 2, 4):
            rate, _ = run_writers(lake(f"writers{count}"), count, args.rows, args.batches)
            print(
                f"{'DuckLake (PostgreSQL + ' + args.data + ')':<34}{count:>8}{rate:>12,.0f}{rate / base_rate:>16.2f}"
            )
        print(f"load average: {load()}")

        # 2. a report while 4 writers load
        print("\n2. report latency (current_subscriptions + an events count), seconds")
        print(f"{'store':<16}{'while':<18}{'median':>8}{'p95':>8}{'runs':>6}")
        for label, env in (("embedded file", embedded("reads")), ("DuckLake", lake("reads"))):
            run_writers(env, 1, args.rows, 2)  # some rows first
            idle = read_alone(env, 20)
            _, busy = run_writers(env, 4, args.rows, args.batches, reader_s=30)
            print(
                f"{label:<16}{'idle':<18}{statistics.median(idle):>8.3f}{pct(idle, 0.95):>8.3f}{len(idle):>6}"
            )
            print(
                f"{label:<16}{'4 writers loading':<18}{statistics.median(busy):>8.3f}{pct(busy, 0.95):>8.3f}{len(busy):>6}"
            )
            print(f"{'':<16}{'ratio busy/idle':<18}{statistics.median(busy) / statistics.median(idle):>8.2f}")
        print(f"load average: {load()}")

        # 3. commit cost as the table grows
        print(
            f"\n3. one writer, commits of {args.rows:,} rows as the table grows (DuckLake, data on {args.data})"
        )
        env = lake("grow")
        HistoryStore(
            StoreSettings.from_env(env=env)
        ).schema_version()  # the tables exist before counting rows
        print(f"{'rows before':>12}{'s/commit':>10}{'catalog rows/commit':>21}{'embedded s/commit':>19}")
        file_env = embedded("grow")
        size = 0
        for target in [0, args.grow_to // 4, args.grow_to // 2, args.grow_to]:
            fill = target - size
            if fill > 0:  # grow both stores with batches of 50,000 rows up to the next size
                batch = min(50_000, fill)
                run_writers(env, 1, batch, max(1, fill // batch))
                run_writers(file_env, 1, batch, max(1, fill // batch))
                size += batch * max(1, fill // batch)
            before = catalog_rows(pg, "grow")
            lake_rate, _ = run_writers(env, 1, args.rows, 4)
            file_rate, _ = run_writers(file_env, 1, args.rows, 4)
            added = (catalog_rows(pg, "grow") - before) / 4
            print(f"{size:>12,}{args.rows / lake_rate:>10.3f}{added:>21.0f}{args.rows / file_rate:>19.3f}")
            size += 4 * args.rows
        if args.data == "s3":
            objects = s3.client().list_objects_v2(Bucket="bench", Prefix="grow/").get("Contents", [])
            print(
                f"Parquet on S3: {sum(o['Size'] for o in objects) / size:.0f} bytes per event, {len(objects)} objects"
            )
        print(f"load average at end: {load()}")
    finally:
        if s3 is not None:
            s3.stop()
        pg.stop()


if __name__ == "__main__":
    main()
