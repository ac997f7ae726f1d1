"""Both backends, one behaviour: the embedded DuckDB file and DuckLake (PostgreSQL catalog, Parquet on moto's
S3 server). Same tables, migrations, views and reports; events once across processes; the setting's errors."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from streamkeeper.errors import ConfigError, StoreError
from streamkeeper.reports import available, run_report
from streamkeeper.store import HistoryStore, StoreSettings, SubscriptionVersion, TokenEvent
from streamkeeper.store.lake import EXTENSIONS, extension_file
from streamkeeper.store.schema import LATEST_VERSION

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DATA = Path(__file__).parent / "data"


def events(ids: list[str], stream: str = "ch1", vendor: str = "plt") -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "vendor": vendor,
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


def schema_of(store: HistoryStore) -> dict[str, list[tuple[str, str]]]:
    """Every table and view of the store with its columns and types."""
    frame = store.query(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_catalog = current_database() AND table_schema = 'main' ORDER BY table_name, ordinal_position"
    )
    out: dict[str, list[tuple[str, str]]] = {}
    for row in frame.itertuples():
        out.setdefault(str(row.table_name), []).append((str(row.column_name), str(row.data_type)))
    return out


def fill(store: HistoryStore) -> None:
    """The same writes on any backend: versions, events with cursors, a token event, the HTTP cache."""
    store.record_versions(
        [
            SubscriptionVersion(
                vendor="dma",
                account="a",
                subscription_id="1",
                change="created",
                valid_from=T0,
                expires_at=datetime(2099, 1, 1, tzinfo=UTC),
            )
        ]
    )
    store.record_versions(
        [
            SubscriptionVersion(
                vendor="dma",
                account="a",
                subscription_id="1",
                change="refreshed",
                expires_at=datetime(2099, 1, 2, tzinfo=UTC),
            )
        ]
    )
    store.record_token_events([TokenEvent(vendor="stream", account="b", event="issued", at=T0)])
    store.load_events(events(["a", "b", "a"]), cursors={"pubnub:ch1": "10"})
    store.load_events(events(["b", "c"]), cursors={"pubnub:ch1": "20"})
    store.cache_put("dma", "a", "/subscriptions", "e1", {"n": 1})
    store.cache_put("dma", "a", "/subscriptions", "e2", {"n": 2})


@pytest.mark.slow
def test_both_backends_have_the_same_schema_and_behave_alike(tmp_path: Path, lake: dict[str, str]) -> None:
    embedded = HistoryStore(tmp_path / "history.duckdb")
    lakehouse = HistoryStore(lake["STREAMKEEPER_STORE"])
    assert lakehouse.settings.kind == "lake" and embedded.settings.kind == "embedded"
    assert schema_of(embedded) == schema_of(lakehouse)
    assert "events" in schema_of(lakehouse) and "current_subscriptions" in schema_of(lakehouse)
    assert embedded.schema_version() == lakehouse.schema_version() == LATEST_VERSION
    for store in (embedded, lakehouse):
        fill(store)
    for store in (embedded, lakehouse):
        assert store.cursors() == {"pubnub:ch1": "20"}
        assert store.cache_get("dma", "a", "/subscriptions") == ("e2", {"n": 2})
        assert store.query("SELECT count(*) AS n FROM cursors")["n"].iloc[0] == 1
    for name in available():
        mine, theirs = run_report(name, embedded.settings.target), run_report(name, lakehouse.settings.target)
        assert mine.columns.tolist() == theirs.columns.tolist(), name
        drop = [c for c in mine.columns if c in ("since", "at", "flow_run_id")]  # when each was written
        assert (
            mine.drop(columns=drop).astype(str).values.tolist()
            == theirs.drop(columns=drop).astype(str).values.tolist()
        ), name
    assert len(run_report("current_subscriptions", lakehouse.settings.target)) == 1


def test_events_land_once_and_cursors_move_with_them(store_target: str) -> None:
    store = HistoryStore(store_target)
    assert store.load_events(events(["a", "b", "a"]), cursors={"pubnub:ch1": "10"}) == 2
    assert store.load_events(events(["b", "c"]), cursors={"pubnub:ch1": "20"}) == 1
    assert store.load_events(events(["c"], stream="ch2")) == 1  # same id, other stream: another delivery
    assert store.cursors("pubnub:") == {"pubnub:ch1": "20"}
    assert len(store.query("SELECT * FROM events")) == 4


def test_a_failed_batch_leaves_nothing(store_target: str) -> None:
    store = HistoryStore(store_target)
    batch = events(["x"])
    with pytest.raises(RuntimeError), store.writer(streams=batch, cursors=["pubnub:ch1"]) as con:
        store.load_events(batch, cursors={"pubnub:ch1": "99"}, con=con)
        raise RuntimeError("crash after the insert, before commit")
    assert store.query("SELECT count(*) AS n FROM events")["n"].iloc[0] == 0
    assert store.cursors() == {}


@pytest.mark.slow
def test_a_lake_writer_must_hold_the_streams_it_loads(lake: dict[str, str]) -> None:
    store = HistoryStore(lake["STREAMKEEPER_STORE"])
    with pytest.raises(StoreError, match=r"writer\(streams=events, cursors=cursors\)"), store.writer() as con:
        store.load_events(events(["x"]), con=con)


WRITER = textwrap.dedent(
    """
    import sys
    import pandas as pd
    from datetime import UTC, datetime
    from streamkeeper.store import HistoryStore
    worker, batches = sys.argv[1], int(sys.argv[2])
    store = HistoryStore(flow_run_id=worker)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for b in range(batches):
        # every worker sends the same deliveries (a sender's retries, two hosts on one source), in its own order
        ids = [f"e{(b * 50 + i) % 600}" for i in range(50)]
        rows = [dict(vendor="dma", stream=f"s{int(i[1:]) % 3}", event_id=i, subscription_id=None, account="a",
                     event_type="t", occurred_at=t0, received_at=t0, payload="{}") for i in ids]
        # half the workers move a cursor of their own with the rows (a cursor-moving source), half none (landing)
        store.load_events(pd.DataFrame(rows), cursors={f"src:{worker}": str(b)} if worker in ("w0", "w1") else None)
    print("ok")
    """
)


@pytest.mark.slow
def test_writers_in_several_processes_store_each_delivery_once(lake: dict[str, str]) -> None:
    """Four processes load overlapping batches at once: DuckLake alone would store duplicates (it has no
    unique keys); the stream locks leave every delivery once, and each process's cursor is its last batch."""
    HistoryStore().schema_version()  # the schema exists before the race starts
    env = os.environ | lake
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, f"w{n}", "12"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=280)
        assert proc.returncode == 0, err[-3000:]
    store = HistoryStore()
    counts = store.query(
        "SELECT count(*) AS n, count(DISTINCT (vendor, stream, event_id)) AS keys FROM events"
    )
    assert counts["keys"].iloc[0] == 600
    assert counts["n"].iloc[0] == 600, "a delivery was stored twice"
    assert store.cursors("src:") == {"src:w0": "11", "src:w1": "11"}


HOLDER = textwrap.dedent(
    """
    import sys, time
    import pandas as pd
    from datetime import UTC, datetime
    from streamkeeper.store import HistoryStore
    store = HistoryStore()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    batch = pd.DataFrame([dict(vendor="dma", stream="s0", event_id="held", subscription_id=None, account="a",
                               event_type="t", occurred_at=t0, received_at=t0, payload="{}")])
    with store.writer(streams=batch) as con:
        store.load_events(batch, con=con)
        print("holding", flush=True)
        time.sleep(600)  # killed here, inside the transaction, holding the stream's lock
    """
)


@pytest.mark.slow
def test_a_writer_killed_holding_a_lock_neither_blocks_nor_leaves_rows(lake: dict[str, str]) -> None:
    HistoryStore().schema_version()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER],
        env=os.environ | lake,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
    store = HistoryStore(lock_timeout=60)
    assert (
        store.load_events(events(["held", "next"], stream="s0", vendor="dma")) == 2
    )  # nothing of the dead one
    assert store.query("SELECT count(*) AS n FROM events")["n"].iloc[0] == 2


@pytest.mark.slow
def test_plain_sql_reads_the_lake(lake: dict[str, str]) -> None:
    """What an analyst does: attach the lake with DuckDB's own ATTACH, no streamkeeper involved."""
    store = HistoryStore()
    fill(store)
    con = duckdb.connect()
    for module, name in EXTENSIONS:
        con.execute(f"LOAD '{extension_file(module, name)}'")
    host = lake["AWS_ENDPOINT_URL"].removeprefix("http://")
    con.execute(
        f"CREATE SECRET (TYPE s3, KEY_ID '{lake['AWS_ACCESS_KEY_ID']}', SECRET '{lake['AWS_SECRET_ACCESS_KEY']}', "
        f"REGION 'us-east-1', ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false)"
    )
    con.execute(f"ATTACH '{lake['STREAMKEEPER_STORE']}' AS lake")
    assert con.execute("SELECT count(*) FROM lake.events").fetchall() == [(3,)]
    assert con.execute("SELECT subscription_id, change FROM lake.current_subscriptions").fetchall() == [
        ("1", "refreshed")
    ]


def test_a_file_written_by_duckdb_2_is_refused_with_one_line_saying_how_to_export(tmp_path: Path) -> None:
    path = tmp_path / "history.duckdb"
    path.write_bytes(gzip.decompress((DATA / "written-by-duckdb-2.0.duckdb.gz").read_bytes()))
    with pytest.raises(StoreError) as caught:
        HistoryStore(path).query("SELECT 1")
    message = str(caught.value)
    assert "\n" not in message
    assert (
        "written by a newer DuckDB (2.x)" in message and "EXPORT DATABASE" in message and str(path) in message
    )


def test_the_setting_takes_a_path_or_a_ducklake_attach_string(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("STREAMKEEPER_STORE", "STREAMKEEPER_DB", "STREAMKEEPER_DATA_PATH", "PGPASSWORD"):
        monkeypatch.delenv(name, raising=False)
    assert StoreSettings.from_env().target == "data/streamkeeper.duckdb"
    monkeypatch.setenv("STREAMKEEPER_DB", str(tmp_path / "old.duckdb"))
    assert StoreSettings.from_env().kind == "embedded"
    assert HistoryStore().path == tmp_path / "old.duckdb"  # today's variable keeps working
    monkeypatch.setenv("STREAMKEEPER_STORE", "ducklake:postgres:dbname=x host=h user=u password=sentinel-pw")
    settings = StoreSettings.from_env()
    assert settings.kind == "lake" and settings.conninfo.startswith("dbname=x")
    assert "sentinel-pw" not in settings.describe()
    monkeypatch.setenv("STREAMKEEPER_STORE", "ducklake:metadata.ducklake")
    with pytest.raises(ConfigError, match="must be PostgreSQL"):
        StoreSettings.from_env()


@pytest.mark.slow
def test_an_unreachable_catalog_is_one_line_without_the_password(lake: dict[str, str]) -> None:
    target = "ducklake:postgres:dbname=nowhere host=127.0.0.1 port=1 user=postgres password=sentinel-pw"
    with pytest.raises(StoreError) as caught:
        HistoryStore(target).query("SELECT 1")
    assert "sentinel-pw" not in str(caught.value) and "\n" not in str(caught.value)
    assert "history store" in str(caught.value) and "Connection refused" in str(caught.value)
