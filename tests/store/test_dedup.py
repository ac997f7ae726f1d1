"""The dedup by `event_keys` (migration 8): a commit reads only the keys near its events' own times, yet a
re-delivery of an old event is never stored twice; the migration backfills the keys of a store written
before it; a session keeps one writer across batches and still lets other processes in between them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from streamkeeper.store import HistoryStore
from streamkeeper.store.history import DEDUP_TOLERANCE, KEY_BUCKET, MAX_KEY_RANGES, key_ranges
from streamkeeper.store.schema import LATEST_VERSION, MIGRATIONS

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def events(
    ids: list[str], at: list[datetime | None], received: datetime, stream: str = "ch1"
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "vendor": "plt",
            "stream": stream,
            "event_id": ids,
            "subscription_id": None,
            "account": "t1",
            "event_type": "isMute",
            "occurred_at": pd.Series(at, dtype="datetime64[us, UTC]"),
            "received_at": received,
            "payload": [f'{{"id": "{i}"}}' for i in ids],
        }
    )


def count(store: HistoryStore, where: str = "true") -> int:
    return int(store.query(f"SELECT count(*) AS n FROM events WHERE {where}")["n"].iloc[0])


def test_an_old_event_delivered_again_days_later_is_not_stored_twice(store_target: str) -> None:
    store = HistoryStore(store_target)
    assert store.load_events(events(["old"], [T0], received=T0)) == 1
    # days of newer traffic, so the old key lies far outside what a current batch's times cover
    with store.session():
        for day in range(1, 4):
            day_start = T0 + timedelta(days=day)
            ids = [f"d{day}-{n}" for n in range(50)]
            times: list[datetime | None] = [day_start + timedelta(seconds=n) for n in range(50)]
            assert store.load_events(events(ids, times, received=day_start)) == 50
    late = T0 + timedelta(days=11)
    batch = events(["new-1", "old", "new-2"], [late, T0, late], received=late)
    assert store.load_events(batch) == 2
    assert count(store, "event_id = 'old'") == 1
    # the re-delivery's time moved by less than the tolerance: still the same delivery
    moved = events(["old"], [T0 + DEDUP_TOLERANCE / 2], received=late)
    assert store.load_events(moved) == 0
    assert count(store) == 153


def test_an_untimed_event_is_checked_against_every_untimed_key(store_target: str) -> None:
    store = HistoryStore(store_target)
    assert store.load_events(events(["u1", "t1"], [None, T0], received=T0)) == 2
    later = T0 + timedelta(days=30)
    assert store.load_events(events(["x", "y"], [later, later], received=later)) == 2
    assert store.load_events(events(["u1", "u2"], [None, None], received=later)) == 1
    assert count(store, "event_id = 'u1'") == 1
    # the same id on another stream is another delivery, timed or not
    assert store.load_events(events(["u1", "t1"], [None, T0], received=later, stream="ch2")) == 2


def test_key_ranges_cover_every_time_in_few_ranges() -> None:
    rng = np.random.default_rng(3)
    base = pd.Timestamp(T0)
    times = pd.Series(base + pd.to_timedelta(rng.integers(0, 10**9, 500), unit="s")).astype(
        "datetime64[us, UTC]"
    )
    ranges = key_ranges(pd.concat([times, pd.Series([pd.NaT], dtype=times.dtype)]), DEDUP_TOLERANCE)
    assert 1 <= len(ranges) <= MAX_KEY_RANGES
    bounds = [(pd.Timestamp(low), pd.Timestamp(high)) for low, high in ranges]
    for t in times:
        assert any(low <= t - DEDUP_TOLERANCE and t + DEDUP_TOLERANCE <= high for low, high in bounds)
    # a batch of close times is one range of whole buckets
    close = pd.Series([base, base + KEY_BUCKET * 1.5]).astype("datetime64[us, UTC]")
    ((low, high),) = key_ranges(close, pd.Timedelta(0))
    assert (pd.Timestamp(low), pd.Timestamp(high)) == (base, base + KEY_BUCKET * 2)
    assert key_ranges(pd.Series([pd.NaT], dtype="datetime64[us, UTC]"), DEDUP_TOLERANCE) == []


def test_migration_8_backfills_the_keys_of_events_stored_before_it(tmp_path: Path) -> None:
    path = tmp_path / "v7.duckdb"
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMPTZ)"
    )
    for migration in MIGRATIONS:
        if migration.version < 8:
            con.execute(migration.sql)
            con.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, now())", [migration.version, migration.name]
            )
    old = events(["a", "b", "u"], [T0, T0 + timedelta(hours=1), None], received=T0)
    old["loaded_at"] = T0
    old["flow_run_id"] = None
    con.register("old", old)
    con.execute("INSERT INTO events BY NAME SELECT * FROM old")
    con.close()

    store = HistoryStore(path)
    assert store.schema_version() == LATEST_VERSION
    keys = store.query("SELECT count(*) AS n, count(dedup_at) AS timed FROM event_keys")
    assert (int(keys["n"].iloc[0]), int(keys["timed"].iloc[0])) == (3, 2)
    later = T0 + timedelta(days=3)
    batch = events(["a", "b", "u", "c"], [T0, T0 + timedelta(hours=1), None, later], received=later)
    assert store.load_events(batch) == 1
    assert count(store) == 4


SESSION_READER = textwrap.dedent(
    """
    import sys
    from streamkeeper.store import HistoryStore
    store = HistoryStore(sys.argv[1], lock_timeout=float(sys.argv[2]))
    print(int(store.query("SELECT count(*) AS n FROM events")["n"].iloc[0]))
    """
)


def test_a_session_keeps_its_writer_yet_lets_another_process_read_between_batches(tmp_path: Path) -> None:
    path = tmp_path / "history.duckdb"
    store = HistoryStore(path)
    with store.session():
        store.load_events(events(["a", "b"], [T0, T0], received=T0))
        first = store.backend._held.con  # type: ignore[attr-defined]
        store.load_events(events(["c"], [T0], received=T0))
        assert store.backend._held.con is first  # type: ignore[attr-defined]  # no reopen between batches
        # another process waits for the lock the session holds: it is given up between batches
        reader = subprocess.run(
            [sys.executable, "-c", SESSION_READER, str(path), "20"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert reader.returncode == 0, reader.stderr
        assert reader.stdout.strip() == "3"
        # the next batch takes the lock again
        assert store.load_events(events(["c", "d"], [T0, T0], received=T0)) == 1
        assert store.query("SELECT count(*) AS n FROM events")["n"].iloc[0] == 4
    reader = subprocess.run(
        [sys.executable, "-c", SESSION_READER, str(path), "5"], capture_output=True, text=True, timeout=60
    )
    assert reader.stdout.strip() == "4", reader.stderr


SESSION_WRITER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime, timedelta
    import pandas as pd
    from streamkeeper.store import HistoryStore
    path, worker = sys.argv[1], sys.argv[2]
    store = HistoryStore(path, flow_run_id=worker)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with store.session():
        for b in range(20):
            ids = [f"e{b}-{n}" for n in range(50)]  # every worker delivers the same events
            store.load_events(pd.DataFrame({
                "vendor": "plt", "stream": "s", "event_id": ids, "subscription_id": None, "account": None,
                "event_type": None, "occurred_at": [t0 + timedelta(seconds=b)] * 50, "received_at": t0,
                "payload": None,
            }))
    print("ok")
    """
)


@pytest.mark.slow
def test_sessions_in_several_processes_store_each_delivery_once(tmp_path: Path) -> None:
    path = tmp_path / "history.duckdb"
    HistoryStore(path).schema_version()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SESSION_WRITER, str(path), f"w{n}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    store = HistoryStore(path)
    assert count(store) == 1000
    dupes = store.query("SELECT count(*) - count(DISTINCT event_id) AS n FROM events")["n"].iloc[0]
    assert dupes == 0
