"""The SQL reports: every one runs, parameters (``--hours 6``) are typed and checked, and reports read while
another process keeps writing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streamkeeper.errors import ConfigError, StoreError
from streamkeeper.reports import available, load_report, parse_options, render, run_report
from streamkeeper.store import HistoryStore, SubscriptionVersion, TokenEvent
from streamkeeper.vendors.http import ApiCall

NOW = datetime.now(UTC)


def seed(db: Path) -> None:
    store = HistoryStore(db)
    store.record_versions(
        [
            SubscriptionVersion(
                vendor="dma",
                account="a",
                subscription_id=str(i),
                name=f"s{i}",
                change="refreshed",
                status="active",
                expires_at=NOW + timedelta(hours=hours),
            )  # fmt: skip
            for i, hours in enumerate([1, 5, 30])
        ]
    )
    store.record_token_events(
        [
            TokenEvent(vendor="stream", account="s", event="rotated", expires_at=NOW + timedelta(hours=1)),
            TokenEvent(vendor="equinix", account="e", event="failed", detail="HTTP 401"),
        ]
    )
    store.record_api_calls(
        [
            ApiCall(
                vendor="dma",
                operation="op",
                method="GET",
                path="/x",
                status=status,
                latency_ms=ms,
                attempt=1,
                called_at=NOW,
            )  # fmt: skip
            for status, ms in [(200, 10.0), (304, 2.0), (503, 50.0), (None, 100.0)]
        ]
    )


def test_every_report_runs_and_parameters_are_typed(db_path: Path) -> None:
    seed(db_path)
    expected = {
        "api_errors",
        "current_subscriptions",
        "drift",
        "expiring",
        "refresh_history",
        "rejected_deliveries",
        "token_health",
    }
    assert expected <= set(available())
    for name in available():
        render(run_report(name, db_path), "table")

    assert [p.name for p in load_report("expiring").params] == ["hours"]
    assert run_report("expiring", db_path)["name"].tolist() == ["s0", "s1"]  # default 24 h
    assert run_report("expiring", db_path, {"hours": "2"})["name"].tolist() == ["s0"]
    assert run_report("current_subscriptions", db_path, {"vendor": "plt"}).empty
    with pytest.raises(ConfigError, match="expected an integer"):
        run_report("expiring", db_path, {"hours": "soon"})
    with pytest.raises(ConfigError, match=r"no parameter --days \(parameters: --hours\)"):
        run_report("expiring", db_path, {"days": "2"})
    assert parse_options(["--hours", "6", "--vendor=dma"]) == {"hours": "6", "vendor": "dma"}
    with pytest.raises(ConfigError, match="needs a value"):
        parse_options(["--hours"])

    health = run_report("token_health", db_path).set_index("vendor")["health"].to_dict()
    assert health == {"stream": "ok", "equinix": "failing"}
    errors = run_report("api_errors", db_path).set_index("operation").loc["(all)"]
    assert (errors["calls"], errors["errors"], errors["not_modified"], errors["error_pct"]) == (4, 2, 1, 50.0)


@pytest.mark.slow  # process-level: a writer process
def test_reports_read_while_another_process_writes(db_path: Path) -> None:
    HistoryStore(db_path).query("SELECT 1")  # create and migrate
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                from datetime import UTC, datetime
                from streamkeeper.store import HistoryStore, TokenEvent
                store = HistoryStore({str(db_path)!r})
                for i in range(12):
                    store.record_token_events(
                        [TokenEvent(vendor="stream", account=f"{{i}}-{{n}}", event="rotated") for n in range(200)]
                    )
                print("done", flush=True)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        seen, slowest = [], 0.0
        while writer.poll() is None:
            started = time.monotonic()
            seen.append(int(run_report("token_health", db_path)["account"].count()))
            slowest = max(slowest, time.monotonic() - started)
        assert writer.wait(timeout=120) == 0 and writer.stdout is not None and "done" in writer.stdout.read()
    finally:
        if writer.poll() is None:
            writer.kill()
    # each report saw whole committed batches, more of them as the writer went on
    assert len(seen) >= 2 and seen == sorted(seen) and all(n % 200 == 0 for n in seen)
    assert slowest < 10, f"a report waited {slowest:.1f} s for the writer"
    assert run_report("token_health", db_path)["account"].count() == 12 * 200


def test_a_report_on_a_missing_store_names_the_path_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "history.duckdb"
    for name in available():
        with pytest.raises(StoreError, match=f"no history store at {missing}"):
            run_report(name, missing)
    assert not (tmp_path / "typo").exists()
