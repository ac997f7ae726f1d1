"""Keeping subscriptions and tokens alive: everything that expires, refreshed before it does.

DMA subscriptions die at their calculated expiration date unless a PUT of their time-to-live restarts the
timer. `refresh_dma` lists what the DMA holds (a conditional GET: 304 when nothing changed since the last
run, and then the cached list is used), picks those expiring within the horizon, soonest first, and PUTs
each one's time-to-live with its ETag. A subscription that is gone (404 on the PUT, or known to the
history but no longer listed) has expired: when the spec still wants it, it is created again. Every
refresh, expiry and re-creation becomes a new version in ``subscriptions``.

Vendor tokens: the Stream refresh token is single-use and rotates on every renewal (the caller's
``on_token`` stores the new one before it is used); ThingSpace's bearer + VZ-M2M session and Equinix's
bearer are fetched again. Each gives one `TokenEvent` (never the token itself).

The refresh horizon is judged against `clock`, which tests point at the emulator's clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import duckdb
from pydantic import BaseModel, Field

from streamkeeper.store import HistoryStore, SubscriptionVersion, TokenEvent
from streamkeeper.store.history import as_utc
from streamkeeper.vendors.dma import MAX_TIME_TO_LIVE, DMAClient, NewSubscription, Subscription
from streamkeeper.vendors.equinix import EquinixClient
from streamkeeper.vendors.http import NotFound, PreconditionFailed, VendorError
from streamkeeper.vendors.stream import StreamClient
from streamkeeper.vendors.thingspace import ThingSpaceClient

LIST_RESOURCE = "/subscriptions"

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


Outcome = Literal["refreshed", "expired", "recreated", "failed", "skipped"]


class RefreshOutcome(BaseModel):
    """What happened to one subscription in a refresh run."""

    vendor: str
    account: str
    subscription_id: str
    name: str | None
    outcome: Outcome
    old_expires_at: datetime | None
    new_expires_at: datetime | None
    detail: str | None = None


class DesiredDMASubscription(BaseModel):
    """A DMA subscription the spec wants, enough to create it again: its name is its ``passback``."""

    name: str
    subject: str = Field(description="conferences, conferences/{id} or conferences/{id}/participants.")
    subscription: NewSubscription
    desired: dict[str, Any] | None = Field(None, description="The spec entry, for the history.")


class DMAListing:
    """What one conditional ``GET /subscriptions`` found: the list's ETag, and the subscriptions.

    On a 304 the subscriptions are the cached list, read from ``http_cache`` only when asked for (an audit
    that finds nothing changed needs only the ETag).
    """

    def __init__(
        self, store: HistoryStore, account: str, etag: str | None, subscriptions: list[Subscription] | None
    ) -> None:
        self.etag = etag
        self.not_modified = subscriptions is None
        self._store, self._account, self._subscriptions = store, account, subscriptions
        self._kept = self.not_modified

    @property
    def subscriptions(self) -> list[Subscription]:
        if self._subscriptions is None:
            _, cached = self._store.cache_get("dma", self._account, LIST_RESOURCE)
            self._subscriptions = [Subscription.model_validate(item) for item in cached or []]
        return self._subscriptions

    def keep(self) -> None:
        """Cache a list the DMA sent (200), with its ETag, for the next conditional GET."""
        if self._kept:
            return
        self._store.cache_put(
            "dma",
            self._account,
            LIST_RESOURCE,
            self.etag,
            [s.model_dump(mode="json", by_alias=False) for s in self.subscriptions],
        )
        self._kept = True


def cached_list_etag(con: duckdb.DuckDBPyConnection, account: str) -> str | None:
    """The ETag of the DMA list kept in ``http_cache`` (None when no list is kept)."""
    row = con.execute(
        "SELECT etag FROM http_cache WHERE vendor = 'dma' AND account = ? AND resource = ? AND body IS NOT NULL",
        [account, LIST_RESOURCE],
    ).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def list_dma(
    client: DMAClient, store: HistoryStore, account: str, etag: str | None, keep: bool = True
) -> DMAListing:
    """Every subscription the DMA holds, with a conditional GET on `etag` (`cached_list_etag`).

    The list and its ETag are kept in ``http_cache`` (shared with the audit): a 304 means the cached list is
    still what the DMA holds. Without `keep`, a new list is cached only when the caller calls
    `DMAListing.keep` (the refresh, when it changed nothing: its PUTs would make the list stale at once).
    """
    answer = client.list_subscriptions(etag=etag)
    listing = DMAListing(
        store,
        account,
        etag if answer is None else answer.etag,
        None if answer is None else answer.subscriptions,
    )
    if keep:
        listing.keep()
    return listing


def refresh_dma(
    client: DMAClient,
    store: HistoryStore,
    account: str,
    within: timedelta = timedelta(hours=2),
    workers: int = 8,
    time_to_live: int | None = None,
    clock: Clock = utc_now,
    desired: Mapping[str, Callable[[], DesiredDMASubscription]] | None = None,
) -> list[RefreshOutcome]:
    """Refresh every DMA subscription that expires within `within`, soonest first; recreate expired ones.

    Args:
        client: the DMA client.
        store: where history rows go.
        account: the name of this DMA in the history (the block name).
        within: refresh subscriptions whose expiry is closer than this (at least the schedule interval,
            so that nothing expires between two runs).
        workers: parallel PUTs (sync httpx in threads: faster here than async under concurrency).
        time_to_live: the time-to-live to PUT (0 = the 26 h maximum); None keeps each one's own.
        clock: the current time, as the DMA sees it (tests give the emulator's clock).
        desired: the DMA subscriptions the spec wants, by name: a function giving the create body (called
            only to create one again, so that its secret is read only then). One that expired is recreated.

    Returns:
        One outcome per subscription acted on: soonest-expiring first, then expiries and re-creations.
    """
    now = clock()
    with store.reader() as con:
        etag = cached_list_etag(con, account)
    listing = list_dma(client, store, account, etag, keep=False)
    subscriptions = listing.subscriptions
    with store.reader() as con:  # what the history holds, in one read
        live = _live(con, account)
        known = _known_names(con, account) if desired else {}
    due = sorted(
        (
            s
            for s in subscriptions
            if s.calculated_expiration_date is None or s.calculated_expiration_date - now <= within
        ),
        key=lambda s: s.calculated_expiration_date or now,
    )
    outcomes: list[RefreshOutcome] = []
    versions: list[SubscriptionVersion] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for outcome, version in pool.map(lambda s: _refreshed(client, account, s, time_to_live, clock), due):
            outcomes.append(outcome)
            if version is not None:
                versions.append(version)
            if len(versions) >= HISTORY_BATCH:  # written while the other PUTs are in flight
                store.record_versions(versions)
                versions = []

    # known to the history as live, but no longer listed: expired before this run came
    listed = {s.subscription_identifier for s in subscriptions}
    gone = [row for row in live if row["subscription_id"] not in listed]
    for row in gone:
        outcome = RefreshOutcome(
            vendor="dma",
            account=account,
            subscription_id=row["subscription_id"],
            name=row["name"],
            outcome="expired",
            old_expires_at=row["expires_at"],
            new_expires_at=None,
            detail="no longer listed by the DMA",
        )
        outcomes.append(outcome)
        versions.append(
            SubscriptionVersion(
                vendor="dma",
                account=account,
                subscription_id=outcome.subscription_id,
                name=outcome.name,
                kind=row["kind"],
                expires_at=outcome.old_expires_at,
                previous_expires_at=outcome.old_expires_at,
                status="expired",
                change="expired",
                detail=outcome.detail,
            )
        )

    # what the spec wants, existed once (the history knows it) and is gone: create it again
    expired_now = {o.subscription_id for o in outcomes if o.outcome == "expired"}
    alive_names = {
        s.passback for s in subscriptions if s.passback and s.subscription_identifier not in expired_now
    }
    known.update({o.name: o.subscription_id for o in outcomes if o.outcome == "expired" and o.name})
    for name, body in (desired or {}).items():
        if name in alive_names or name not in known:
            continue
        outcome, version = _recreate(client, account, name, body, known[name], clock)
        outcomes.append(outcome)
        if version is not None:
            versions.append(version)
    if not due and not any(o.outcome == "recreated" for o in outcomes):
        listing.keep()  # nothing changed at the DMA: the next run's list GET can be a 304
    store.record_versions(versions)
    return outcomes


HISTORY_BATCH = 10_000
"""Refresh versions are written this many at a time: a run of more subscriptions writes while its PUTs go
on, which bounds the versions held in memory (~2 KB each) and records what a run stopped half way did.
Each write has a fixed cost (~70 ms of CPU here: the lock, the connection, the checkpoint), so the batches
are large: the client's own CPU (TLS, HTTP) keeps the process busy, so a write during the PUTs overlaps
little and costs its fixed cost again."""


def _refreshed(
    client: DMAClient, account: str, sub: Subscription, time_to_live: int | None, clock: Clock
) -> tuple[RefreshOutcome, SubscriptionVersion | None]:
    """One subscription's PUT and its history version, both made in the worker thread."""
    outcome = _refresh_one(client, account, sub, time_to_live, clock)
    return outcome, None if outcome.outcome == "failed" else _version(account, sub, outcome)


def _refresh_one(
    client: DMAClient, account: str, sub: Subscription, time_to_live: int | None, clock: Clock
) -> RefreshOutcome:
    old = sub.calculated_expiration_date
    if time_to_live is not None:
        sub.time_to_live = time_to_live
    sub_id = sub.subscription_identifier
    base: dict[str, Any] = {
        "vendor": "dma",
        "account": account,
        "subscription_id": sub_id,
        "name": sub.passback,
    }
    try:
        try:
            sub.entity_tag = client.update_time_to_live(sub_id, sub.time_to_live, sub.entity_tag or "")
        except PreconditionFailed:
            # someone (another refresh run) changed it since we listed: read it again; never shorten what
            # they extended, else retry once with the fresh entity tag
            fresh = client.get_subscription(sub_id)
            if fresh is None:
                return RefreshOutcome(
                    **base, outcome="expired", old_expires_at=old, new_expires_at=None, detail="gone (404)"
                )
            seconds = MAX_TIME_TO_LIVE if sub.time_to_live == 0 else sub.time_to_live
            wanted = clock() + timedelta(seconds=seconds)
            further = fresh.calculated_expiration_date
            if further is not None and further >= wanted:
                return RefreshOutcome(
                    **base,
                    outcome="refreshed",
                    old_expires_at=old,
                    new_expires_at=further,
                    detail="already extended further by another run (412 on our PUT)",
                )
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
    new = clock() + timedelta(seconds=sub.time_to_live)
    sub.calculated_expiration_date = new
    return RefreshOutcome(**base, outcome="refreshed", old_expires_at=old, new_expires_at=new)


def _kind(sub: Subscription) -> str | None:
    return sub.subject_resource_url.rsplit("/api/rest/", 1)[-1] if sub.subject_resource_url else None


def _version(account: str, sub: Subscription, outcome: RefreshOutcome) -> SubscriptionVersion:
    refreshed = outcome.outcome == "refreshed"
    return SubscriptionVersion(
        vendor="dma",
        account=account,
        subscription_id=outcome.subscription_id,
        name=outcome.name,
        kind=_kind(sub),
        observed=sub.model_dump(mode="json"),
        etag=sub.entity_tag,
        time_to_live=sub.time_to_live,
        expires_at=outcome.new_expires_at if refreshed else outcome.old_expires_at,
        previous_expires_at=outcome.old_expires_at,
        status="active" if refreshed else "expired",
        change="refreshed" if refreshed else "expired",
        detail=outcome.detail,
    )


def _live(con: duckdb.DuckDBPyConnection, account: str) -> list[dict[str, Any]]:
    """The subscriptions of this DMA the history holds as live."""
    rows = con.execute(
        "SELECT subscription_id, name, kind, expires_at FROM current_subscriptions "
        "WHERE vendor = 'dma' AND account = ? AND coalesce(status, '') NOT IN ('expired', 'deleted')",
        [account],
    ).fetchall()
    return [
        {"subscription_id": str(sub_id), "name": name, "kind": kind, "expires_at": as_utc(expires_at)}
        for sub_id, name, kind, expires_at in rows
    ]


def _known_names(con: duckdb.DuckDBPyConnection, account: str) -> dict[str, str]:
    """Name -> latest subscription id, of every DMA subscription of this account the history has seen."""
    rows = con.execute(
        "SELECT name, arg_max(subscription_id, valid_from) AS subscription_id FROM subscriptions "
        "WHERE vendor = 'dma' AND account = ? AND name IS NOT NULL GROUP BY name",
        [account],
    ).fetchall()
    return {str(name): str(sub_id) for name, sub_id in rows}


def _recreate(
    client: DMAClient,
    account: str,
    name: str,
    build: Callable[[], DesiredDMASubscription],
    old_id: str,
    clock: Clock,
) -> tuple[RefreshOutcome, SubscriptionVersion | None]:
    try:
        want = build()
        body = want.subscription.model_copy(update={"passback": name})
        sub = client.create_subscription(want.subject, body)
    except Exception as exc:  # the vendor refusing, or the password's Secret block missing
        return (
            RefreshOutcome(
                vendor="dma",
                account=account,
                subscription_id=old_id,
                name=name,
                outcome="failed",
                old_expires_at=None,
                new_expires_at=None,
                detail=f"could not recreate: {_reason(exc)}",
            ),
            None,
        )
    expires = sub.calculated_expiration_date or clock() + timedelta(seconds=sub.time_to_live)
    detail = f"replaces expired {old_id}"
    outcome = RefreshOutcome(
        vendor="dma",
        account=account,
        subscription_id=sub.subscription_identifier,
        name=want.name,
        outcome="recreated",
        old_expires_at=None,
        new_expires_at=expires,
        detail=detail,
    )
    version = SubscriptionVersion(
        vendor="dma",
        account=account,
        subscription_id=sub.subscription_identifier,
        name=want.name,
        kind=_kind(sub),
        desired=want.desired or want.model_dump(mode="json", exclude={"subscription": {"password"}}),
        observed=sub.model_dump(mode="json"),
        etag=sub.entity_tag,
        time_to_live=sub.time_to_live,
        expires_at=expires,
        status="active",
        change="recreated",
        detail=detail,
    )
    return outcome, version


# -- tokens -------------------------------------------------------------------------------------------------
def rotate_stream_token(client: StreamClient, account: str) -> TokenEvent:
    """Renew the Stream access token with the refresh token, which rotates it.

    The client's ``on_token`` callback stores the new refresh token (the block) before anything uses it;
    when that fails the error propagates and the event is ``failed``. A refused refresh token falls back to
    ``client_credentials`` and is recorded as ``issued``.
    """
    try:
        info = client.refresh_tokens()
    except Exception as exc:  # a failed save in on_token, or the vendor refusing
        return TokenEvent(vendor="stream", account=account, event="failed", detail=_reason(exc))
    if info.refresh_refused:
        event: Literal["issued", "rotated", "refreshed"] = "issued"
        detail = "refresh token refused; new tokens by client_credentials"
    elif info.grant_type == "refresh_token":
        event, detail = "rotated", "refresh token used and replaced"
    else:
        event, detail = "issued", "no stored refresh token; new tokens by client_credentials"
    if info.refresh_token_expires_at is not None:
        detail += f"; refresh token valid until {info.refresh_token_expires_at:%Y-%m-%dT%H:%M:%SZ}"
    return TokenEvent(
        vendor="stream", account=account, event=event, expires_at=info.expires_at, detail=detail
    )


def renew_thingspace_session(client: ThingSpaceClient, account: str) -> TokenEvent:
    """Fetch a new ThingSpace bearer token and VZ-M2M session (checks the credentials still work)."""
    auth = client.token_auth
    try:
        token = auth.refresh(stale=auth.token)
    except Exception as exc:
        return TokenEvent(vendor="thingspace", account=account, event="failed", detail=_reason(exc))
    return TokenEvent(
        vendor="thingspace",
        account=account,
        event="renewed",
        expires_at=datetime.fromtimestamp(token.expires_at, UTC),
        detail="bearer token and VZ-M2M session renewed (a session lives while used, 20 min idle)",
    )


def renew_equinix_token(client: EquinixClient, account: str) -> TokenEvent:
    """Fetch a new Equinix bearer token (client-credentials grant; there is no refresh token)."""
    auth = client.token_auth
    try:
        token = auth.refresh(stale=auth.token)
    except Exception as exc:
        return TokenEvent(vendor="equinix", account=account, event="failed", detail=_reason(exc))
    return TokenEvent(
        vendor="equinix",
        account=account,
        event="renewed",
        expires_at=datetime.fromtimestamp(token.expires_at, UTC),
        detail="bearer token renewed (client_credentials)",
    )


def _reason(exc: Exception) -> str:
    from streamkeeper.vendors.http import redact

    return redact(f"{type(exc).__name__}: {exc}")[:500]
