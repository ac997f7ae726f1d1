"""Receiver test kit: sentinel credentials, the config every test uses, landing readers, loading."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from streamkeeper.receiver import ReceiverConfig, read_records
from streamkeeper.receiver.app import Receiver
from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.store import HistoryStore
from streamkeeper.store.records import EVENT_COLUMNS, EventGap

# sentinels: none of these may appear in a landing file, the receiver's state, or a log line
DMA_USER = "dma-notifier"
DMA_PASSWORD = "S3NTINEL-dma-consumer-password"
TS_USER = "ts-receiver"
TS_PASSWORD = "S3NTINEL-thingspace-receiver-password"
TS_TOKEN = "S3NTINEL-thingspace-bearer-token"
STREAM_SECRET = "S3NTINEL-stream-webhook-secret"
SECRETS = (
    DMA_PASSWORD,
    TS_PASSWORD,
    TS_TOKEN,
    STREAM_SECRET,
    base64.b64encode(f"{DMA_USER}:{DMA_PASSWORD}".encode()).decode(),
    base64.b64encode(f"{TS_USER}:{TS_PASSWORD}".encode()).decode(),
)


def receiver_config(**overrides: Any) -> ReceiverConfig:
    """The senders every receiver test accepts."""
    settings: dict[str, Any] = {
        "dma": {"conf": {"account": "dma-test", "username": DMA_USER, "password": DMA_PASSWORD}},
        "thingspace": {
            "devices": {"account": "0000000000-00001", "username": TS_USER, "password": TS_PASSWORD},
            "tokens": {"account": "0000000000-00001", "bearer_token": TS_TOKEN},
        },
        "stream": {"orders": {"account": "org-1", "secret": STREAM_SECRET}},
    }
    settings.update(overrides)
    return ReceiverConfig.model_validate(settings)


@dataclass
class Running:
    server: SandboxServer
    receiver: Receiver

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()
        self.receiver.close()


def events(landing: Path) -> list[dict[str, Any]]:
    return [r for r in read_records(landing) if r.get("kind", "event") == "event"]


def gaps(landing: Path) -> list[dict[str, Any]]:
    return [r for r in read_records(landing) if r.get("kind") == "gap"]


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll `condition` until it returns something truthy (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def assert_no_secrets(landing: Path, *texts: str) -> None:
    """No secret in any file of the landing area (state included) nor in the given texts."""
    blobs = [p.read_bytes().decode(errors="replace") for p in landing.rglob("*") if p.is_file()]
    for secret in SECRETS:
        for blob in [*blobs, *texts]:
            assert secret not in blob


def load_landing(landing: Path, db_path: Path) -> HistoryStore:
    """Load the landing area into a history store the way the CONVENTIONS describe (dedup by event id).

    (The ingest job's loader is `streamkeeper.ingest.landing`; this keeps the receiver's tests independent
    of it while checking that what lands is loadable by `HistoryStore.load_events` and `record_gaps`.)
    """
    store = HistoryStore(db_path)
    records = read_records(landing)
    rows = [r for r in records if r.get("kind", "event") == "event"]
    frame = pd.DataFrame.from_records(
        [{c: r.get(c) for c in EVENT_COLUMNS} for r in rows], columns=EVENT_COLUMNS
    )
    for column in ("occurred_at", "received_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    frame["payload"] = [json.dumps(p) for p in frame["payload"]]
    store.load_events(frame)
    store.record_gaps(
        [
            EventGap(**{k: r[k] for k in EventGap.model_fields if k in r})
            for r in records
            if r.get("kind") == "gap"
        ]
    )
    return store
