"""Events from Equinix SmartView's pull feed (``GET /smartview/v2/streaming/subscriptionData/{id}``).

The feed is append-only and paged by ``offset``/``limit``. A drain pages from the stored offset
(``equinix:<subscriptionId>``) with `EquinixClient.iter_subscription_data` and commits each page's messages
with the cursor moved to ``page.next_offset`` in the same transaction: a rerun resumes after the last
committed page, neither missing nor repeating a message. Weekly heartbeats (``data.heartbeat: true`` or
``heartbeat: "true"`` beside ``data``) move the cursor but are not events; reading values may be strings
or numbers (the payload keeps what came). ``stream`` is the subscription id, ``account`` the caller's name
for the organisation (the block). A message that also came by webhook lands once: the receiver gives it
the same stream and event id.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from streamkeeper.ingest.base import BatchLoader, SourceReport, Stopwatch, in_session
from streamkeeper.ingest.normalize import Row, equinix_event
from streamkeeper.store import HistoryStore
from streamkeeper.vendors.equinix import DEFAULT_PAGE_SIZE, EquinixClient

CURSOR_PREFIX = "equinix"


def cursor_key(subscription_id: str) -> str:
    return f"{CURSOR_PREFIX}:{subscription_id}"


def pull_subscriptions(client: EquinixClient) -> list[str]:
    """The organisation's subscriptions that deliver through the pull feed.

    Current API: every live subscription, whatever its channel (doc: "Subscription data endpoint works for
    all channels"). Seed API: the organisation's subscription when its ``config.method`` is ``PULL``.
    """
    if client.api_generation == "streaming":
        return [
            s.id
            for s in client.list_streaming_subscriptions()
            if (s.status or "").upper() not in ("DELETED", "DELETE_IN_PROGRESS", "FAILED")
        ]
    subscription = client.get_org_subscription()
    if subscription is None or subscription.config is None:
        return []
    return [subscription.subscription_id] if (subscription.config.method or "").upper() == "PULL" else []


@in_session
def drain_equinix(
    store: HistoryStore,
    client: EquinixClient,
    account: str,
    subscription_ids: Sequence[str] | None = None,
    *,
    max_events: int = 100_000,
    page_size: int = DEFAULT_PAGE_SIZE,
    max_seconds: float | None = None,
) -> SourceReport:
    """Pull each subscription's feed from its cursor to the end, one commit per page.

    Args:
        account: stored as ``account`` (e.g. the credentials block's name).
        subscription_ids: which feeds; None = `pull_subscriptions(client)`.
        max_events: stop after this many messages (over all subscriptions).
        page_size: ``limit`` of each page (the emulator allows up to 1000).
    """
    report = SourceReport(source=f"equinix:{account}")
    loader = BatchLoader(store, report)
    watch = Stopwatch(max_seconds)
    ids = list(subscription_ids) if subscription_ids is not None else pull_subscriptions(client)
    stored = store.cursors(f"{CURSOR_PREFIX}:")
    for subscription_id in ids:
        key = cursor_key(subscription_id)
        offset = int(stored.get(key, 0))
        remaining = max_events - report.received
        if remaining <= 0 or watch.expired:
            break
        for page in client.iter_subscription_data(
            subscription_id, offset=offset, limit=max(1, min(page_size, remaining))
        ):
            report.received += len(page.items)
            now = datetime.now(UTC)
            rows: list[Row] = []
            for message in page.items:
                if message.is_heartbeat:
                    report.skipped += 1
                    continue
                rows.append(
                    equinix_event(
                        account=account, subscription_id=subscription_id, message=message, received_at=now
                    )
                )
            loader.load(rows, {key: str(page.next_offset)})
            if report.received >= max_events or watch.expired:
                break
    report.seconds = watch.elapsed
    return report


__all__ = ["cursor_key", "drain_equinix", "pull_subscriptions"]
