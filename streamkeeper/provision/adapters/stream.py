"""Stream feature-flag targeting: a context in a flag's targeting or in a segment is its own identity.

Stream has no event subscription API; what a partner declares there is which merchant contexts a flag or
segment targets (e.g. put a merchant in the ``beta-merchants`` segment). Adding and removing are set
operations (repeating one changes nothing), so a lost answer is simply sent again.

Reading: ``GET /contexts`` answers at most 50 contexts. One search lists the partner's contexts; when it
is full, each context the spec names is also searched by key. A partner with more than 50 contexts may
so hold some this plan does not see (they are not reported as unmanaged).
"""

from __future__ import annotations

from typing import Any, ClassVar

from streamkeeper.provision.adapters.base import Adapter
from streamkeeper.provision.model import Change, Outcome, Resource, ResourceType
from streamkeeper.spec import StreamConnection, StreamTargetingSpec
from streamkeeper.store.records import SubscriptionVersion
from streamkeeper.vendors.stream import ContextInfo, StreamClient

SEARCH_LIMIT = 50  # the seed's maximum


def targeting_id(kind: str, context: str, where: str, key: str) -> str:
    """The id of a context in a flag's targeting or a segment (``where`` is ``flag`` or ``segment``):
    ``organization:org-1@segment:beta-merchants``. Onboarding records what it targets under the same id."""
    return f"{kind}:{context}@{where}:{key}"


class StreamAdapter(Adapter):
    vendor = "stream"
    mutable: ClassVar[dict[ResourceType, frozenset[str] | None]] = {
        "subscription": frozenset(),
        "target": None,
    }

    connection: StreamConnection
    client: StreamClient

    def __init__(self, connection: StreamConnection, client: StreamClient, **kwargs: Any) -> None:
        super().__init__(connection, client, **kwargs)
        self._specs = {t.name: t for t in connection.targeting}

    def read(self) -> list[Resource]:
        found: dict[tuple[str | None, str | None], ContextInfo] = {
            (c.kind, c.key): c for c in self.client.search_contexts(limit=SEARCH_LIMIT)
        }
        if len(found) >= SEARCH_LIMIT:  # the list may be cut: look up each context of the spec
            wanted: set[tuple[str | None, str | None]] = {
                (t.kind, t.context) for t in self.connection.targeting
            }
            for kind, key in sorted(wanted - set(found), key=str):
                for c in self.client.search_contexts(q=key, kind=kind, limit=SEARCH_LIMIT):
                    found.setdefault((c.kind, c.key), c)
        out = []
        for (kind, key), info in sorted(found.items(), key=lambda kv: (kv[0][0] or "", kv[0][1] or "")):
            if kind is None or key is None:
                continue
            for where, targets in (("flag", _extra(info, "flags")), ("segment", _extra(info, "segments"))):
                for target in targets:
                    out.append(
                        self._resource(kind, key, where, target, observed=info.model_dump(mode="json"))
                    )
        return out

    def _resource(
        self, kind: str, context: str, where: str, target: str, observed: dict[str, Any] | None = None
    ) -> Resource:
        identity = targeting_id(kind, context, where, target)
        return Resource(
            vendor=self.vendor,
            account=self.account,
            id=identity,
            key=identity,
            kind=where,
            scope=target,
            fields={"context": context, "kind": kind, where: target},
            observed=observed,
        )

    def desired(self, actual: list[Resource]) -> tuple[list[Resource], list[str]]:
        out = []
        for t in self.connection.targeting:
            where, target = ("flag", t.flag) if t.flag else ("segment", t.segment)
            assert target is not None
            resource = self._resource(t.kind, t.context, where, target)
            resource.name = t.name
            resource.desired = t.desired()
            out.append(resource)
        return out, []

    def execute(self, change: Change) -> Outcome:
        adopted = self.adopted(change)
        if change.action == "adopt":
            return self.outcome(change, "adopted", *adopted)
        if change.action == "create":
            return self.outcome(change, "created", self._add(change))
        if change.action == "delete":
            return self.outcome(change, "deleted", self._remove(change))
        removed = self._remove(change)  # replace: the name now means another context, flag or segment
        added = self._add(change)
        return self.outcome(change, "replaced", removed, added, subscription_id=added.subscription_id)

    def _add(self, change: Change) -> SubscriptionVersion:
        spec: StreamTargetingSpec = self._specs[change.name or ""]
        context = [{"key": spec.context, "kind": spec.kind}]
        if spec.flag:
            answer = self.client.add_flag_contexts(spec.flag, context)
        else:
            assert spec.segment is not None
            answer = self.client.add_segment_contexts(spec.segment, context)
        d = change.desired
        assert d is not None and d.id is not None
        observed = {"target": answer.key, "context": {"key": spec.context, "kind": spec.kind}}
        return self.version("created", change, d.id, observed, kind=d.kind)

    def _remove(self, change: Change) -> SubscriptionVersion:
        a = change.actual
        assert a is not None and a.id is not None
        context = [{"key": a.fields["context"], "kind": a.fields["kind"]}]
        if "flag" in a.fields:
            self.client.remove_flag_contexts(a.fields["flag"], context)
        else:
            self.client.remove_segment_contexts(a.fields["segment"], context)
        return self.version("deleted", change, a.id, a.observed, kind=a.kind)


def _extra(info: ContextInfo, name: str) -> list[str]:
    value = (info.model_extra or {}).get(name) or []
    return [str(v) for v in value] if isinstance(value, list) else []


__all__ = ["StreamAdapter", "targeting_id"]
