"""The landing area on S3 (moto's server, boto3): the receiver answers 2xx only after its PUT succeeded, loaders
in several processes claim each record once through the DuckLake store, poison records stay in sight."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from lakekit import Postgres, S3Server
from pydantic import SecretStr

from streamkeeper.landing_storage import S3Storage
from streamkeeper.receiver import ReceiverConfig, create_app
from streamkeeper.receiver.config import StreamWebhook
from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.stream import StreamSandbox
from streamkeeper.store import HistoryStore

pytestmark = pytest.mark.slow

SECRET = "landing-test-webhook-secret"

LOADER = textwrap.dedent(
    """
    import sys
    from streamkeeper.ingest import load_landing
    from streamkeeper.store import HistoryStore
    report = load_landing(HistoryStore(flow_run_id=sys.argv[2]), sys.argv[1], batch_size=int(sys.argv[3]))
    print(report.model_dump_json())
    """
)


@contextmanager
def receiver(location: str) -> Iterator[str]:
    """A receiver writing to `location` (its own state under $STREAMKEEPER_HOME); yields its webhook URL."""
    config = ReceiverConfig(stream={"orders": StreamWebhook(account="org-1", secret=SecretStr(SECRET))})
    app = create_app(config, landing=location)
    server = SandboxServer(app).start()  # type: ignore[arg-type]
    try:
        yield f"{server.url}/stream/orders"
    finally:
        server.stop()
        app.state.receiver.close()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMKEEPER_HOME", str(tmp_path / "home"))


def test_receiver_puts_before_2xx_and_loaders_claim_each_record_once(
    lake: dict[str, str], lake_services: tuple[Postgres, S3Server]
) -> None:
    _, s3 = lake_services
    location = f"s3://lake/landing-{uuid.uuid4().hex[:8]}/"
    storage = S3Storage(location)
    stream = StreamSandbox()
    sent: list[str] = []
    with receiver(location) as url:
        for n in range(60):
            event = stream.webhook_event("order.created", {"order_id": f"o-{n}"})
            before = len(list(storage.pending()))
            assert stream.send_webhook(url, SECRET, event) == 200
            assert len(list(storage.pending())) == before + 1, "answered 2xx before the object was in S3"
            sent.append(event["id"])
            if n % 10 == 0:  # the sender retries: another object, the same event
                assert stream.send_webhook(url, SECRET, event) == 200
    objects = list(storage.pending())
    assert len(objects) == 66
    poison = "stream/20260101/poison-1.json"
    storage.put([(poison, b"{not json")])

    HistoryStore().schema_version()
    env = os.environ | lake
    loaders = [
        subprocess.Popen(
            [sys.executable, "-c", LOADER, location, f"loader-{n}", "7"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    reports = []
    for proc in loaders:
        out, err = proc.communicate(timeout=280)
        assert proc.returncode == 0, err[-3000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    assert sum(r["received"] for r in reports) == 67, f"a record was read by two loaders: {reports}"
    assert sum(r["loaded"] for r in reports) == 60 and sum(r["quarantined"] for r in reports) == 1
    stored = HistoryStore().query("SELECT event_id, count(*) AS n FROM events GROUP BY event_id")
    assert sorted(stored["event_id"]) == sorted(sent) and set(stored["n"]) == {1}
    assert list(storage.pending()) == []
    assert storage.rejected() == [poison]  # quarantined in sight, with its reason beside it
    reason = s3.client().get_object(Bucket="lake", Key=f"{storage.prefix}_rejected/{poison}.reason")
    assert "Expecting property name" in reason["Body"].read().decode()
    rejected = HistoryStore().query("SELECT landing_path, reason FROM rejected_deliveries")
    assert rejected["landing_path"].tolist() == [storage.rejected_path(poison)]
    assert rejected["landing_path"][0].startswith("s3://lake/") and "not JSON" in rejected["reason"][0]


def test_receiver_answers_503_and_stores_nothing_when_s3_refuses(
    lake: dict[str, str], tmp_path: Path
) -> None:
    with receiver(f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/landing/") as url:
        event = StreamSandbox().webhook_event("order.created", {"order_id": "o-1"})
        assert StreamSandbox().send_webhook(url, SECRET, event) == 503
