"""What the history store says streamkeeper manages: the current subscription ids and their names.

The planner uses it four ways: a vendor resource found by name but absent from the history is *adopted*
(recorded) rather than silently taken over; a vendor that keeps no name (Equinix) is matched by the id the
history remembers for the name; references the vendor never returns (secret block names) are compared
with the spec that was last applied; and what another flow owns (its ``owner``, e.g. the feature-flag
targeting onboard-organization made) is left to that flow: neither "not in the spec" nor pruned.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from streamkeeper.provision.model import ResourceType
from streamkeeper.store import HistoryStore


class KnownResource(BaseModel):
    """The current version of one subscription (or target) in the history."""

    vendor: str
    account: str
    subscription_id: str
    type: ResourceType = "subscription"
    name: str | None = None
    kind: str | None = None
    desired: dict[str, Any] | None = None  # the last spec applied to it
    owner: str | None = None
    """The flow that owns it when not the spec (e.g. ``onboard-organization``): never drift, never pruned."""


class Known(BaseModel):
    """Index of the history's current subscriptions, by id and by name."""

    resources: list[KnownResource] = Field(default_factory=list)

    def model_post_init(self, context: Any) -> None:
        self._by_id = {(r.vendor, r.account, r.subscription_id): r for r in self.resources}
        self._by_name: dict[tuple[str, str, str, str], KnownResource] = {}
        self._by_connection: dict[tuple[str, str], list[KnownResource]] = {}
        self._parts: dict[tuple[str, str], Known] = {}
        for r in self.resources:
            if r.name:
                self._by_name[(r.vendor, r.account, r.type, r.name)] = r
            self._by_connection.setdefault((r.vendor, r.account), []).append(r)

    def by_id(self, vendor: str, account: str, subscription_id: str | None) -> KnownResource | None:
        if subscription_id is None:
            return None
        return self._by_id.get((vendor, account, subscription_id))

    def by_name(self, vendor: str, account: str, type: str, name: str | None) -> KnownResource | None:
        if name is None:
            return None
        return self._by_name.get((vendor, account, type, name))

    def of(self, vendor: str, account: str) -> Known:
        """The part about one connection (what a connection's plan needs)."""
        key = (vendor, account)
        if key not in self._parts:
            self._parts[key] = Known(resources=self._by_connection.get(key, []))
        return self._parts[key]


TARGET_KIND = "ts.target"
"""The history ``kind`` of a ThingSpace target (the vendor's own ``kind`` value)."""


def known_from_store(store: HistoryStore, vendor: str | None = None, account: str | None = None) -> Known:
    """Read the current subscriptions (and their last applied spec) from the history store."""
    sql = """
        WITH last_desired AS (
            SELECT vendor, account, subscription_id, arg_max(desired, valid_from) AS desired
            FROM subscriptions WHERE desired IS NOT NULL GROUP BY ALL
        )
        SELECT c.vendor, c.account, c.subscription_id, c.name, c.kind, d.desired, c.owner
        FROM current_subscriptions AS c
        LEFT JOIN last_desired AS d USING (vendor, account, subscription_id)
        WHERE (? IS NULL OR c.vendor = ?) AND (? IS NULL OR c.account = ?)
    """
    frame = store.query(sql, [vendor, vendor, account, account])
    resources = []
    for row in frame.itertuples(index=False):
        desired = row.desired
        if isinstance(desired, str):
            desired = json.loads(desired)
        resources.append(
            KnownResource(
                vendor=row.vendor,
                account=row.account,
                subscription_id=row.subscription_id,
                type="target" if row.vendor == "thingspace" and row.kind == TARGET_KIND else "subscription",
                name=row.name if isinstance(row.name, str) else None,
                kind=row.kind if isinstance(row.kind, str) else None,
                desired=desired if isinstance(desired, dict) else None,
                owner=row.owner if isinstance(row.owner, str) else None,
            )
        )
    return Known(resources=resources)


__all__ = ["TARGET_KIND", "Known", "KnownResource", "known_from_store"]
