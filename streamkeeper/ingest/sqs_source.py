"""Events from an Amazon SQS queue (ThingSpace ``streamawssqs`` targets, other AWS providers), with boto3.

A drain receives messages (up to 10 a call) until it holds a batch, commits the batch to ``events``, and
only then deletes the messages. SQS is at least once: a crash between the commit and the delete, a delete
that fails, or a visibility timeout that runs out brings a message back with the same ``MessageId``, which
is the row's ``event_id``, so the store drops it (vendor, stream, event_id). The ``stream`` column is the
queue name; the vendor is read from the payload's shape (`normalize.describe`), else ``sqs``.

Keep `visibility_timeout` well above the time a batch takes to commit, else another consumer gets the
messages meanwhile (harmless: they are deduplicated, but the work is done twice).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from streamkeeper.ingest.base import BatchLoader, SourceReport, Stopwatch, aws_call, in_session
from streamkeeper.ingest.normalize import Row, aws_events, parse_time
from streamkeeper.store import HistoryStore

SQS_MAX_BATCH = 10  # SQS: at most 10 messages per receive and per delete batch


def queue_name(queue_url: str) -> str:
    """``https://sqs.eu-west-1.amazonaws.com/123/orders`` -> ``orders`` (an ARN's last part likewise)."""
    return queue_url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]


@in_session
def drain_sqs(
    store: HistoryStore,
    sqs: Any,
    queue_url: str,
    *,
    max_events: int = 100_000,
    batch_size: int = 500,
    wait_seconds: int = 1,
    visibility_timeout: int = 60,
    max_seconds: float | None = None,
    fallback_vendor: str = "sqs",
) -> SourceReport:
    """Receive, commit, then delete, until the queue answers empty or a limit is reached.

    Args:
        sqs: a boto3 SQS client.
        max_events: stop after receiving this many messages.
        batch_size: messages per commit (and per round of deletes).
        wait_seconds: long-poll time of each receive (0..20); an empty answer ends the drain.
        visibility_timeout: seconds a received message stays hidden from other consumers.
        max_seconds: stop receiving after this long (None: no limit).
    """
    stream = queue_name(queue_url)
    report = SourceReport(source=f"sqs:{stream}")
    loader = BatchLoader(store, report)
    watch = Stopwatch(max_seconds)
    idle = False
    while not idle and report.received < max_events and not watch.expired:
        messages: list[dict[str, Any]] = []
        while len(messages) < batch_size and report.received < max_events and not watch.expired:
            wanted = min(SQS_MAX_BATCH, batch_size - len(messages), max_events - report.received)
            answer = _call(
                sqs.receive_message,
                "ReceiveMessage",
                stream,
                QueueUrl=queue_url,
                MaxNumberOfMessages=wanted,
                WaitTimeSeconds=wait_seconds,
                VisibilityTimeout=visibility_timeout,
                MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
            )
            received = answer.get("Messages", [])
            if not received:
                idle = True
                break
            messages.extend(received)
            report.received += len(received)
        if not messages:
            break
        rows = _rows(messages, stream, fallback_vendor)
        loader.load(rows)  # committed: from here on, the messages may go
        _delete(sqs, queue_url, stream, messages)
    report.seconds = watch.elapsed
    return report


def _rows(messages: list[dict[str, Any]], stream: str, fallback_vendor: str) -> list[Row]:
    now = datetime.now(UTC)
    rows: list[Row] = []
    for message in messages:
        sent = message.get("Attributes", {}).get("SentTimestamp")
        rows.extend(
            aws_events(
                fallback_vendor=fallback_vendor,
                stream=stream,
                event_id=message["MessageId"],
                body=message.get("Body", ""),
                received_at=now,
                sent_at=parse_time(int(sent)) if sent and sent.isdigit() else None,
            )
        )
    return rows


def _delete(sqs: Any, queue_url: str, stream: str, messages: list[dict[str, Any]]) -> None:
    """Delete committed messages, 10 a call. A failed entry comes back later and is deduplicated."""
    for start in range(0, len(messages), SQS_MAX_BATCH):
        chunk = messages[start : start + SQS_MAX_BATCH]
        _call(
            sqs.delete_message_batch,
            "DeleteMessageBatch",
            stream,
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
        )


def _call(method: Any, what: str, stream: str, **kwargs: Any) -> Any:
    return aws_call("sqs", what, f"queue {stream}", method, **kwargs)


__all__ = ["drain_sqs", "queue_name"]
