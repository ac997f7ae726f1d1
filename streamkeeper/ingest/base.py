"""What every source shares: the run report, the batch loader, the error type, and the after-commit test hook."""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from pydantic import BaseModel

from streamkeeper.ingest.identity import drop_stored_previous
from streamkeeper.ingest.normalize import Row, frame
from streamkeeper.store import HistoryStore
from streamkeeper.vendors.http.errors import VendorError

PAUSE_ENV = "STREAMKEEPER_INGEST_PAUSE_AFTER_COMMIT"
"""Test hook: the path of a FIFO. See `after_commit`."""
PAUSE_SOURCE_ENV = "STREAMKEEPER_INGEST_PAUSE_SOURCE"
"""Test hook: count only the commits of sources whose name starts with this (``landing``, ``equinix:``)."""
PAUSE_AT_ENV = "STREAMKEEPER_INGEST_PAUSE_AT"
"""Test hook: pause after this many (counted) commits; default 1."""


class IngestError(VendorError):
    """A source could not be read or acknowledged (the message never holds a secret such as a PLT channel).

    Attributes:
        transient: whether a later try may succeed (the network, throttling, a 5xx); the task retries those.
    """

    def __init__(self, vendor: str, operation: str, message: str, *, transient: bool = False) -> None:
        super().__init__(vendor, operation, message)
        self.transient = transient


class SourceReport(BaseModel):
    """What one run did with one source.

    Attributes:
        source: which source, e.g. ``plt:<block>``, ``sqs:<queue>``, ``kinesis:<stream>``, ``landing``.
        received: messages, records or files read (duplicates included).
        loaded: new rows in ``events``.
        duplicates: rows dropped because the event was already stored (or came twice in the run).
        skipped: read but not events: Equinix heartbeats.
        quarantined: acknowledged deliveries that could not be loaded: moved aside and recorded in
            ``rejected_deliveries`` with the reason (landing files).
        gaps: sequence gaps recorded in ``event_gaps`` (landing records of kind ``gap``).
        batches: transactions committed.
        retries: reads tried again after a transient failure.
        seconds: wall time of the run.
    """

    source: str
    received: int = 0
    loaded: int = 0
    duplicates: int = 0
    skipped: int = 0
    quarantined: int = 0
    gaps: int = 0
    batches: int = 0
    retries: int = 0
    seconds: float = 0.0
    detail: str | None = None

    def merge(self, other: SourceReport) -> None:
        """Add another report's counts to this one (same source, several parts)."""
        self.received += other.received
        self.loaded += other.loaded
        self.duplicates += other.duplicates
        self.skipped += other.skipped
        self.quarantined += other.quarantined
        self.gaps += other.gaps
        self.batches += other.batches
        self.retries += other.retries
        self.seconds += other.seconds


P = ParamSpec("P")
R = TypeVar("R")


def in_session(drain: Callable[Concatenate[HistoryStore, P], R]) -> Callable[Concatenate[HistoryStore, P], R]:
    """Run a drain inside `HistoryStore.session`: one writer for all its batches (each its own commit)."""

    @functools.wraps(drain)
    def run(store: HistoryStore, *args: P.args, **kwargs: P.kwargs) -> R:
        with store.session():
            return drain(store, *args, **kwargs)

    return run


class BatchLoader:
    """Loads batches of rows with `HistoryStore.load_events` (rows and cursors in one transaction).

    Counts into `report`, and calls `after_commit` after each commit.
    """

    def __init__(self, store: HistoryStore, report: SourceReport) -> None:
        self.store = store
        self.report = report

    def load(self, rows: Sequence[Row], cursors: dict[str, str] | None = None) -> int:
        """Commit `rows` (deduplicated by vendor, stream, event_id, and by a previous id format: see
        `identity`) and move `cursors` with them."""
        if not rows and not cursors:
            return 0
        streams = {(r["vendor"], r["stream"]) for r in rows}
        with self.store.writer(streams=streams, cursors=cursors) as con:  # holds them across hosts
            kept, _ = drop_stored_previous(con, rows)
            inserted = self.store.load_events(frame(kept), cursors=cursors, con=con)
        self.report.loaded += inserted
        self.report.duplicates += len(rows) - inserted
        self.report.batches += 1
        after_commit(self.report.source)
        return inserted


class Stopwatch:
    """Seconds since creation, and a deadline check."""

    def __init__(self, limit: float | None = None) -> None:
        self.started = time.monotonic()
        self.limit = limit

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def remaining(self) -> float:
        return float("inf") if self.limit is None else self.limit - self.elapsed

    @property
    def expired(self) -> bool:
        return self.remaining <= 0


def aws_call(service: str, what: str, subject: str, method: Any, **kwargs: Any) -> Any:
    """Call a boto3 method; its errors become `IngestError` (transient for 429, 5xx, throttling, no answer).

    Args:
        service: ``sqs`` or ``kinesis`` (the error's vendor).
        what: the AWS operation, named in the error.
        subject: what was being read, e.g. ``queue orders`` or ``stream events``.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return method(**kwargs)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "?"))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        raise IngestError(
            service,
            what,
            f"{subject}: {code}: {error.get('Message', '')}",
            transient=status >= 500 or status == 429 or "Throttl" in code or "Exceeded" in code,
        ) from None
    except BotoCoreError as exc:  # no answer: connection, DNS, timeout
        raise IngestError(service, what, f"{subject}: {exc}", transient=True) from None


_paused = False
_counted = 0
_pause_lock = threading.Lock()


def after_commit(source: str) -> None:
    """Crash-test hook, called right after each commit and before the source is acknowledged.

    When ``$STREAMKEEPER_INGEST_PAUSE_AFTER_COMMIT`` names a FIFO, the first call (or the Nth call for a
    source whose name starts with ``$STREAMKEEPER_INGEST_PAUSE_SOURCE``, N = ``$STREAMKEEPER_INGEST_PAUSE_AT``,
    default 1; sources run in threads, the count is per process) writes ``<fifo>.committed`` (holding
    `source`) and then blocks opening the FIFO for reading, until a writer opens it. A test waits for the
    marker, then kills the process with SIGKILL: the crash lands exactly between the commit and the
    acknowledgement (SQS delete, landing-file removal). Unset (always, outside tests): nothing.
    """
    global _paused, _counted
    fifo = os.environ.get(PAUSE_ENV)
    if not fifo:
        return
    with _pause_lock:
        if _paused or not source.startswith(os.environ.get(PAUSE_SOURCE_ENV, "")):
            return
        _counted += 1
        if _counted < int(os.environ.get(PAUSE_AT_ENV) or 1):
            return
        _paused = True
    marker = Path(fifo + ".committed")
    partial = marker.with_name(marker.name + ".tmp")
    partial.write_text(source)
    partial.rename(marker)
    with open(fifo, "rb") as pipe:  # blocks until a writer opens the FIFO
        pipe.read()


__all__ = [
    "aws_call",
    "PAUSE_AT_ENV",
    "PAUSE_ENV",
    "PAUSE_SOURCE_ENV",
    "BatchLoader",
    "IngestError",
    "SourceReport",
    "Stopwatch",
    "after_commit",
]
