"""Equinix SmartView stream subscriptions, on either API generation.

- ``streams`` (the seed API): one subscription per organisation, so the organisation is its identity.
- ``streaming`` (the current API): several per organisation, and no field to carry a name (the API refuses
  unknown fields). A subscription is matched to its spec name by the id the history store remembers for
  that name; one the history does not know is matched by content (same families, accounts, IBXs, filters
  and channel), and adopted. A create whose answer was lost is found again the same way (by content:
  the client's lookup), so the spec refuses two identical subscriptions.

Both APIs replace a subscription's whole body on update, so nothing needs a replacement. The streams
API's ``config.token`` is never returned: it is compared with the last applied spec by block name.

A subscription the vendor holds but refused (streams: ``errors`` or a status other than OK, which come on
a 200; streaming: FAILED) has a compared field ``problem`` that the spec wants empty: ``plan`` shows it as
an update, ``audit`` as drift, and ``apply`` sends the body again and fails the change, naming the
vendor's errors, while the vendor still refuses it.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any

from streamkeeper.provision.adapters.base import Adapter, Pair
from streamkeeper.provision.model import Change, Outcome, Resource
from streamkeeper.provision.state import Known
from streamkeeper.spec import EquinixConnection, EquinixSubscriptionSpec, equinix_body
from streamkeeper.store.records import SubscriptionVersion
from streamkeeper.vendors.equinix import (
    STREAMING_FAMILIES,
    STREAMS_FAMILIES,
    EquinixClient,
    StreamingSubscription,
    StreamingSubscriptionRequest,
    StreamsSubscription,
    StreamsSubscriptionRequest,
    SubscriptionRefused,
    accepted,
    problem,
)
from streamkeeper.vendors.http import NotFound, redact

_GONE = frozenset({"DELETED", "DELETE_IN_PROGRESS"})
ORG_KEY = "organisation"
PROBLEM = "problem"  # the compared field of what the vendor says is wrong with a subscription


@lru_cache(maxsize=64)
def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _canonical(value: Any) -> Any:
    """Order-free form of a body: dict keys sorted, lists sorted (entries by their JSON)."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in sorted(value.items()) if v is not None}
    if isinstance(value, list):
        items = [_canonical(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    return value


def _by_account(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Filter entries keyed by account (and IBX, where an entry has one), so diffs name what changed."""
    out: dict[str, Any] = {}
    for entry in entries:
        rest = dict(entry)
        account = str(rest.pop("accountNumber", None) or rest.pop("accountNo", None) or "")
        key = f"{account}/{rest.pop('ibx')}" if isinstance(rest.get("ibx"), str) else account
        while key in out:  # the same account twice: kept apart
            key += "+"
        out[key] = rest
    return out


class EquinixAdapter(Adapter):
    vendor = "equinix"

    connection: EquinixConnection
    client: EquinixClient

    def __init__(self, connection: EquinixConnection, client: EquinixClient, **kwargs: Any) -> None:
        super().__init__(connection, client, **kwargs)
        self.api = connection.api
        self._specs = {s.name: s for s in connection.subscriptions}
        self._families = STREAMS_FAMILIES if self.api == "streams" else STREAMING_FAMILIES

    # -- the compared form ---------------------------------------------------------------------------------
    def _fields(self, body: dict[str, Any]) -> dict[str, Any]:
        """One field per event family (None when absent) plus the delivery (channel or config)."""
        families = body if self.api == "streams" else body.get("messageType") or {}
        fields: dict[str, Any] = {}
        for family in self._families:
            entries = families.get(_camel(family)) or []
            fields[f"families.{family}"] = _by_account(_canonical(entries)) or None
        if self.api == "streams":
            config = {k: v for k, v in (body.get("config") or {}).items() if k != "token"}
            fields["config"] = _canonical(config) or None
        else:
            fields["channel"] = _canonical(body.get("channel") or {}) or None
        return fields

    def _request(
        self, spec: EquinixSubscriptionSpec, with_secret: bool = False
    ) -> StreamsSubscriptionRequest | StreamingSubscriptionRequest:
        body = equinix_body(self.api, spec)
        if self.api == "streaming":
            return StreamingSubscriptionRequest.model_validate(body)
        if with_secret and spec.config is not None and spec.config.token_block:
            body.setdefault("config", {})["token"] = self.secret(spec.config.token_block, "token")
        return StreamsSubscriptionRequest.model_validate(body)

    @staticmethod
    def _content_key(fields: dict[str, Any]) -> str:
        return "content:" + hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]

    # -- planning ------------------------------------------------------------------------------------------
    def read(self) -> list[Resource]:
        if self.api == "streams":
            found = self.client.get_org_subscription()
            return [] if found is None else [self._actual(found.subscription_id, found)]
        return [
            self._actual(s.id, s) for s in self.client.list_streaming_subscriptions() if s.status not in _GONE
        ]

    def _actual(self, subscription_id: str, sub: StreamsSubscription | StreamingSubscription) -> Resource:
        observed = sub.model_dump(mode="json", by_alias=True, exclude_none=True)
        fields = self._fields(observed)
        key = ORG_KEY if self.api == "streams" else self._content_key(fields)
        fields[PROBLEM] = problem(sub)
        return Resource(
            vendor=self.vendor,
            account=self.account,
            id=subscription_id,
            key=key,
            kind=self.api,
            fields=fields,
            observed=observed,
        )

    def desired(self, actual: list[Resource]) -> tuple[list[Resource], list[str]]:
        out = []
        for spec in self.connection.subscriptions:
            request = self._request(spec)
            body = (
                request.comparable() if isinstance(request, StreamsSubscriptionRequest) else request.to_body()
            )
            fields = self._fields(body)
            key = ORG_KEY if self.api == "streams" else self._content_key(fields)
            fields[PROBLEM] = None  # the spec wants a subscription the vendor accepted
            write_only = {}
            if spec.config is not None and spec.config.token_block:
                write_only["token_block"] = spec.config.token_block
            out.append(
                Resource(
                    vendor=self.vendor,
                    account=self.account,
                    name=spec.name,
                    key=key,
                    kind=self.api,
                    fields=fields,
                    write_only=write_only,
                    desired=spec.desired(),
                )
            )
        return out, []

    def match(self, desired: list[Resource], actual: list[Resource], known: Known | None) -> list[Pair]:
        """By the id the history remembers for each name first, then by content (then left unmatched)."""
        by_id = {a.id: a for a in actual}
        taken: set[str | None] = set()
        pairs: list[Pair] = []
        rest = []
        for d in desired:
            entry = known.by_name(self.vendor, self.account, "subscription", d.name) if known else None
            a = by_id.get(entry.subscription_id) if entry else None
            if a is not None and a.id not in taken:
                taken.add(a.id)
                pairs.append((d, a))
            else:
                rest.append(d)
        for d in rest:
            a = next((x for x in actual if x.key == d.key and x.id not in taken), None)
            if a is not None:
                taken.add(a.id)
            pairs.append((d, a))
        for a in actual:
            if a.id not in taken:
                entry = known.by_id(self.vendor, self.account, a.id) if known else None
                if entry is not None and entry.name:
                    a.name = entry.name  # the name it had: shown when it is reported or deleted
                pairs.append((None, a))
        return pairs

    def finalize(self, changes: list[Change], unmanaged: list[Resource], prune: bool) -> list[str]:
        """One channel type per organisation (doc): a different type cannot come while the old one stays."""
        if self.api != "streaming":
            return []
        wanted = {
            (c.desired.fields.get("channel") or {}).get("channelType")
            for c in changes
            if c.desired is not None and c.action in ("create", "update")
        }
        deleted = {c.subscription_id for c in changes if c.action == "delete"}
        staying = [
            c.actual for c in changes if c.actual is not None and c.actual.id not in deleted
        ] + unmanaged
        errors = []
        for kind in sorted(k for k in wanted if k):
            held = sorted(
                {
                    str((r.fields.get("channel") or {}).get("channelType"))
                    for r in staying
                    if (r.fields.get("channel") or {}).get("channelType") not in (None, kind)
                }
            )
            if held:
                errors.append(
                    f"channel type {kind} cannot join {', '.join(held)} in the organisation (Equinix allows one "
                    "channel type per organisation): remove the subscriptions of the old type first "
                    "(take them out of the spec and apply with --prune), then apply this spec"
                )
        return errors

    # -- applying ------------------------------------------------------------------------------------------
    def execute(self, change: Change) -> Outcome:
        adopted = self.adopted(change)
        if change.action == "adopt":
            return self.outcome(change, "adopted", *adopted)
        if change.action == "delete":
            return self.outcome(change, "deleted", self._delete(change))
        try:
            return self._write(change, adopted)
        except SubscriptionRefused as exc:
            # the vendor holds it, refused: on record as failed (stream_health shows it failing, the next
            # plan matches it by id), and the change fails naming the vendor's errors
            held = exc.subscription
            held_id = getattr(held, "subscription_id", None) or getattr(held, "id", None)
            if held_id is None:
                raise
            kind = "created" if change.action == "create" else "updated"
            row = self._row(kind, change, held_id, held, status="failed", detail=redact(str(exc)))
            return self.outcome(change, "failed", *adopted, row, detail=redact(str(exc)))

    def _write(self, change: Change, adopted: list[SubscriptionVersion]) -> Outcome:
        spec = self._specs[change.name or ""]
        request = self._request(spec, with_secret=True)
        if change.action == "create":
            if isinstance(request, StreamsSubscriptionRequest):
                created: StreamsSubscription | StreamingSubscription = (
                    self.client.create_streams_subscription(request)
                )
                new_id = created.subscription_id  # type: ignore[union-attr]
            else:
                created = self.client.create_streaming_subscription(request)
                new_id = created.id  # type: ignore[union-attr]
            return self.outcome(change, "created", self._row("created", change, new_id, created))
        assert change.actual is not None and change.actual.id is not None  # update
        sub_id = change.actual.id
        if isinstance(request, StreamsSubscriptionRequest):
            updated: StreamsSubscription | StreamingSubscription = self.client.update_streams_subscription(
                sub_id, request
            )
        else:
            self.client.update_streaming_subscription(sub_id, request)
            updated = accepted(
                "update_streaming_subscription", self.client.get_streaming_subscription(sub_id)
            )
        return self.outcome(change, "updated", *adopted, self._row("updated", change, sub_id, updated))

    def _delete(self, change: Change) -> SubscriptionVersion:
        a = change.actual
        assert a is not None and a.id is not None
        try:
            if self.api == "streams":
                self.client.delete_streams_subscription(a.id)
            else:
                self.client.delete_streaming_subscription(a.id)
        except NotFound:
            pass  # gone already (a retried delete whose first answer was lost)
        return self.version("deleted", change, a.id, a.observed, kind=self.api)

    def _row(
        self,
        kind: Any,
        change: Change,
        sub_id: str,
        sub: StreamsSubscription | StreamingSubscription,
        *,
        status: str | None = None,
        detail: str | None = None,
    ) -> SubscriptionVersion:
        observed = sub.model_dump(mode="json", by_alias=True, exclude_none=True)
        return self.version(
            kind,
            change,
            sub_id,
            observed,
            kind=self.api,
            status=status or (sub.status or "").lower() or None,
            detail=detail,
        )


__all__ = ["EquinixAdapter"]
