"""Reading what a vendor holds, as cheaply as the vendor allows, through the provisioning adapters.

The audit sees a vendor exactly as ``plan`` does: each connection's provisioning adapter turns the vendor's
answers into `Resource`s (same ids, names, accounts and compared fields), so drift against the spec is the
planner's own comparison and the snapshots line up with the history rows ``apply`` writes.

The DMA has conditional GETs: its list is read with ``If-None-Match`` (a 304 when nothing changed since the
last read by the audit or the refresh, and then the cached list is what the DMA holds), and each listed
subscription carries its entity tag, so an unchanged one needs no request of its own. Only a listed
subscription without an entity tag is read on its own, with ``If-None-Match`` and the previous snapshot's
ETag. The other vendors have no ETags: the adapter's plain reads, and the audit stores a body only when
its hash differs from the previous snapshot's.

`read_vendor` makes the first read and says, where the vendor can, which version of its holdings it saw
(the DMA list's ETag): an audit whose inputs all match the previous audit's need not look further.
`observe` turns that read into snapshot items and plan resources.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from streamkeeper.keepalive import DMAListing, cached_list_etag, list_dma
from streamkeeper.provision.adapters.base import Adapter
from streamkeeper.provision.adapters.dma import DMAAdapter
from streamkeeper.provision.model import Resource
from streamkeeper.store import HistoryStore
from streamkeeper.vendors.http import redact

VOLATILE: dict[str, tuple[str, ...]] = {
    # a DMA subscription's expiry and entity tag move on every refresh
    "dma": ("entity_tag", "calculated_expiration_date"),
    # delivery counters and status move with traffic
    "thingspace": (
        "laststreamingstatus",
        "laststreamingtime",
        "networkfailures",
        "streamfailures",
        "configurationfailures",
        "lastupdated",
    ),
}
"""Per vendor, body fields that change without anyone changing the subscription; drift ignores them."""


class Observed(BaseModel):
    """One thing a vendor holds, as the vendor returned it (secrets masked).

    Attributes:
        resource: ``subscription`` or ``target``.
        id: the vendor's id for it.
        name: the name it carries at the vendor, when it carries one.
        body: the vendor's representation (JSON-ready, secrets masked).
        etag: the vendor's ETag, when it has them.
        volatile: body fields that change without anyone changing the thing; drift ignores them.
        fetched_not_modified: its own conditional GET answered 304.
    """

    resource: str
    id: str
    name: str | None = None
    body: dict[str, Any]
    etag: str | None = None
    volatile: tuple[str, ...] = ()
    fetched_not_modified: bool = False

    @property
    def body_hash(self) -> str:
        return body_hash(self.body)

    def comparable(self) -> dict[str, Any]:
        """The body without its volatile fields."""
        return {k: v for k, v in self.body.items() if k not in self.volatile}


class Observation(BaseModel):
    """Everything one vendor connection holds, read in one go, as snapshot items and as plan resources."""

    vendor: str
    account: str
    items: list[Observed] = Field(default_factory=list)
    resources: list[Resource] = Field(default_factory=list)
    list_not_modified: bool = False
    version: str | None = None
    """What the vendor says names this content (the DMA list's ETag when every listed subscription
    carries its own entity tag, so that nothing else was read); None when it cannot say."""


PreviousEtags = Mapping[tuple[str, str], str]
"""(resource, id) -> the ETag of the previous snapshot."""


def canonical(body: Any) -> str:
    """JSON text of a body, keys sorted, with every registered secret masked."""
    return redact(json.dumps(body, sort_keys=True, default=str, separators=(",", ":")))


def body_hash(body: Any) -> str:
    return hashlib.sha256(canonical(body).encode()).hexdigest()[:32]


@dataclass
class VendorRead:
    """A connection's first read: the DMA's conditional list, or the other vendors' whole read.

    Attributes:
        version: what the vendor says names its current holdings (the DMA list's ETag), or None.
    """

    version: str | None
    listing: DMAListing | None = None
    resources: list[Resource] | None = None


def read_vendor(adapter: Adapter, store: HistoryStore) -> VendorRead:
    """The first read of an audit: one conditional request where the vendor has ETags, else the full read."""
    if isinstance(adapter, DMAAdapter):
        with store.reader() as con:
            etag = cached_list_etag(con, adapter.account)
        listing = list_dma(adapter.client, store, adapter.account, etag)
        return VendorRead(version=listing.etag, listing=listing)
    return VendorRead(version=None, resources=adapter.read())


def observe(
    adapter: Adapter, store: HistoryStore, read: VendorRead, previous: PreviousEtags | None = None
) -> Observation:
    """What the adapter's connection holds at the vendor, from its first read (and what else it needs)."""
    version = None
    if isinstance(adapter, DMAAdapter) and read.listing is not None:
        resources, fresh304, complete = _read_dma(adapter, read.listing, previous or {})
        version = read.version if complete else None
    else:
        resources, fresh304 = list(read.resources or []), set()
    volatile = VOLATILE.get(adapter.vendor, ())
    items = [
        Observed(
            resource=r.type,
            id=str(r.id),
            name=r.name,
            body=json.loads(canonical(r.observed or {})),
            etag=r.etag,
            volatile=volatile,
            fetched_not_modified=r.id in fresh304,
        )
        for r in resources
        if r.id is not None
    ]
    return Observation(
        vendor=adapter.vendor,
        account=adapter.account,
        items=items,
        resources=resources,
        list_not_modified=read.listing is not None and read.listing.not_modified,
        version=version,
    )


def _read_dma(
    adapter: DMAAdapter, listing: DMAListing, previous: PreviousEtags
) -> tuple[list[Resource], set[str], bool]:
    """The listed subscriptions as resources, the ids a conditional GET found unchanged, and whether the
    list alone said everything (every subscription listed with its entity tag)."""
    subscriptions = list(listing.subscriptions)
    unchanged: set[str] = set()
    complete = True
    for i, sub in enumerate(subscriptions):
        if sub.entity_tag is not None:
            continue
        complete = False
        prior = previous.get(("subscription", sub.subscription_identifier))
        fresh = adapter.client.get_subscription(sub.subscription_identifier, etag=prior)
        if fresh is None:  # 304: as the previous snapshot saw it
            unchanged.add(sub.subscription_identifier)
            subscriptions[i] = sub.model_copy(update={"entity_tag": prior})
        else:
            subscriptions[i] = fresh
    # the adapter's own conversion, so that the plan compares exactly what `plan` would
    return [adapter._actual(s) for s in subscriptions], unchanged, complete


def preread(adapter: Adapter, resources: list[Resource]) -> Adapter:
    """The adapter, answering `read()` with what the audit already read (planning then costs no request)."""
    twin = copy.copy(adapter)
    twin.read = lambda: list(resources)  # type: ignore[method-assign]
    return twin
