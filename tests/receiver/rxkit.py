"""Receiver test kit: sentinel credentials, the config every test uses, landing readers, loading."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pollkit import wait_for as wait_for  # re-exported for the receiver tests

from streamkeeper.ingest.landing import load_landing as ingest_landing
from streamkeeper.receiver import ReceiverConfig, ReceiverServer, read_records
from streamkeeper.receiver.app import Receiver
from streamkeeper.store import HistoryStore

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
    server: ReceiverServer
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


def assert_no_secrets(landing: Path, *texts: str) -> None:
    """No secret in any file of the landing area (state included) nor in the given texts."""
    blobs = [p.read_bytes().decode(errors="replace") for p in landing.rglob("*") if p.is_file()]
    for secret in SECRETS:
        for blob in [*blobs, *texts]:
            assert secret not in blob


def load_landing(landing: Path, db_path: Path) -> HistoryStore:
    """Run the ingest job's landing loader over `landing` into a fresh store (dedup by event id)."""
    store = HistoryStore(db_path)
    before = read_records(landing)
    report = ingest_landing(store, landing)
    assert (report.skipped, report.quarantined) == (0, 0), report  # every record the receiver wrote loads
    assert report.received == len(before)
    assert read_records(landing) == []  # loaded, then deleted after the commit
    assert report.gaps == len(
        {(g["subscription_id"], g["expected"], g["received"]) for g in before if g.get("kind") == "gap"}
    )
    return store
