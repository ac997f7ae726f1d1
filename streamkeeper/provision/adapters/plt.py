"""PLT streams started for tenants: a stream and tenant pair is its own identity.

PLT offers each partner a list of streams per tenant; "subscribing" is starting one for its tenant, and
deleting is stopping it. The spec names a stream by name or id and a tenant by name or id; both are
resolved against the partner's list when planning (an unknown one is a plan error). Start and stop set a
state, so repeating one (a lost answer) is harmless.
"""

from __future__ import annotations

from typing import Any, ClassVar

from streamkeeper.provision.adapters.base import Adapter
from streamkeeper.provision.model import Change, Outcome, Resource, ResourceType
from streamkeeper.spec import PLTConnection
from streamkeeper.store.records import SubscriptionVersion
from streamkeeper.vendors.plt import PLTClient, StreamSummary


def _key(stream_id: str, tenant_id: str) -> str:
    return f"{stream_id}@{tenant_id}"


class PLTAdapter(Adapter):
    vendor = "plt"
    mutable: ClassVar[dict[ResourceType, frozenset[str] | None]] = {
        "subscription": frozenset(),  # another stream or tenant is another subscription
        "target": None,
    }

    connection: PLTConnection
    client: PLTClient

    def __init__(self, connection: PLTConnection, client: PLTClient, **kwargs: Any) -> None:
        super().__init__(connection, client, **kwargs)
        self._catalog: list[StreamSummary] = []

    def read(self) -> list[Resource]:
        self._catalog = self.client.list_streams()
        return [self._resource(s, s.tenant_name) for s in self._catalog if s.started]

    def _resource(self, s: StreamSummary, scope: str | None, name: str | None = None) -> Resource:
        return Resource(
            vendor=self.vendor,
            account=self.account,
            name=name,
            id=s.subscription_id,
            key=_key(s.stream_id, s.tenant_id),
            kind=s.stream_name,
            scope=scope,
            fields={"stream_id": s.stream_id, "tenant_id": s.tenant_id},
            observed=s.model_dump(mode="json", by_alias=True),
        )

    def desired(self, actual: list[Resource]) -> tuple[list[Resource], list[str]]:
        out: list[Resource] = []
        errors: list[str] = []
        owners: dict[str, str] = {}
        index: dict[tuple[str, str], list[StreamSummary]] = {}
        for s in self._catalog:  # a stream by id or name, a tenant by id or name
            for pair in {(a, b) for a in (s.stream_id, s.stream_name) for b in (s.tenant_id, s.tenant_name)}:
                index.setdefault(pair, []).append(s)
        for spec in self.connection.streams:
            found = index.get((spec.stream, spec.tenant), [])
            if len(found) != 1:
                problem = "is not available to this partner" if not found else "is ambiguous (use ids)"
                errors.append(f"stream {spec.name!r}: {spec.stream} for tenant {spec.tenant} {problem}")
                continue
            # the catalog entry's subscription id and body ride along: starting needs no other read
            resource = self._resource(found[0], found[0].tenant_name, name=spec.name)
            if resource.key in owners:
                errors.append(
                    f"streams {owners[resource.key]!r} and {spec.name!r} are the same stream and tenant"
                )
                continue
            owners[resource.key] = spec.name
            resource.desired = spec.desired()
            out.append(resource)
        return out, errors

    def execute(self, change: Change) -> Outcome:
        adopted = self.adopted(change)
        if change.action == "adopt":
            return self.outcome(change, "adopted", *adopted)
        if change.action == "create":
            return self.outcome(change, "created", self._start(change))
        if change.action == "delete":
            return self.outcome(change, "deleted", self._stop(change))
        # replace (the spec's name now points at another stream or tenant): stop the old, start the new
        stopped = self._stop(change)
        started = self._start(change)
        return self.outcome(change, "replaced", stopped, started, subscription_id=started.subscription_id)

    def _start(self, change: Change) -> SubscriptionVersion:
        d = change.desired
        assert d is not None
        assert d is not None and d.id is not None
        state = self.client.start_stream(d.fields["stream_id"], d.fields["tenant_id"])
        observed = {**(d.observed or {}), "started": state.started}
        return self.version("created", change, d.id, observed, kind=d.kind)

    def _stop(self, change: Change) -> SubscriptionVersion:
        a = change.actual
        assert a is not None and a.id is not None
        self.client.stop_stream(a.fields["stream_id"], a.fields["tenant_id"])
        return self.version("deleted", change, a.id, {**(a.observed or {}), "started": False}, kind=a.kind)


__all__ = ["PLTAdapter"]
