"""The history store: migrations, versioned subscription history, exactly-once event loads, concurrency."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from streamkeeper.errors import StoreError
from streamkeeper.store import HistoryStore, SubscriptionVersion
from streamkeeper.store.schema import LATEST_VERSION

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def version(sub: str, change: str, at: datetime, **kw: object) -> SubscriptionVersion:
    return SubscriptionVersion(
        vendor="dma", account="a", subscription_id=sub, change=change, valid_from=at, **kw
    )  # type: ignore[arg-type]


def events(ids: list[str], stream: str = "ch1") -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "vendor": "plt",
                "stream": stream,
                "event_id": i,
                "subscription_id": None,
                "account": "t1",
                "event_type": "isMute",
                "occurred_at": T0,
                "received_at": T0,
                "payload": {"n": i},
            }
            for i in ids
        ]
    )


def test_migrations_apply_once(db_path: Path) -> None:
    store = HistoryStore(db_path)
    assert store.schema_version() == LATEST_VERSION
    again = HistoryStore(db_path)
    assert again.schema_version() == LATEST_VERSION
    assert len(again.query("SELECT * FROM schema_migrations")) == LATEST_VERSION


def test_newer_schema_is_refused(db_path: Path) -> None:
    con = duckdb.connect(str(db_path))
    con.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMPTZ)"
    )
    con.execute("INSERT INTO schema_migrations VALUES (999, 'future', now())")
    con.close()
    with pytest.raises(StoreError, match="newer than this streamkeeper"):
        HistoryStore(db_path).query("SELECT 1")


def test_versions_close_and_answer_as_of_queries(db_path: Path) -> None:
    store = HistoryStore(db_path)
    store.record_versions([version("1", "created", T0, time_to_live=60)])
    store.record_versions(
        [
            version("1", "refreshed", T0 + timedelta(hours=1), time_to_live=120),
            version("1", "refreshed", T0 + timedelta(hours=2), time_to_live=180),  # two in one batch
            version("2", "created", T0 + timedelta(hours=2)),
        ]
    )
    store.record_versions([version("2", "deleted", T0 + timedelta(hours=3))])
    rows = store.query(
        "SELECT subscription_id, change, valid_from, valid_to FROM subscriptions ORDER BY 1, 3"
    )
    assert rows["valid_to"].isna().tolist() == [False, False, True, False, True]

    def as_of(t: datetime) -> list[tuple[str, int | None]]:
        frame = store.query(
            "SELECT subscription_id, time_to_live FROM subscriptions WHERE valid_from <= ? "
            "AND (valid_to IS NULL OR valid_to > ?) AND change <> 'deleted' ORDER BY 1",
            [t, t],
        )
        return [
            (r.subscription_id, None if pd.isna(r.time_to_live) else int(r.time_to_live))
            for r in frame.itertuples()
        ]

    assert as_of(T0 + timedelta(minutes=30)) == [("1", 60)]
    assert as_of(T0 + timedelta(minutes=90)) == [("1", 120)]
    assert as_of(T0 + timedelta(minutes=150)) == [("1", 180), ("2", None)]
    assert as_of(T0 + timedelta(hours=4)) == [("1", 180)]
    assert store.current_subscriptions()["subscription_id"].tolist() == ["1"]


# events once and a failed batch: tests/store/test_backends.py, on both backends


WRITER = textwrap.dedent(
    """
    import sys
    from streamkeeper.store import HistoryStore, SubscriptionVersion
    path, worker, batches = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = HistoryStore(path, flow_run_id=worker)
    for b in range(batches):
        store.record_versions([
            SubscriptionVersion(vendor="dma", account=worker, subscription_id=f"{b}-{i}", change="created")
            for i in range(10)
        ])
        if b % 5 == 0:
            store.query("SELECT count(*) FROM subscriptions")  # readers interleave with writers
    print("ok")
    """
)


@pytest.mark.slow  # process-level: several writer processes
def test_concurrent_processes_queue_instead_of_failing(db_path: Path) -> None:
    HistoryStore(db_path).query("SELECT 1")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db_path), f"w{n}", "25"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        assert "lock" not in err.lower()
    counts = HistoryStore(db_path).query(
        "SELECT flow_run_id, count(*) AS n FROM subscriptions GROUP BY 1 ORDER BY 1"
    )
    assert counts["n"].tolist() == [250, 250, 250, 250]


def test_a_foreign_program_holding_the_file_gives_a_clear_error(db_path: Path) -> None:
    HistoryStore(db_path).query("SELECT 1")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb,sys; c=duckdb.connect({str(db_path)!r}); print('open', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreError, match="open in another program"):
            HistoryStore(db_path).record_versions([version("1", "created", T0)])
    finally:
        holder.communicate("", timeout=30)
