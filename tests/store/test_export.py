"""``streamkeeper export``: DuckDB's COPY of a store table to Parquet, CSV or JSON lines, read back by DuckDB."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from streamkeeper.cli import main
from streamkeeper.export import export_table
from streamkeeper.ingest.normalize import frame, row
from streamkeeper.store import HistoryStore

READ = {"parquet": "read_parquet", "csv": "read_csv", "jsonl": "read_json"}
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def load(store: HistoryStore, ids: list[str]) -> None:
    rows = [
        row(
            vendor="plt",
            stream="s1",
            event_id=i,
            payload={"id": i, "text": 'a, "quoted"\nline'},
            occurred_at=T0,
            received_at=T0 + timedelta(seconds=1),
        )
        for i in ids
    ]
    store.load_events(frame(rows))


def read_back(path: Path, fmt: str) -> list[tuple[str, object]]:
    """(event_id, payload as a Python value) of each exported row, in id order."""
    if fmt == "jsonl":  # one JSON object a line; the JSON payload is nested in it, not text
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        return sorted((r["event_id"], r["payload"]) for r in lines)
    query = f"SELECT event_id, payload::VARCHAR FROM {READ[fmt]}(?) ORDER BY 1"
    return [(i, json.loads(p)) for i, p in duckdb.connect().execute(query, [str(path)]).fetchall()]


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_export_since_a_time_in_each_format(tmp_path: Path, store_target: str, fmt: str) -> None:
    store = HistoryStore(store_target)
    load(store, ["a", "b"])
    first = store.query("SELECT max(loaded_at) AS t FROM events")["t"].iloc[0].to_pydatetime()
    load(store, ["c"])  # a later batch: its loaded_at is after the first's
    since = first + timedelta(microseconds=1)
    out = tmp_path / f"events.{fmt}"

    everything = export_table("events", out, fmt=fmt, db=store_target)
    assert (everything.rows, everything.time_column) == (3, "loaded_at")
    assert [i for i, _ in read_back(out, fmt)] == ["a", "b", "c"]
    later = export_table("events", out, fmt=fmt, since=since, db=store_target)  # replaces the file
    assert later.rows == 1
    [(event_id, payload)] = read_back(out, fmt)
    assert (event_id, payload) == ("c", {"id": "c", "text": 'a, "quoted"\nline'})  # kept whole


def test_the_command_writes_and_says_so_and_refuses_bad_input_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "history.duckdb"
    load(HistoryStore(db), ["a", "b"])
    out = tmp_path / "events.parquet"
    args = ["export", "events", "--db", str(db), "--out", str(out)]
    assert main([*args, "--since", "2020-01-01"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"exported 2 rows of events since 2020-01-01T00:00:00+00:00 (by loaded_at) to {out} (parquet)"
    )
    assert duckdb.connect().execute("SELECT count(*) FROM read_parquet(?)", [str(out)]).fetchall() == [(2,)]
    assert main([*args, "--since", "2999-01-01T00:00:00+02:00", "--format", "csv"]) == 0  # header only
    assert capsys.readouterr().out.startswith("exported 0 rows")
    assert out.read_text().startswith("vendor,stream,event_id")
    # a view exports too
    health = tmp_path / "health.jsonl"
    assert main(["export", "stream_health", "--db", str(db), "--out", str(health), "--format", "jsonl"]) == 0
    assert capsys.readouterr().out.startswith("exported 1 rows of stream_health")
    assert json.loads(health.read_text())["stream"] == "s1"

    bad = {
        ("export", "evnts", "--out", str(out)): "error: unknown table 'evnts': choose one of ",
        (
            "export",
            "events",
            "--out",
            str(out),
            "--since",
            "last week",
        ): "error: --since 'last week': expected",
        ("export", "events", "--out", str(out), "--format", "xlsx"): "error: unknown format 'xlsx'",
        ("export", "events", "--out", str(tmp_path / "no" / "x.csv")): "error: --out ",
    }
    for argv, start in bad.items():
        assert main([*argv, "--db", str(db)]) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith(start) and len(err.strip().splitlines()) == 1, (argv, err)
    assert main(["export", "events", "--db", str(tmp_path / "missing.duckdb"), "--out", str(out)]) == 1
    assert "no history store at" in capsys.readouterr().err
