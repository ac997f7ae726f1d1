"""stream_health: real emulators deliver, the real clients and loaders store, the view judges each stream.

The emulators' clock moves instead of time passing: the view is asked as of the emulators' "now"
(``stream_health_by(as_of, late_after, silent_after)``), so a feed that stopped reads late, then silent.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import SecretStr

from streamkeeper.cli import main
from streamkeeper.ingest import drain_equinix
from streamkeeper.ingest.normalize import frame, row
from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.equinix import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, EquinixSandbox
from streamkeeper.sandbox.thingspace import (
    DEFAULT_ACCOUNT,
    DEFAULT_APP_KEY,
    DEFAULT_APP_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    ThingSpaceSandbox,
)
from streamkeeper.store import HistoryStore, SubscriptionVersion
from streamkeeper.vendors.equinix import EquinixClient
from streamkeeper.vendors.http import RetryPolicy
from streamkeeper.vendors.thingspace import CreateTargetRequest, ThingSpaceClient

FAST = RetryPolicy(backoff_base=0.01, max_attempts=2)
AZURE = {"channelType": "AZURE", "azureChannelConfiguration": {"batchSize": 20}}  # no push: the pull feed


def feed_body(ibx: str) -> dict[str, Any]:
    return {
        "messageType": {"environmental": [{"accountNumber": "116710", "ibx": [ibx], "level": ["CAGE"]}]},
        "channel": AZURE,
    }


def health(store: HistoryStore, at: datetime, late: int = 900, silent: int = 3600) -> pd.DataFrame:
    return store.query(
        "SELECT * FROM stream_health_by(CAST(? AS TIMESTAMPTZ), ?, ?)", [at.isoformat(), late, silent]
    )


def by_subscription(frame_: pd.DataFrame) -> dict[str, dict[str, Any]]:
    return {str(r["subscription_id"]): r for r in frame_.to_dict("records")}


def record(store: HistoryStore, vendor: str, account: str, sub_id: str, name: str, **more: Any) -> None:
    store.record_versions(
        [
            SubscriptionVersion(
                vendor=vendor,
                account=account,
                subscription_id=sub_id,
                name=name,
                change="created",
                status="active",
                **more,
            )
        ]
    )


def test_a_feed_flows_then_reads_late_then_silent_and_one_never_started(
    serve: Callable[..., SandboxServer], store_target: str
) -> None:
    store = HistoryStore(store_target)
    sandbox = EquinixSandbox()
    client = EquinixClient(
        serve(sandbox).url,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=SecretStr(DEFAULT_CLIENT_SECRET),
        api_generation="streaming",
        retry=FAST,
    )
    with client:
        feed_stops(store, sandbox, client)


def feed_stops(store: HistoryStore, sandbox: EquinixSandbox, client: EquinixClient) -> None:
    """Two subscriptions, one fed 20 readings and ingested; then its feed stops and the clock moves."""
    flowing = client.create_streaming_subscription(feed_body("LD9"))
    quiet = client.create_streaming_subscription(feed_body("LD5"))
    for sub, name in ((flowing, "ld9"), (quiet, "ld5")):
        observed = sub.model_dump(mode="json", by_alias=True, exclude_none=True)
        record(store, "equinix", "eqx", sub.id, name, kind="streaming", observed=observed)
    sandbox.emit(flowing.id, 20)  # the emulator stamps them from its clock: the last now
    report = drain_equinix(store, client, "eqx", [flowing.id, quiet.id])
    assert report.loaded == 20

    now = sandbox.clock.now_utc()
    rows = by_subscription(health(store, now))
    assert set(rows) == {flowing.id, quiet.id}
    live = rows[flowing.id]
    assert (live["status"], live["events_1h"], live["events_24h"]) == ("flowing", 20, 20), live
    assert live["vendor"] == "equinix" and live["connection"] == "eqx" and live["name"] == "ld9"
    # 20 readings 30 s apart, the last stamped now: lag is real, never negative, and below 10 minutes
    assert 0 <= live["lag_p50_s"] <= live["lag_p95_s"] < 600, live
    assert pd.isna(live["lag_note"]) and live["vendor_status"] == "ACTIVE" and live["vendor_errors"] == 0
    assert rows[quiet.id]["status"] == "not-started" and rows[quiet.id]["lag_note"] == "no events yet"

    # the feed stops: nothing new to pull; time goes on
    sandbox.advance(20 * 60)
    assert drain_equinix(store, client, "eqx", [flowing.id]).loaded == 0
    later = by_subscription(health(store, sandbox.clock.now_utc()))[flowing.id]
    assert (later["status"], later["events_1h"], later["events_24h"]) == ("late", 20, 20), later
    sandbox.advance(60 * 60)
    gone_quiet = by_subscription(health(store, sandbox.clock.now_utc()))[flowing.id]
    assert (gone_quiet["status"], gone_quiet["events_1h"]) == ("silent", 0), gone_quiet
    assert gone_quiet["lag_p95_s"] == live["lag_p95_s"]  # a silent stream keeps the lag it last had
    # the thresholds are parameters: an hour and a half of quiet is only late under a laxer rule
    lax = by_subscription(health(store, sandbox.clock.now_utc(), late=3600, silent=7200))[flowing.id]
    assert lax["status"] == "late"
    # the plain view judges as of now (the emulators' clock ran ahead of it: flowing there)
    view = by_subscription(store.query("SELECT * FROM stream_health"))
    assert view[flowing.id]["status"] == "flowing" and view[quiet.id]["status"] == "not-started"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed once the socket is: deliveries there fail


def test_thingspace_delivery_failures_make_its_stream_failing(
    serve: Callable[..., SandboxServer], db_path: Path
) -> None:
    store = HistoryStore(db_path)
    ts = ThingSpaceSandbox(seed=3)
    ts.delivery_timeout = 2.0
    client = ThingSpaceClient(
        serve(ts).url,
        app_key=DEFAULT_APP_KEY,
        app_secret=SecretStr(DEFAULT_APP_SECRET),
        username=DEFAULT_USERNAME,
        password=SecretStr(DEFAULT_PASSWORD),
        account_name=DEFAULT_ACCOUNT,
        retry=FAST,
        timeout=5,
    )
    target = client.create_target(
        CreateTargetRequest.streamrest(
            "rx", f"http://127.0.0.1:{_closed_port()}/rx", username="u", password=SecretStr("p")
        )
    )
    sub = client.create_subscription(
        {"name": "devices", "streamkind": "ts.event", "targetid": target.id, "allowaggregation": False}
    )
    [failed] = ts.emit(DEFAULT_ACCOUNT, 1)
    assert not failed.ok
    seen = client.query_subscriptions(subscription_id=sub.id)[0]
    observed = seen.model_dump(mode="json", exclude_none=True)
    record(store, "thingspace", "ts", sub.id, "devices", kind="ts.event", observed=observed)
    record(store, "thingspace", "ts", target.id, "rx", kind="ts.target")  # a target is no stream

    [row_] = health(store, datetime.now(UTC)).to_dict("records")
    assert row_["subscription_id"] == sub.id and row_["stream"] == "ts.event"
    assert row_["status"] == "failing" and row_["vendor_status"] == "fail", row_
    assert row_["network_failures"] == 1 and row_["configuration_failures"] == 0
    assert "last delivery failed" in row_["failure"] and "1 network" in row_["failure"]


def test_dma_lag_is_null_and_said_so_gaps_count_and_unsubscribed_streams_show(db_path: Path) -> None:
    store = HistoryStore(db_path)
    now = datetime.now(UTC).replace(microsecond=0)
    record(store, "dma", "dma-a", "7", "all-conferences", kind="conferences")
    rows = [
        row(
            vendor="dma",
            stream="rx",
            event_id=f"7:{n}",
            subscription_id="7",
            account="dma-a",
            payload={"n": n},
            received_at=now - timedelta(seconds=30 - n),
        )
        for n in range(3)
    ] + [
        row(
            vendor="stream",
            stream="hook",
            event_id="e1",
            account="org",
            payload={},
            occurred_at=now - timedelta(seconds=2),
            received_at=now - timedelta(seconds=1),
        )
    ]
    store.load_events(frame(rows))
    with store.writer() as con:
        con.execute(
            "INSERT INTO event_gaps VALUES ('dma', 'rx', '7', 2, 5, 'test', ?), ('dma', 'rx', '7', 9, 10, 't', ?)",
            [now - timedelta(seconds=5), now - timedelta(days=2)],  # the second is older than a day
        )
    found = {(r["vendor"], r["stream"]): r for r in health(store, now).to_dict("records")}
    dma = found[("dma", "rx")]
    assert dma["status"] == "flowing" and dma["events_1h"] == 3
    assert pd.isna(dma["lag_p50_s"]) and dma["lag_note"] == "DMA notifications carry no occurrence time"
    assert (dma["gaps"], dma["missed_events"], dma["resyncs"]) == (1, 3, 0)
    hook = found[("stream", "hook")]  # a webhook no subscription stands for: its own row
    assert hook["status"] == "flowing" and hook["connection"] == "org" and hook["lag_p50_s"] == 1.0


def test_the_report_takes_its_thresholds_and_refuses_a_bad_time(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = HistoryStore(db_path)
    record(store, "plt", "plt-a", "s1", "calls", kind="CALL_EVENTS")
    at = datetime.now(UTC)
    store.load_events(
        frame(
            [
                row(
                    vendor="plt",
                    stream="st1",
                    event_id="c:1",
                    subscription_id="s1",
                    payload={},
                    occurred_at=at - timedelta(seconds=100),
                    received_at=at - timedelta(seconds=99),
                )
            ]
        )
    )
    args = ["report", "stream_health", "--db", str(db_path), "--format", "csv"]
    assert main([*args, "--late-after", "60", "--at", at.isoformat()]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("vendor,connection,stream,subscription_id,name,status,last_event_at,events_1h")
    assert out[1].startswith("plt,plt-a,st1,s1,calls,late,"), out
    assert main([*args, "--at", at.isoformat()]) == 0
    assert ",flowing," in capsys.readouterr().out
    assert main([*args, "--at", "yesterday"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: report 'stream_health' failed") and "yesterday" in err
    assert len(err.strip().splitlines()) == 1
