"""SQS with real boto3 against moto on loopback: ThingSpace deliveries through a queue, and a SIGKILL between
the commit and the delete. Queues stay shallow: moto rescans the whole queue on every call."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ingestkit import Paused, unique, wait_for
from pydantic import SecretStr

from streamkeeper.ingest import IngestError, drain_sqs
from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.thingspace import (
    DEFAULT_ACCOUNT,
    DEFAULT_APP_KEY,
    DEFAULT_APP_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    ThingSpaceSandbox,
)
from streamkeeper.store import HistoryStore
from streamkeeper.vendors.http import RetryPolicy
from streamkeeper.vendors.thingspace import CreateTargetRequest, ThingSpaceClient


def queue_counts(sqs: Any, url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def send(sqs: Any, url: str, bodies: list[Any]) -> list[str]:
    ids = []
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        answer = sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": json.dumps(b)} for i, b in enumerate(chunk)]
        )
        assert not answer.get("Failed")
        ids += [entry["MessageId"] for entry in sorted(answer["Successful"], key=lambda e: int(e["Id"]))]
    return ids


def test_thingspace_deliveries_through_sqs_land_once(
    serve: Callable[..., SandboxServer], sqs: Any, store: HistoryStore
) -> None:
    url = sqs.create_queue(QueueName=unique("ts-events"))["QueueUrl"]
    thingspace = ThingSpaceSandbox(seed=11)
    # the emulator hands streamawssqs deliveries to this sink: real boto3 puts them on the moto queue
    thingspace.sqs_sink = lambda address, region, messages: send(sqs, address, messages)
    server = serve(thingspace)
    client = ThingSpaceClient(
        server.url,
        app_key=DEFAULT_APP_KEY,
        app_secret=SecretStr(DEFAULT_APP_SECRET),
        username=DEFAULT_USERNAME,
        password=SecretStr(DEFAULT_PASSWORD),
        account_name=DEFAULT_ACCOUNT,
        retry=RetryPolicy(backoff_base=0.01),
    )
    with client:
        target = client.create_target(CreateTargetRequest.streamawssqs("queue", url, region="us-east-1"))
        client.create_subscription(
            {"name": "events", "streamkind": "ts.event", "targetid": target.id, "allowaggregation": False}
        )
    deliveries = thingspace.emit(DEFAULT_ACCOUNT, 25)
    assert all(d.ok for d in deliveries)

    report = drain_sqs(store, sqs, url, batch_size=10, wait_seconds=0)

    assert (report.received, report.loaded, report.duplicates) == (25, 25, 0)
    rows = store.query("SELECT * FROM events ORDER BY occurred_at")
    assert set(rows["vendor"]) == {"thingspace"} and set(rows["event_type"]) == {"ts.event"}
    assert set(rows["stream"]) == {url.rsplit("/", 1)[-1]}
    payload_ids = {json.loads(p)["data"]["id"] for p in rows["payload"]}
    assert payload_ids == {i for d in deliveries for i in d.event_ids}
    assert rows["occurred_at"].notna().all()
    assert queue_counts(sqs, url) == (0, 0)  # all deleted, after the commit


def test_sigkill_between_commit_and_delete_then_rerun_lands_exactly_once(
    paused_drain: Callable[..., Paused], moto_url: str, sqs: Any, db_path: Path
) -> None:
    url = sqs.create_queue(QueueName=unique("orders"))["QueueUrl"]
    sent = send(
        sqs, url, [{"eventType": "order", "timeStamp": "2026-01-02T03:04:05Z", "n": n} for n in range(40)]
    )

    child = paused_drain(
        "sqs", url, db_path, moto_url, batch_size=20, wait_seconds=0, visibility_timeout=2
    )  # first batch committed; the child now blocks before deleting it
    store = HistoryStore(db_path)
    committed = set(store.query("SELECT event_id FROM events")["event_id"])
    assert len(committed) == 20 and committed <= set(sent)
    child.kill()
    assert sum(queue_counts(sqs, url)) == 40  # nothing was deleted: the 20 committed ones come back

    reports = []

    def rerun_until_all_landed() -> bool:
        reports.append(drain_sqs(store, sqs, url, batch_size=20, wait_seconds=1, visibility_timeout=30))
        return queue_counts(sqs, url) == (0, 0)

    wait_for(rerun_until_all_landed, timeout=30, what="the queue drained")
    ids = list(store.query("SELECT event_id FROM events")["event_id"])
    assert len(ids) == len(set(ids)) == 40 and set(ids) == set(sent)
    assert sum(r.loaded for r in reports) == 20
    assert sum(r.duplicates for r in reports) == 20  # the committed batch, redelivered, dropped


def test_a_missing_queue_is_a_clear_permanent_error(sqs: Any, store: HistoryStore) -> None:
    url = sqs.create_queue(QueueName=unique("gone"))["QueueUrl"]
    sqs.delete_queue(QueueUrl=url)

    with pytest.raises(IngestError) as caught:
        drain_sqs(store, sqs, url, wait_seconds=0)

    assert caught.value.vendor == "sqs" and caught.value.operation == "ReceiveMessage"
    assert url.rsplit("/", 1)[-1] in str(caught.value) and not caught.value.transient
