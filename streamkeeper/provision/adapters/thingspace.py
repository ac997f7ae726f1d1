"""ThingSpace targets and subscriptions, matched by their ``name``.

Rules (seed and docs): a target exists before its subscription; an account holds one subscription per
streamkind; a target has no update call (a changed target is replaced: the new one is created, the
subscriptions are moved to it with a PATCH, the old one deleted last); a subscription is PATCHed in place.
Receiver credentials are never returned: they are compared with the last applied spec by block name.

Stages: 0 subscription deletes (frees streamkinds), 1 targets, 2 subscriptions, 3 target deletes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ClassVar

from streamkeeper.errors import ConfigError, StreamkeeperError
from streamkeeper.provision.adapters.base import Adapter, Pair
from streamkeeper.provision.model import Change, FieldDiff, Outcome, Resource, ResourceType
from streamkeeper.provision.state import TARGET_KIND, Known
from streamkeeper.spec import ThingSpaceConnection, ThingSpaceSubscriptionSpec, ThingSpaceTargetSpec
from streamkeeper.store.records import SubscriptionVersion
from streamkeeper.vendors.thingspace import CreateTargetRequest, Subscription, Target, ThingSpaceClient

_SUB_FIELDS = {  # spec field -> the vendor's
    "streamkind": "streamkind",
    "filter": "filter",
    "disabled": "disabled",
    "aggregation": "allowaggregation",
    "description": "description",
    "email": "email",
}


class ThingSpaceAdapter(Adapter):
    vendor = "thingspace"
    mutable: ClassVar[dict[ResourceType, frozenset[str] | None]] = {
        "subscription": None,  # PATCH changes any property
        "target": frozenset(),  # no update call: every difference is a replacement
    }

    connection: ThingSpaceConnection
    client: ThingSpaceClient

    def __init__(self, connection: ThingSpaceConnection, client: ThingSpaceClient, **kwargs: Any) -> None:
        super().__init__(connection, client, **kwargs)
        self.billing_account = connection.account or client.account_name
        self._targets = {t.name: t for t in connection.targets}
        self._subs: dict[str, tuple[ThingSpaceTargetSpec, ThingSpaceSubscriptionSpec]] = {
            s.name: (t, s) for t, s in connection.subscriptions()
        }
        self._target_ids: dict[str, str] = {}  # target name -> id at the vendor (matched or created)
        self._replaced: dict[str, Change] = {}  # target id -> the replace change that leaves it behind
        self._lock = threading.Lock()

    @property
    def account(self) -> str:
        """The block name, plus the billing account when the spec names one."""
        if self.connection.account:
            return f"{self.connection.connection}:{self.connection.account}"
        return self.connection.connection

    # -- planning ------------------------------------------------------------------------------------------
    def read(self) -> list[Resource]:
        account = self.billing_account
        targets = self.client.query_targets(account=account)
        subscriptions = self.client.query_subscriptions(account=account)
        names = {t.id: t.name for t in targets}
        return [self._actual_target(t) for t in targets] + [
            self._actual_subscription(s, names) for s in subscriptions
        ]

    def _actual_target(self, t: Target) -> Resource:
        return Resource(
            vendor=self.vendor,
            account=self.account,
            type="target",
            name=t.name,
            id=t.id,
            key=t.name or f"id:{t.id}",
            kind=TARGET_KIND,
            scope=self.billing_account,
            fields={
                "address": t.address,
                "scheme": t.addressscheme,
                "description": t.description,
                "region": t.region,
                "external_id": t.externalid,
            },
            observed=t.model_dump(mode="json"),
        )

    def _actual_subscription(self, s: Subscription, target_names: dict[str, str | None]) -> Resource:
        fields = {spec: getattr(s, vendor) for spec, vendor in _SUB_FIELDS.items()}
        fields["target"] = target_names.get(s.targetid or "") or f"id:{s.targetid}"
        return Resource(
            vendor=self.vendor,
            account=self.account,
            name=s.name,
            id=s.id,
            key=s.name or f"id:{s.id}",
            kind=s.streamkind,
            scope=self.billing_account,
            fields=fields,
            observed=s.model_dump(mode="json"),
        )

    def desired(self, actual: list[Resource]) -> tuple[list[Resource], list[str]]:
        out = []
        for t in self.connection.targets:
            creds = t.credentials
            out.append(
                Resource(
                    vendor=self.vendor,
                    account=self.account,
                    type="target",
                    name=t.name,
                    key=t.name,
                    kind=TARGET_KIND,
                    scope=self.billing_account,
                    fields={
                        "address": t.address,
                        "scheme": t.scheme,
                        "description": t.description,
                        "region": t.region,
                        "external_id": t.external_id,
                    },
                    # vendor-assigned or not given: left as the vendor holds them
                    ignore=[f for f in ("description", "region", "external_id") if getattr(t, f) is None],
                    write_only=creds.model_dump(exclude_none=True) if creds else {},
                    desired=t.model_dump(mode="json", exclude_none=True, exclude={"subscriptions"}),
                )
            )
        for t, s in self.connection.subscriptions():
            fields: dict[str, Any] = {f: getattr(s, f) for f in _SUB_FIELDS}
            fields["target"] = t.name
            out.append(
                Resource(
                    vendor=self.vendor,
                    account=self.account,
                    name=s.name,
                    key=s.name,
                    kind=s.streamkind,
                    scope=self.billing_account,
                    fields=fields,
                    # a PATCH cannot clear a property (null leaves it): unset ones are left as they are
                    ignore=[f for f in ("filter", "description", "email") if getattr(s, f) is None],
                    desired={**s.desired(), "target": t.name},
                )
            )
        return out, []

    def match(self, desired: list[Resource], actual: list[Resource], known: Known | None) -> list[Pair]:
        pairs = super().match(desired, actual, known)
        self._planned_targets = {
            d.name: a.id for d, a in pairs if d is not None and a is not None and d.type == "target"
        }
        self._actual_target_ids = {a.id for a in actual if a.type == "target"}
        return sorted(pairs, key=lambda p: (p[0] or p[1]).type != "target")  # type: ignore[union-attr]

    def compare(self, desired: Resource, actual: Resource, known: Known | None) -> list[FieldDiff]:
        diffs = super().compare(desired, actual, known)
        if desired.type == "subscription":
            # the same target *name* is not enough: it must be the target the spec's name is matched to
            wanted = self._planned_targets.get(desired.fields["target"])
            have = (actual.observed or {}).get("targetid")
            if wanted is not None and have != wanted and not any(d.field == "target" for d in diffs):
                diffs.append(FieldDiff(field="target", before=f"id:{have}", after=desired.fields["target"]))
        return diffs

    def finalize(self, changes: list[Change], unmanaged: list[Resource], prune: bool) -> list[str]:
        errors = []
        moving = {c.name for c in changes if c.type == "target" and c.action in ("replace", "create")}
        for c in changes:
            # subscriptions on a target that is replaced (or made anew) move to the new one
            if c.type == "subscription" and c.action in ("noop", "adopt", "update") and c.desired is not None:
                target = c.desired.fields["target"]
                if target in moving and not any(d.field == "target" for d in c.diffs):
                    c.diffs.append(FieldDiff(field="target", before=target, after=f"{target} (new)"))
                    c.action = "update"
        # one subscription per streamkind per account: a slot must be free, or freed first (prune)
        deleted = {c.subscription_id for c in changes if c.action == "delete"}
        holders: dict[str, list[Resource]] = {}
        for r in [c.actual for c in changes if c.actual is not None] + unmanaged:
            if r.type == "subscription" and r.kind:
                holders.setdefault(r.kind, []).append(r)
        for c in changes:
            if c.type != "subscription" or c.desired is None or c.action in ("noop", "adopt", "delete"):
                continue
            kind = c.desired.fields["streamkind"]
            for holder in holders.get(kind, []):
                if holder.id == c.subscription_id or holder.id in deleted:
                    continue
                managed = any(
                    x.actual is not None and x.actual.id == holder.id and x.desired is not None
                    for x in changes
                )
                why = (
                    "it moves away in the same apply: apply the two changes one at a time"
                    if managed
                    else "it is not in the spec: name it in the spec to adopt it, or --prune to delete it"
                )
                errors.append(
                    f"subscription {c.name!r} needs streamkind {kind} in account {self.billing_account}, "
                    f"held by subscription {holder.label()} ({holder.id}); {why}"
                )
        return errors

    # -- applying ------------------------------------------------------------------------------------------
    def prepare(self, changes: list[Change]) -> None:
        for c in changes:
            if (
                c.type == "target"
                and c.name
                and c.actual is not None
                and c.actual.id
                and c.action != "delete"
            ):
                self._target_ids[c.name] = c.actual.id

    def stage(self, change: Change) -> int:
        if change.type == "target":
            return 3 if change.action == "delete" else 1
        return 0 if change.action == "delete" else 2

    def execute(self, change: Change) -> Outcome:
        adopted = self.adopted(change)
        if change.action == "adopt":
            return self.outcome(change, "adopted", *adopted)
        if change.action == "delete":
            return self.outcome(change, "deleted", self._delete(change.type, change))
        if change.type == "target":
            if change.action == "create":
                return self.outcome(change, "created", self._create_target(change))
            # replace: a new target now, the old one once its subscriptions have moved (`after`)
            old = change.actual
            assert old is not None and old.id is not None
            created = self._create_target(change, avoid=old.id)
            with self._lock:
                self._replaced[old.id] = change
            return self.outcome(change, "replaced", created, subscription_id=created.subscription_id)
        if change.action == "create":
            return self.outcome(change, "created", self._create_subscription(change))
        if change.action == "update":
            return self.outcome(change, "updated", *adopted, self._update_subscription(change))
        gone = self._delete("subscription", change)  # replace (streamkind clash resolved by delete + create)
        created = self._create_subscription(change)
        return self.outcome(change, "replaced", gone, created, subscription_id=created.subscription_id)

    def after(self, outcomes: list[Outcome]) -> list[Outcome]:
        results = []
        for old_id, change in self._replaced.items():
            try:
                self.client.delete_target(old_id, account=self.billing_account, missing_ok=True)
            except StreamkeeperError as exc:
                results.append(
                    self.outcome(change, "failed", subscription_id=old_id, detail=f"old target left: {exc}")
                )
                continue
            row = self.version("deleted", change, old_id, change.actual.observed if change.actual else None)
            results.append(self.outcome(change, "deleted", row, subscription_id=old_id))
        return results

    def _target_id(self, name: str) -> str:
        with self._lock:
            found = self._target_ids.get(name)
        if found is None:
            raise ConfigError(f"target {name!r} does not exist at the vendor (its create failed?)")
        return found

    def _create_target(self, change: Change, avoid: str | None = None) -> SubscriptionVersion:
        spec = self._targets[change.name or ""]
        request = self._target_request(spec)
        target = self.client.create_target(request, account=self.billing_account)
        for _ in range(3):
            if target.id != avoid:
                break
            # a lost answer was "found" as the old target (same name and address): create for real
            target = self.client.create_target(request, account=self.billing_account)
        with self._lock:
            self._target_ids[spec.name] = target.id
        return self.version("created", change, target.id, target.model_dump(mode="json"), kind=TARGET_KIND)

    def _target_request(self, spec: ThingSpaceTargetSpec) -> CreateTargetRequest:
        common: dict[str, Any] = {"description": spec.description}
        if spec.scheme == "streamawsiot":
            external = spec.external_id or self.client.new_external_id(account=self.billing_account)
            return CreateTargetRequest.streamawsiot(
                spec.name, spec.address, region=spec.region or "", externalid=external, **common
            )
        if spec.scheme == "streamawssqs":
            return CreateTargetRequest.streamawssqs(spec.name, spec.address, region=spec.region, **common)
        creds = spec.credentials
        secret: dict[str, Any] = {}
        if creds is not None and creds.bearer_token_block:
            secret["bearer_token"] = self.secret(creds.bearer_token_block, "token")
        elif creds is not None and creds.password_block:
            secret["username"] = creds.username
            secret["password"] = self.secret(creds.password_block, "password")
        request = CreateTargetRequest.streamrest(spec.name, spec.address, **secret, **common)
        if spec.region is not None:
            request = request.model_copy(update={"region": spec.region})
        return request

    def _create_subscription(self, change: Change) -> SubscriptionVersion:
        target, spec = self._subs[change.name or ""]
        body = {
            "name": spec.name,
            "streamkind": spec.streamkind,
            "targetid": self._target_id(target.name),
            "allowaggregation": spec.aggregation,
            "disabled": spec.disabled,
            "filter": spec.filter,
            "description": spec.description,
            "email": spec.email,
        }
        created = self.client.create_subscription(
            {k: v for k, v in body.items() if v is not None}, account=self.billing_account
        )
        return self._row("created", change, created)

    def _update_subscription(self, change: Change) -> SubscriptionVersion:
        target, spec = self._subs[change.name or ""]
        assert change.actual is not None and change.actual.id is not None
        patch: dict[str, Any] = {"id": change.actual.id, "name": spec.name}
        for diff in change.diffs:
            if diff.field == "target":
                patch["targetid"] = self._target_id(target.name)
            elif diff.field in _SUB_FIELDS:
                patch[_SUB_FIELDS[diff.field]] = getattr(spec, diff.field)
        updated = self.client.update_subscription(
            {k: v for k, v in patch.items() if v is not None}, account=self.billing_account
        )
        return self._row("updated", change, updated)

    def _delete(self, type: str, change: Change) -> SubscriptionVersion:
        actual = change.actual
        assert actual is not None and actual.id is not None
        delete: Callable[..., None] = (
            self.client.delete_target if type == "target" else self.client.delete_subscription
        )
        delete(actual.id, account=self.billing_account, missing_ok=True)
        return self.version("deleted", change, actual.id, actual.observed, kind=actual.kind)

    def _row(self, kind: Any, change: Change, sub: Subscription) -> SubscriptionVersion:
        return self.version(kind, change, sub.id, sub.model_dump(mode="json"), kind=sub.streamkind)


__all__ = ["ThingSpaceAdapter"]
