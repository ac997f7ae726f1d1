"""A week of history for the dashboard's tests, written through the store's public writers."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd

from streamkeeper.store import HistoryStore, SubscriptionVersion, TokenEvent
from streamkeeper.vendors.http import ApiCall

HOURS = 7 * 24


def seed(store: HistoryStore, now: datetime | None = None) -> datetime:
    """Subscriptions, a week of events, calls, token events and audits, as of `now` (returned)."""
    now = now or datetime.now(UTC)
    store.record_versions(
        [
            SubscriptionVersion(
                vendor="dma",
                account="dma-prod",
                subscription_id=f"sub-{i}",
                name=f"conf-{i}",
                change="refreshed",
                status="active",
                expires_at=now + timedelta(hours=hours),
            )
            for i, hours in enumerate([-1, 0.5, 3, 12, 25])
        ]
    )
    events = [
        {
            "vendor": vendor,
            "stream": stream,
            "event_id": f"{stream}-{h}-{n}",
            "subscription_id": None,
            "account": "a",
            "event_type": "update",
            "occurred_at": at - timedelta(seconds=lag + n),
            "received_at": at,
            "payload": {"n": n},
        }
        for vendor, stream, every, lag in (("plt", "locations", 1, 0.4), ("dma", "conferences", 3, 2.5))
        for h in range(0, HOURS, every)
        for at in [now - timedelta(hours=h, minutes=5)]
        for n in range(1 + round(3 + 3 * math.sin(2 * math.pi * h / 24)))  # busier by day
    ]
    store.load_events(pd.DataFrame(events))
    store.record_api_calls(
        [
            ApiCall(
                vendor=vendor,
                operation="op",
                method="GET",
                path="/x",
                latency_ms=12.0,
                attempt=1,
                status=503 if (h + n) % 9 == 0 and vendor == "equinix" else 200,
                called_at=now - timedelta(hours=h, minutes=n),
            )
            for vendor in ("dma", "equinix")
            for h in range(0, HOURS, 6)
            for n in range(3)
        ]
    )
    store.record_token_events(
        [
            TokenEvent(
                vendor="stream",
                account="stream-prod",
                event="rotated",
                at=now - timedelta(hours=h),
                expires_at=now - timedelta(hours=h) + timedelta(hours=2),
            )
            for h in range(0, HOURS, 12)
        ]
        + [
            TokenEvent(
                vendor="equinix",
                account="eqx",
                event="failed",
                detail="HTTP 401",
                at=now - timedelta(hours=30),
            )
        ]
    )
    with store.writer() as con:
        for day in range(7):
            finished = now - timedelta(days=day, hours=1)
            audit_id = uuid.uuid4().hex
            findings = day % 3
            con.execute(
                "INSERT INTO audits (audit_id, vendor, account, started_at, finished_at, observed, not_modified,"
                " bodies_stored, spec_checked, findings, error) VALUES (?, 'dma', 'dma-prod', ?, ?, 5, 3, 2,"
                " true, ?, NULL)",
                [audit_id, finished - timedelta(seconds=4), finished, findings],
            )
            for n in range(findings):
                con.execute(
                    "INSERT INTO drift_findings (audit_id, found_at, vendor, account, resource, name, against,"
                    " finding) VALUES (?, ?, 'dma', 'dma-prod', 'subscription', ?, 'spec', 'changed')",
                    [audit_id, finished, f"conf-{n}"],
                )
        con.execute(
            "INSERT INTO audits (audit_id, vendor, account, started_at, finished_at, observed, not_modified,"
            " bodies_stored, spec_checked, findings, error) VALUES ('failed', 'plt', 'plt-prod', ?, ?, 0, 0, 0,"
            " false, 0, 'HTTP 503 from PLT')",
            [now - timedelta(hours=50), now - timedelta(hours=50)],
        )
    return now
