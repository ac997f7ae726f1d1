"""The plan's vocabulary: resources as the spec wants them and as the vendor holds them, changes, outcomes.

A `Resource` is one subscription (or ThingSpace target) normalised so that the spec's side and the
vendor's side compare field by field. A `Change` pairs the two with an action; a `Plan` is the changes of
one or more connections; an `Outcome` is what applying one change did, with the history rows it produced.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, Field

from streamkeeper.store.records import SubscriptionVersion

Action = Literal["create", "update", "replace", "delete", "adopt", "noop"]
ACTIONS: tuple[Action, ...] = ("create", "update", "replace", "delete", "adopt", "noop")
ResourceType = Literal["subscription", "target"]

_SYMBOL = {"create": "+", "update": "~", "replace": "-/+", "delete": "-", "adopt": "<=", "noop": " "}


class Resource(BaseModel):
    """A subscription or target, from the spec (`desired`) or from the vendor (`observed`).

    Attributes:
        vendor: ``plt``, ``dma``, ``stream``, ``thingspace`` or ``equinix``.
        account: the connection (credentials block name); the ``account`` column of the history.
        type: ``subscription``, or ``target`` (ThingSpace).
        name: the stable name; None for a vendor resource no spec name points at.
        id: the vendor's id (None for a resource still to create).
        key: what the adapter matches the spec and the vendor on (the name the vendor carries, or the
            resource's own identity).
        kind: the history's ``kind`` (DMA subject, ThingSpace streamkind, PLT stream name, ...).
        scope: where it lives inside the connection, for display (tenant, billing account, ...).
        fields: the compared fields, normalised the same way on both sides.
        ignore: fields the spec leaves to the vendor (not compared).
        write_only: references the vendor never returns (secret block names): compared with the last
            applied spec in the history, never with the vendor.
        desired: the spec entry as JSON (block names, never secrets).
        observed: the vendor's answer as JSON (secrets masked).
        owner: the flow the history records as its owner, when not the spec (e.g. ``onboard-organization``).
    """

    vendor: str
    account: str
    type: ResourceType = "subscription"
    name: str | None = None
    id: str | None = None
    key: str
    kind: str | None = None
    scope: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    ignore: list[str] = Field(default_factory=list)
    write_only: dict[str, Any] = Field(default_factory=dict)
    desired: dict[str, Any] | None = None
    observed: dict[str, Any] | None = None
    etag: str | None = None
    owner: str | None = None

    def label(self) -> str:
        return self.name or f"(id {self.id})"


class FieldDiff(BaseModel):
    """One field that differs: what the vendor holds (`before`) and what the spec wants (`after`)."""

    field: str
    before: Any = None
    after: Any = None
    write_only: bool = False  # compared with the last applied spec, not with the vendor

    def describe(self) -> str:
        text = "; ".join(_leaf_diffs(self.field, self.before, self.after))
        return text + " (not readable at the vendor; vs. the last apply)" if self.write_only else text


class Change(BaseModel):
    """What to do about one resource."""

    action: Action
    vendor: str
    account: str
    type: ResourceType = "subscription"
    name: str | None = None
    subscription_id: str | None = None
    kind: str | None = None
    scope: str | None = None
    diffs: list[FieldDiff] = Field(default_factory=list)
    adopt: bool = False  # the vendor holds it, the history does not: recorded as adopted first
    reason: str | None = None
    desired: Resource | None = None
    actual: Resource | None = None

    @property
    def label(self) -> str:
        return self.name or f"(id {self.subscription_id})"

    def describe(self) -> str:
        """One line: action, where, what, and the differing fields."""
        head = f"{_SYMBOL[self.action]:>3} {self.action:<7} {self.vendor}/{self.account} {self.type} {self.label}"
        detail = "; ".join(d.describe() for d in self.diffs)
        if self.adopt and self.action != "adopt":
            detail = "adopt, then " + (detail or self.action)
        if self.reason:
            detail = f"{detail} ({self.reason})" if detail else self.reason
        return f"{head}: {detail}" if detail else head


class Plan(BaseModel):
    """The changes that would make the vendors match the spec.

    Attributes:
        changes: one per declared resource and per resource to delete (``noop`` ones included).
        unmanaged: what the vendors hold that no spec entry names, left alone (deleted with ``prune``).
        owned_elsewhere: what the vendors hold that another flow owns (the history's ``owner``, e.g. the
            feature-flag targeting onboard-organization made): that flow's to keep, never pruned.
        vanished: what the history holds as current but the vendor no longer does (deleted or expired
            behind streamkeeper's back): applying records each as deleted, without a vendor call.
        errors: problems found while planning; a plan with errors is not applied.
        prune: whether resources the spec omits are deleted.
    """

    changes: list[Change] = Field(default_factory=list)
    unmanaged: list[Resource] = Field(default_factory=list)
    owned_elsewhere: list[Resource] = Field(default_factory=list)
    vanished: list[Resource] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    prune: bool = False

    def pending(self) -> list[Change]:
        """The changes that do something (everything but ``noop``)."""
        return [c for c in self.changes if c.action != "noop"]

    def counts(self) -> dict[str, int]:
        counted = Counter(c.action for c in self.changes)
        return {action: counted.get(action, 0) for action in ACTIONS}

    @property
    def exit_code(self) -> int:
        """``streamkeeper plan``'s exit code: 1 errors, 2 changes pending, 0 nothing to do."""
        if self.errors:
            return 1
        return 2 if self.pending() else 0

    def summary(self) -> str:
        c = self.counts()
        text = (
            f"{c['create']} to create, {c['update']} to update, {c['replace']} to replace, "
            f"{c['delete']} to delete, {c['adopt']} to adopt, {c['noop']} unchanged"
        )
        if self.unmanaged:
            text += f"; {len(self.unmanaged)} not in the spec (left alone{'' if self.prune else ' without --prune'})"
        if self.owned_elsewhere:
            owners = ", ".join(sorted({r.owner or "?" for r in self.owned_elsewhere}))
            text += f"; {len(self.owned_elsewhere)} owned by {owners} (left alone)"
        if self.vanished:
            text += f"; {len(self.vanished)} gone at the vendor (recorded as deleted on apply)"
        if self.errors:
            text += f"; {len(self.errors)} error(s)"
        return text

    def render(self, limit: int = 200) -> str:
        """The plan as text: every pending change with its field diffs, what is left alone, errors."""
        lines = []
        pending = self.pending()
        for change in pending[:limit]:
            lines.append(change.describe())
        if len(pending) > limit:
            lines.append(f"... and {len(pending) - limit} more changes")
        for resource in self.unmanaged[:limit]:
            lines.append(
                f"  ! not in spec {resource.vendor}/{resource.account} {resource.type} "
                f"{resource.label()} ({resource.kind or ''}): left alone; --prune deletes it"
            )
        for resource in self.owned_elsewhere[:limit]:
            lines.append(
                f"  = owned by {resource.owner} {resource.vendor}/{resource.account} {resource.type} "
                f"{resource.label()} ({resource.kind or ''}): left alone, also with --prune"
            )
        for resource in self.vanished[:limit]:
            lines.append(
                f"  x gone at the vendor {resource.vendor}/{resource.account} {resource.type} "
                f"{resource.label()}: the history records it as deleted on apply"
            )
        for error in self.errors:
            lines.append(f"error: {error}")
        lines.append(("Plan: " if not self.errors else "Plan (not applicable): ") + self.summary())
        return "\n".join(lines)

    def rows(self) -> list[dict[str, Any]]:
        """A table of the pending changes (for the Prefect artifact and reports)."""
        return [
            {
                "action": c.action + (" (adopt)" if c.adopt and c.action != "adopt" else ""),
                "vendor": c.vendor,
                "account": c.account,
                "type": c.type,
                "name": c.label,
                "changes": "; ".join(d.describe() for d in c.diffs) or (c.reason or ""),
            }
            for c in self.pending()
        ]

    def split(self) -> dict[tuple[str, str], Plan]:
        """The plan of each connection, by (vendor, account)."""
        parts: dict[tuple[str, str], Plan] = {}

        def part(vendor: str, account: str) -> Plan:
            return parts.setdefault((vendor, account), Plan(prune=self.prune))

        for c in self.changes:
            part(c.vendor, c.account).changes.append(c)
        for r in self.unmanaged:
            part(r.vendor, r.account).unmanaged.append(r)
        for r in self.owned_elsewhere:
            part(r.vendor, r.account).owned_elsewhere.append(r)
        for r in self.vanished:
            part(r.vendor, r.account).vanished.append(r)
        return parts

    @classmethod
    def merge(cls, plans: list[Plan]) -> Plan:
        return cls(
            changes=[c for p in plans for c in p.changes],
            unmanaged=[r for p in plans for r in p.unmanaged],
            owned_elsewhere=[r for p in plans for r in p.owned_elsewhere],
            vanished=[r for p in plans for r in p.vanished],
            errors=[e for p in plans for e in p.errors],
            prune=any(p.prune for p in plans),
        )


Result = Literal["created", "updated", "replaced", "deleted", "adopted", "failed", "skipped"]


class Outcome(BaseModel):
    """What applying one change did, and the history rows it produced."""

    action: Action
    vendor: str
    account: str
    type: ResourceType = "subscription"
    name: str | None = None
    subscription_id: str | None = None
    result: Result
    detail: str | None = None
    versions: list[SubscriptionVersion] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.result not in ("failed", "skipped")


def _leaf_diffs(path: str, before: Any, after: Any) -> list[str]:
    """``a.b: x -> y`` for each differing leaf of two nested objects (so a long body shows what changed)."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key in sorted(set(before) | set(after), key=str):
            if before.get(key) != after.get(key):
                out.extend(_leaf_diffs(f"{path}.{key}", before.get(key), after.get(key)))
        return out
    return [f"{path}: {_short(before)} -> {_short(after)}"]


def _short(value: Any, limit: int = 80) -> str:
    if value is None:
        return "(none)"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = [
    "ACTIONS",
    "Action",
    "Change",
    "FieldDiff",
    "Outcome",
    "Plan",
    "Resource",
    "ResourceType",
    "Result",
]
