"""What every vendor adapter does: read what the vendor holds, state what the spec wants, carry out changes.

An adapter serves one connection of the spec (a credentials block, and for ThingSpace a billing account)
with a client built from it. The generic planner (`streamkeeper.provision.planner`) asks it for both
sides as `Resource`s, pairs them with `match`, compares them with `compare`, and lets `finalize` add the
vendor's rules; the applier (`streamkeeper.provision.applier`) runs `execute` stage by stage.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, ClassVar

from pydantic import SecretStr

from streamkeeper.errors import ConfigError
from streamkeeper.provision.model import Change, FieldDiff, Outcome, Resource, ResourceType, Result
from streamkeeper.provision.state import Known
from streamkeeper.store.records import Change as HistoryChange
from streamkeeper.store.records import SubscriptionVersion
from streamkeeper.vendors.http import VendorClient, register_secret

SecretSource = Callable[[str], Any]
"""Resolves a secret block name to its value (a string, or an object such as ``{username, password}``).

The flow loads Prefect ``Secret`` blocks; tests pass a dict's ``__getitem__``.
"""

Pair = tuple[Resource | None, Resource | None]


class Adapter(ABC):
    """Base of the vendor adapters.

    Args:
        connection: the spec's connection entry.
        client: the vendor client built from the connection's block.
        secrets: resolves secret block names; needed only to apply creates and updates that send one.

    Class attributes:
        vendor: the vendor name.
        mutable: per resource type, the fields the vendor can change in place; a difference in any other
            field means a replacement (None: every field is mutable).
    """

    vendor: ClassVar[str]
    mutable: ClassVar[dict[ResourceType, frozenset[str] | None]] = {"subscription": None, "target": None}

    def __init__(self, connection: Any, client: VendorClient, secrets: SecretSource | None = None) -> None:
        self.connection = connection
        self.client = client
        self.secrets = secrets
        self._secret_cache: dict[str, Any] = {}
        self._secret_lock = threading.Lock()

    @property
    def account(self) -> str:
        """The history's ``account`` for this connection: the credentials block name."""
        return str(self.connection.connection)

    # -- planning ------------------------------------------------------------------------------------------
    @abstractmethod
    def read(self) -> list[Resource]:
        """Everything the vendor holds for this connection, as resources (no write call)."""

    @abstractmethod
    def desired(self, actual: list[Resource]) -> tuple[list[Resource], list[str]]:
        """What the spec wants, as resources; and the problems found resolving it (plan errors)."""

    def match(self, desired: list[Resource], actual: list[Resource], known: Known | None) -> list[Pair]:
        """Pair each desired resource with the vendor's, by `key`, else by the id the history knows.

        Several vendor resources with one key (twins): the one the history knows wins, the others stay
        unmatched (reported, or deleted with prune).
        """
        remaining: dict[tuple[str, str], list[Resource]] = {}
        by_id: dict[tuple[str, str | None], Resource] = {}
        for a in actual:
            remaining.setdefault((a.type, a.key), []).append(a)
            by_id[(a.type, a.id)] = a
        taken: set[tuple[str, str | None]] = set()
        pairs: list[Pair] = []
        unmatched: list[Resource] = []
        for d in desired:
            entry = known.by_name(self.vendor, self.account, d.type, d.name) if known else None
            candidates = [a for a in remaining.get((d.type, d.key), []) if (a.type, a.id) not in taken]
            chosen = next((a for a in candidates if entry and a.id == entry.subscription_id), None)
            chosen = chosen or (candidates[0] if candidates else None)
            if chosen is not None:
                taken.add((chosen.type, chosen.id))
                pairs.append((d, chosen))
            else:
                unmatched.append(d)
        for d in unmatched:
            entry = known.by_name(self.vendor, self.account, d.type, d.name) if known else None
            found = by_id.get((d.type, entry.subscription_id)) if entry else None
            if found is not None and (found.type, found.id) not in taken:
                taken.add((found.type, found.id))
                pairs.append((d, found))
            else:
                pairs.append((d, None))
        pairs.extend((None, a) for a in actual if (a.type, a.id) not in taken)
        return pairs

    def compare(self, desired: Resource, actual: Resource, known: Known | None) -> list[FieldDiff]:
        """The fields that differ; write-only ones against the spec last applied to this resource."""
        diffs = []
        for field, want in desired.fields.items():
            if field in desired.ignore:
                continue
            have = actual.fields.get(field)
            if want != have:
                diffs.append(FieldDiff(field=field, before=have, after=want))
        entry = known.by_id(self.vendor, self.account, actual.id) if known else None
        last = entry.desired.get("write_only") if entry is not None and entry.desired else None
        if isinstance(last, dict):  # applied by streamkeeper: its write-only references are on record
            for field in sorted(set(last) | set(desired.write_only)):
                before, after = last.get(field), desired.write_only.get(field)
                if before != after:
                    diffs.append(FieldDiff(field=field, before=before, after=after, write_only=True))
        return diffs

    def needs_replace(self, desired: Resource, diffs: list[FieldDiff]) -> bool:
        """Whether these differences cannot be changed in place."""
        mutable = self.mutable.get(desired.type)
        return mutable is not None and any(d.field not in mutable for d in diffs)

    def finalize(self, changes: list[Change], unmanaged: list[Resource], prune: bool) -> list[str]:
        """Apply the vendor's rules to the planned changes (may adjust them); returns plan errors."""
        return []

    def vanished(self, known: Known, actual: list[Resource]) -> list[Resource]:
        """What the history holds as current for this connection and the vendor no longer does."""
        present = {(a.type, a.id) for a in actual}
        return [
            Resource(
                vendor=self.vendor,
                account=self.account,
                type=k.type,
                name=k.name,
                id=k.subscription_id,
                key=k.subscription_id,
                kind=k.kind,
            )
            for k in known.resources
            if k.vendor == self.vendor
            and k.account == self.account
            and (k.type, k.subscription_id) not in present
        ]

    # -- applying ------------------------------------------------------------------------------------------
    def prepare(self, changes: list[Change]) -> None:  # noqa: B027 - a hook, empty by default
        """Called with every change of the connection's plan (``noop`` included) before applying."""

    def stage(self, change: Change) -> int:
        """Changes run stage by stage (lowest first), in parallel within a stage: deletes first."""
        return 0 if change.action == "delete" else 2

    @abstractmethod
    def execute(self, change: Change) -> Outcome:
        """Carry out one change at the vendor; raises on failure."""

    def after(self, outcomes: list[Outcome]) -> list[Outcome]:
        """Clean-up once every stage ran (e.g. targets a replacement left behind)."""
        return []

    # -- helpers for subclasses ----------------------------------------------------------------------------
    def secret(self, block: str, key: str | None = None) -> SecretStr:
        """The secret held by a secret block (a string, or the `key` of an object), registered for redaction."""
        with self._secret_lock:
            if block not in self._secret_cache:
                if self.secrets is None:
                    raise ConfigError(f"secret block {block!r} is needed, but no secret source was given")
                try:
                    self._secret_cache[block] = self.secrets(block)
                except (KeyError, ValueError) as exc:
                    raise ConfigError(f"cannot read secret block {block!r}: {exc}") from None
            value = self._secret_cache[block]
        if isinstance(value, dict):
            if key is None or key not in value:
                raise ConfigError(f"secret block {block!r} holds an object without {key or 'a value'!r}")
            value = value[key]
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if not isinstance(value, str) or not value:
            raise ConfigError(f"secret block {block!r} does not hold a text secret")
        register_secret(value)
        return SecretStr(value)

    def outcome(
        self, change: Change, result: Result, *versions: SubscriptionVersion, **extra: Any
    ) -> Outcome:
        subscription_id = extra.pop("subscription_id", None) or change.subscription_id
        if versions and subscription_id is None:
            subscription_id = versions[-1].subscription_id
        return Outcome(
            action=change.action,
            vendor=change.vendor,
            account=change.account,
            type=change.type,
            name=change.name,
            subscription_id=subscription_id,
            result=result,
            versions=list(versions),
            **extra,
        )

    def version(
        self,
        change: HistoryChange,
        source: Change,
        subscription_id: str,
        observed: dict[str, Any] | None,
        *,
        kind: str | None = None,
        etag: str | None = None,
        time_to_live: int | None = None,
        expires_at: datetime | None = None,
        status: str | None = None,
        detail: str | None = None,
    ) -> SubscriptionVersion:
        """A history row for `source`: the spec side (secrets never in it) and what the vendor holds."""
        d = source.desired
        desired = None
        if d is not None and change != "deleted":
            # the write-only references (secret block names) on record: compared by the next plan
            desired = {**(d.desired or {}), "write_only": d.write_only}
        return SubscriptionVersion(
            vendor=self.vendor,
            account=self.account,
            subscription_id=subscription_id,
            name=source.name,
            kind=kind or (d.kind if d else None) or (source.actual.kind if source.actual else None),
            desired=desired,
            observed=observed,
            etag=etag,
            time_to_live=time_to_live,
            expires_at=expires_at,
            status=status or ("deleted" if change == "deleted" else "active"),
            change=change,
            detail=detail,
        )

    def adopted(self, change: Change) -> list[SubscriptionVersion]:
        """The ``adopted`` row of a change that takes over what the vendor already held (else nothing)."""
        a = change.actual
        if not change.adopt or a is None or a.id is None:
            return []
        return [self.version("adopted", change, a.id, a.observed, kind=a.kind, etag=a.etag)]


def by_name(resources: Iterable[Resource], type: ResourceType = "subscription") -> dict[str, Resource]:
    return {r.name: r for r in resources if r.type == type and r.name is not None}


__all__ = ["Adapter", "Pair", "SecretSource", "by_name"]
