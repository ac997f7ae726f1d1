"""Keeping subscriptions alive: refresh DMA subscriptions before they expire.

A DMA subscription dies at its calculated expiration date unless a PUT of its time-to-live restarts the
timer. `refresh_dma` lists what the DMA holds (a conditional GET: 304 when nothing changed since the last
run, and then the cached list is used), picks those expiring within the horizon, soonest first, and PUTs
each one's time-to-live with its ETag. Each refresh becomes a new version in ``subscriptions``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel

from streamkeeper.store import HistoryStore, SubscriptionVersion
from streamkeeper.vendors.dma import MAX_TIME_TO_LIVE, DMAClient, Subscription
from streamkeeper.vendors.http import NotFound, PreconditionFailed, VendorError

LIST_RESOURCE = "/subscriptions"


class RefreshOutcome(BaseModel):
    """What happened to one subscription in a refresh run."""

    vendor: str
    account: str
    subscription_id: str
    name: str | None
    outcome: Literal["refreshed", "expired", "failed", "skipped"]
    old_expires_at: datetime | None
    new_expires_at: datetime | None
    detail: str | None = None


def list_dma(client: DMAClient, store: HistoryStore, account: str) -> tuple[list[Subscription], bool]:
    """Every subscription the DMA holds, with a conditional GET. Returns (subscriptions, not_modified)."""
    etag, cached = store.cache_get("dma", account, LIST_RESOURCE)
    listing = client.list_subscriptions(etag=etag if cached is not None else None)
    if listing is None:
        return [Subscription.model_validate(item) for item in cached], True
    store.cache_put(
        "dma",
        account,
        LIST_RESOURCE,
        listing.etag,
        [s.model_dump(mode="json", by_alias=False) for s in listing.subscriptions],
    )
    return listing.subscriptions, False


def refresh_dma(
    client: DMAClient,
    store: HistoryStore,
    account: str,
    within: timedelta = timedelta(hours=2),
    workers: int = 8,
    time_to_live: int | None = None,
    now: datetime | None = None,
) -> list[RefreshOutcome]:
    """Refresh every DMA subscription that expires within `within`, soonest first.

    Args:
        client: the DMA client.
        store: where history rows go.
        account: the name of this DMA in the history (the block name).
        within: refresh subscriptions whose expiry is closer than this.
        workers: parallel PUTs (sync httpx in threads: faster here than async under concurrency).
        time_to_live: the time-to-live to PUT (0 = the 26 h maximum); None keeps each one's own.
        now: the current time (tests).
    """
    now = now or datetime.now(UTC)
    subscriptions, _ = list_dma(client, store, account)
    due = sorted(
        (
            s
            for s in subscriptions
            if s.calculated_expiration_date is None or s.calculated_expiration_date - now <= within
        ),
        key=lambda s: s.calculated_expiration_date or now,
    )
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        outcomes = list(pool.map(lambda s: _refresh_one(client, account, s, time_to_live), due))
    store.record_versions(
        [
            SubscriptionVersion(
                vendor="dma",
                account=account,
                subscription_id=o.subscription_id,
                name=o.name,
                kind=sub.subject_resource_url.rsplit("/api/rest/", 1)[-1]
                if sub.subject_resource_url
                else None,
                observed=sub.model_dump(mode="json"),
                etag=sub.entity_tag,
                time_to_live=sub.time_to_live,
                expires_at=o.new_expires_at,
                previous_expires_at=o.old_expires_at,
                status="active" if o.outcome == "refreshed" else o.outcome,
                change="refreshed" if o.outcome == "refreshed" else "expired",
                detail=o.detail,
            )
            for o, sub in zip(outcomes, due, strict=True)
            if o.outcome in ("refreshed", "expired")
        ]
    )
    return outcomes


def _refresh_one(
    client: DMAClient, account: str, sub: Subscription, time_to_live: int | None
) -> RefreshOutcome:
    old = sub.calculated_expiration_date
    if time_to_live is not None:
        sub.time_to_live = time_to_live
    sub_id = sub.subscription_identifier
    base = {"vendor": "dma", "account": account, "subscription_id": sub_id, "name": sub.passback}
    try:
        try:
            sub.entity_tag = client.update_time_to_live(sub_id, sub.time_to_live, sub.entity_tag or "")
        except PreconditionFailed:
            # someone (another refresh run) changed it since we listed: read it again, retry once
            fresh = client.get_subscription(sub_id)
            assert fresh is not None
            sub.entity_tag = client.update_time_to_live(sub_id, sub.time_to_live, fresh.entity_tag or "")
    except NotFound:
        return RefreshOutcome(
            **base, outcome="expired", old_expires_at=old, new_expires_at=None, detail="gone (404)"
        )
    except VendorError as exc:
        return RefreshOutcome(
            **base, outcome="failed", old_expires_at=old, new_expires_at=None, detail=str(exc)
        )
    if sub.time_to_live == 0:
        sub.time_to_live = MAX_TIME_TO_LIVE
    new = datetime.now(UTC) + timedelta(seconds=sub.time_to_live)
    sub.calculated_expiration_date = new
    return RefreshOutcome(**base, outcome="refreshed", old_expires_at=old, new_expires_at=new)
