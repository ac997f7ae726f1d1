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
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from streamkeeper.keepalive import list_dma
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


PreviousEtags = Mapping[tuple[str, str], str]
"""(resource, id) -> the ETag of the previous snapshot."""


def canonical(body: Any) -> str:
    """JSON text of a body, keys sorted, with every registered secret masked."""
    return redact(json.dumps(body, sort_keys=True, default=str, separators=(",", ":")))


def body_hash(body: Any) -> str:
    return hashlib.sha256(canonical(body).encode()).hexdigest()[:32]


def observe(adapter: Adapter, store: HistoryStore, previous: PreviousEtags | None = None) -> Observation:
    """What the adapter's connection holds at the vendor, read the cheapest way the vendor allows."""
    if isinstance(adapter, DMAAdapter):
        resources, not_modified, fresh304 = _read_dma(adapter, store, previous or {})
    else:
        resources, not_modified, fresh304 = adapter.read(), False, set()
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
        list_not_modified=not_modified,
    )


def _read_dma(
    adapter: DMAAdapter, store: HistoryStore, previous: PreviousEtags
) -> tuple[list[Resource], bool, set[str]]:
    subscriptions, not_modified = list_dma(adapter.client, store, adapter.account)
    unchanged: set[str] = set()
    for i, sub in enumerate(subscriptions):
        if sub.entity_tag is not None:
            continue
        prior = previous.get(("subscription", sub.subscription_identifier))
        fresh = adapter.client.get_subscription(sub.subscription_identifier, etag=prior)
        if fresh is None:  # 304: as the previous snapshot saw it
            unchanged.add(sub.subscription_identifier)
            sub.entity_tag = prior
        else:
            subscriptions[i] = fresh
    # the adapter's own conversion, so that the plan compares exactly what `plan` would
    return [adapter._actual(s) for s in subscriptions], not_modified, unchanged


def preread(adapter: Adapter, resources: list[Resource]) -> Adapter:
    """The adapter, answering `read()` with what the audit already read (planning then costs no request)."""
    twin = copy.copy(adapter)
    twin.read = lambda: list(resources)  # type: ignore[method-assign]
    return twin
