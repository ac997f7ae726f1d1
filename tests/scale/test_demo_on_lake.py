"""The demo, as the README's first command runs it, once on the embedded file and once with
``STREAMKEEPER_STORE`` pointing at DuckLake (a real PostgreSQL catalog, Parquet on moto's S3 server): the same
summary and the same reports, read with ``streamkeeper report`` from each store."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from lakekit import lake_env, start_postgres, start_s3

from streamkeeper.reports import available

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
_VOLATILE = [
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)?"), "<time>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<uuid>"),
    (re.compile(r"\b[0-9a-f]{16,}\b"), "<hex>"),
    (re.compile(r"\b\d+\.\d+\b"), "<n.n>"),  # latencies, hours left
    (re.compile(r"\b\d{10,}\b"), "<epoch>"),  # epoch times in the vendors' bodies (vendor_held)
    (re.compile(r'"subscription_identifier":"\d+"'), '"subscription_identifier":"<id>"'),  # creation order
    (re.compile(r":\d{2,5}/"), ":<port>/"),  # the emulators' free ports in the vendors' bodies (vendor_held)
]


def masked(text: str) -> str:
    for pattern, token in _VOLATILE:
        text = pattern.sub(token, text)
    return text


def run(args: list[str], env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(args[-2:])}: {proc.stderr[-3000:]}"
    return proc.stdout


def summary(out: str) -> list[str]:
    """The demo's closing summary, read back from the store (sorted: equal streams may list in any order)."""
    lines = out[out.index("== from DuckDB ==") :].splitlines()
    return sorted(masked(line) for line in lines if line.strip() and "prefect" not in line)


def reports(env: dict[str, str], cwd: Path) -> dict[str, list[str]]:
    """Every report as CSV rows, without what differs between two demo runs by nature: the ids the emulators
    hand out in the order concurrent creations reach them, the flow runs, latencies and retry counts."""
    out: dict[str, list[str]] = {}
    for name in available():
        text = run([sys.executable, "-m", "streamkeeper.cli", "report", name, "--format", "csv"], env, cwd)
        rows = list(csv.reader(io.StringIO(text)))
        keep = [i for i, c in enumerate(rows[0]) if c not in ("subscription_id", "flow_run_id")]
        if name == "api_errors":
            keep = keep[:2]  # vendor and operation
        out[name] = sorted(masked(",".join(row[i] for i in keep)) for row in rows)
    return out


def test_the_demo_on_ducklake_matches_the_demo_on_the_embedded_file(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "STREAMKEEPER_", "AWS_"))}
    base["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    embedded = base | {
        "STREAMKEEPER_HOME": str(tmp_path / "embedded"),
        "STREAMKEEPER_DB": str(tmp_path / "history.duckdb"),
    }
    (tmp_path / "embedded").mkdir()
    pg = start_postgres()
    try:
        s3 = start_s3(log=tmp_path / "moto.log")
        try:
            s3.create_bucket("demo")
            pg.create_database("demo")
            lake = base | {"STREAMKEEPER_HOME": str(tmp_path / "lake")} | lake_env(pg, "demo", s3, "demo")
            (tmp_path / "lake").mkdir()
            demo = [sys.executable, "-m", "streamkeeper.cli", "demo"]
            on_file = run(demo, embedded, tmp_path / "embedded")
            on_lake = run(demo, lake, tmp_path / "lake")
            assert on_lake.splitlines()[0].startswith("history store: ducklake:postgres:dbname=demo")
            assert summary(on_lake) == summary(on_file)
            assert "-- events per vendor and stream" in on_lake and "thingspace" in on_lake
            for home, out in ((tmp_path / "embedded", on_file), (tmp_path / "lake", on_lake)):
                page = home / "dashboard.html"  # the last audit's, in $STREAMKEEPER_HOME
                assert f"dashboard: {page} (6 of 6 charts with data" in out and page.is_file(), out[-3000:]
            file_reports, lake_reports = (
                reports(embedded, tmp_path / "embedded"),
                reports(lake, tmp_path / "lake"),
            )
            assert lake_reports.keys() == file_reports.keys()
            for name, rows in file_reports.items():
                only_file = sorted(set(rows) - set(lake_reports[name]))
                only_lake = sorted(set(lake_reports[name]) - set(rows))
                assert lake_reports[name] == rows, (
                    f"{name}: only on the file {only_file}, only on the lake {only_lake}"
                )
            assert len(lake_reports["current_subscriptions"]) > 10  # header + the demo's 13 subscriptions
            parquet = s3.client().list_objects_v2(Bucket="demo", Prefix="lake/").get("KeyCount", 0)
            assert parquet > 0, "no Parquet file on S3: the lake did not hold the data"
        finally:
            s3.stop()
    finally:
        pg.stop()
