"""``ingest-events`` under real Prefect (test harness) with every source at once, and ``streamkeeper ingest``
as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from clikit import RunStreamkeeper
from ingestkit import FAKE_AWS, ROOT, unique
from pydantic import SecretStr

from blocks.equinix import EquinixCredentials
from blocks.plt import PLTCredentials
from flows.ingest import ingest_events
from streamkeeper.commands.ingest import render_summary
from streamkeeper.errors import ConfigError
from streamkeeper.ingest import write_landing_file
from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.equinix import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, EquinixSandbox
from streamkeeper.sandbox.plt import DEFAULT_PARTNER_ID, PLTSandbox
from streamkeeper.sandbox.pubnub import PubNubEmulator
from streamkeeper.store import HistoryStore
from streamkeeper.vendors.plt import PLTClient

pytestmark = pytest.mark.usefixtures("prefect_api")

PULL = {
    "messageType": {"environmental": [{"accountNumber": "116710", "ibx": ["LD9"], "level": ["CAGE"]}]},
    # a closed loopback port: the emulator's pushes fail at once (no lookup of an outside name)
    "channel": {"channelType": "WEBHOOK", "webhookChannelConfiguration": {"url": "https://127.0.0.1:9/eq"}},
}


def plt_block(
    serve: Callable[..., SandboxServer], pubnub: tuple[PubNubEmulator, str], name: str, events: int
) -> dict[str, int]:
    """A PLT emulator publishing into the PubNub emulator, a saved block pointing at both, started streams
    with `events` events each; returns the events per stream id."""
    emulator, origin = pubnub
    plt = PLTSandbox(pubnub=emulator, seed=5)
    server = serve(plt)
    PLTCredentials(base_url=server.url, partner_id=SecretStr(DEFAULT_PARTNER_ID), pubnub_origin=origin).save(
        name, overwrite=True
    )
    with PLTClient(server.url, partner_id=SecretStr(DEFAULT_PARTNER_ID)) as client:
        streams = client.list_streams()
        for s in streams:
            client.start_stream(s.stream_id, s.tenant_id)
    return {s.stream_id: len(plt.emit(s.stream_id, s.tenant_id, events)) for s in streams}


def test_ingest_events_lands_every_source_once_and_counts_per_stream(
    serve: Callable[..., SandboxServer],
    pubnub: tuple[PubNubEmulator, str],
    moto_url: str,
    sqs: Any,
    kinesis: Any,
    tmp_path: Path,
    db_path: Path,
) -> None:
    plt_counts = plt_block(serve, pubnub, "ingest-flow-plt", 20)

    equinix = EquinixSandbox()
    equinix.emit_step = timedelta(hours=1)  # no heartbeat within 30 messages
    server = serve(equinix)
    block = EquinixCredentials(
        base_url=server.url,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=SecretStr(DEFAULT_CLIENT_SECRET),
        api_generation="streaming",
    )
    block.save("ingest-flow-equinix", overwrite=True)
    with block.get_client() as client:
        subscription = client.create_streaming_subscription(PULL)
    equinix.emit(subscription.id, 30)

    queue = sqs.create_queue(QueueName=unique("flow"))["QueueUrl"]
    for start in range(0, 15, 5):
        sqs.send_message_batch(
            QueueUrl=queue,
            Entries=[
                {"Id": str(n), "MessageBody": json.dumps({"type": "alarm", "n": n})}
                for n in range(start, start + 5)
            ],
        )
    stream = unique("flow")
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    kinesis.put_records(
        StreamName=stream,
        Records=[{"Data": b'{"eventType": "tick"}', "PartitionKey": str(n)} for n in range(12)],
    )
    landing = tmp_path / "landing"
    for n in range(8):
        write_landing_file(
            landing,
            {"vendor": "dma", "stream": "conferences", "event_id": f"sub-1:e:{n}", "payload": {"n": n}},
        )

    def run() -> Any:
        return ingest_events(
            plt_blocks=["ingest-flow-plt"],
            equinix_blocks=["ingest-flow-equinix"],
            sqs_queue_urls=[queue],
            kinesis_streams=[stream],
            aws_endpoint_url=moto_url,
            aws_region="us-east-1",
            landing_dir=str(landing),
            pubnub_idle_seconds=0.3,
            db_path=str(db_path),
        )

    summary = run()

    assert not summary.failed and len(summary.sources) == 5
    counts = {(c.vendor, c.stream): (c.loaded, c.total) for c in summary.counts}
    assert counts == {
        **{("plt", sid): (n, n) for sid, n in plt_counts.items()},
        ("equinix", subscription.id): (30, 30),
        ("sqs", queue.rsplit("/", 1)[-1]): (15, 15),
        ("kinesis", stream): (12, 12),
        ("dma", "conferences"): (8, 8),
    }
    store = HistoryStore(db_path)
    assert store.query("SELECT count(DISTINCT flow_run_id) AS n FROM events")["n"][0] == 1
    text = render_summary(summary)
    assert "events per vendor and stream" in text and subscription.id in text

    again = run()  # nothing new: nothing loaded, the totals stand
    assert again.loaded == 0
    assert {(c.vendor, c.stream): c.total for c in again.counts} == {k: v[1] for k, v in counts.items()}
    assert all(c.loaded == 0 for c in again.counts)


def test_a_missing_block_is_a_config_error_that_says_how_to_fix_it(db_path: Path) -> None:
    with pytest.raises(ConfigError, match="streamkeeper connect plt --name no-such-block"):
        ingest_events(plt_blocks=["no-such-block"], load_landing=False, db_path=str(db_path))


def test_ingest_command_prints_counts_per_vendor_and_stream(
    serve: Callable[..., SandboxServer],
    pubnub: tuple[PubNubEmulator, str],
    tmp_path: Path,
    run_streamkeeper: RunStreamkeeper,
) -> None:
    from prefect.settings import PREFECT_API_URL

    plt_counts = plt_block(serve, pubnub, "ingest-cli-plt", 5)
    landing = tmp_path / "landing"
    write_landing_file(landing, {"vendor": "stream", "stream": "org-9", "event_id": "wh-1", "payload": {}})
    db = tmp_path / "cli.duckdb"
    env = {
        **FAKE_AWS,
        "STREAMKEEPER_HOME": str(tmp_path / "home"),
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
    }
    args = ["ingest", "--plt", "ingest-cli-plt", "--landing", str(landing), "--idle", "0.3", "--db", str(db)]

    result = run_streamkeeper(args, env=env)  # in this process: the command's output, not a Prefect start

    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "events per vendor and stream" in out
    for stream_id, n in plt_counts.items():
        assert any(line.split()[:4] == ["plt", stream_id, str(n), str(n)] for line in out.splitlines()), out
    assert any(line.split()[:4] == ["stream", "org-9", "1", "1"] for line in out.splitlines()), out
    assert f"loaded {sum(plt_counts.values()) + 1} events" in out
    assert DEFAULT_PARTNER_ID not in out + result.stderr


@pytest.mark.slow  # two `streamkeeper ingest` processes (~7 s each)
def test_ingest_command_says_what_it_quarantined_and_fails_unless_told_not_to(tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL

    landing = tmp_path / "landing"
    for n in range(3):
        write_landing_file(
            landing, {"vendor": "stream", "stream": "org-9", "event_id": f"wh-{n}", "payload": {}}
        )
    poison = landing / "dma" / "20260405"
    poison.mkdir(parents=True)
    (poison / "gap-huge.json").write_text(
        json.dumps(
            {
                "kind": "gap",
                "vendor": "dma",
                "stream": "conf",
                "subscription_id": "77",
                "expected": 1,
                "received": 2**64,
                "detected_at": "2026-04-05T06:07:08+00:00",
                "delivery_id": "gap-huge",
            }
        )
    )
    (poison / "broken.json").write_text("{")
    db = tmp_path / "cli.duckdb"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "STREAMKEEPER_"))}
    env.update(
        STREAMKEEPER_HOME=str(tmp_path / "home"),
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )

    def ingest(*more: str) -> subprocess.CompletedProcess[str]:
        args = ["ingest", "--landing", str(landing), "--db", str(db), *more]
        return subprocess.run(
            [sys.executable, "-m", "streamkeeper.cli", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )

    failed = ingest()
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "loaded 3 events, dropped 0 duplicates, 2 quarantined" in failed.stdout
    assert any(
        line.split()[:6] == ["landing", "5", "3", "0", "0", "2"] for line in failed.stdout.splitlines()
    )
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
    assert (
        errors
        == ["error: 2 deliveries quarantined in this run: see `streamkeeper report rejected_deliveries`"]
        and "Traceback" not in failed.stderr
    )
    rejected = HistoryStore(db).query(
        "SELECT landing_path, reason FROM rejected_deliveries ORDER BY landing_path"
    )
    assert [Path(p).name for p in rejected["landing_path"]] == ["broken.json", "gap-huge.json"]
    assert (
        all(rejected["reason"]) and int(HistoryStore(db).query("SELECT count(*) AS n FROM events").n[0]) == 3
    )

    (poison / "again.json").write_text("[]")  # cron: the report carries it, the run does not fail
    quiet = ingest("--no-fail-on-quarantine")
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert "loaded 0 events, dropped 0 duplicates, 1 quarantined" in quiet.stdout
