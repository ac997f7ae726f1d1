"""Drift against the spec: the provisioning planner's own comparison, read-only.

The plan of a connection (what ``streamkeeper plan`` would do, planned from what the audit already read)
becomes findings: a ``create`` is a subscription the spec wants and the vendor lacks (``expired`` when the
history saw it live and its expiry passed, else ``missing``), an ``update`` or ``replace`` is ``changed``
(the fields, with what the spec wants and what the vendor has), a resource no spec entry names is
``extra``, and a plan error (a spec entry that cannot be resolved at the vendor) is ``invalid``. What
another flow owns (`Plan.owned_elsewhere`: the history records its owner, e.g. the feature-flag targeting
onboard-organization made) is no drift against the spec.

An audit whose inputs are the latest audit's (`streamkeeper.audit.inputs`) takes that audit's findings
against the spec (`repeat_spec_findings`) instead of planning again: the same plan, but ``missing`` and
``expired`` are told apart again at the current time.
"""

from __future__ import annotations

import json
from datetime import datetime

from streamkeeper.audit.observe import Observation, preread
from streamkeeper.audit.snapshots import DriftFinding, LatestAudit, _str
from streamkeeper.provision.adapters.base import Adapter
from streamkeeper.provision.model import Plan
from streamkeeper.provision.planner import plan_connection
from streamkeeper.provision.state import known_from_store
from streamkeeper.store import HistoryStore
from streamkeeper.store.history import as_utc


def plan_from_observation(adapter: Adapter, observation: Observation, store: HistoryStore) -> Plan:
    """The connection's plan (no prune), from the resources the audit read: no request of its own."""
    known = known_from_store(store, adapter.vendor, adapter.account)
    return plan_connection(preread(adapter, observation.resources), known, prune=False)


def spec_findings(
    plan: Plan, store: HistoryStore, vendor: str, account: str, now: datetime
) -> list[DriftFinding]:
    """The plan's pending changes, unmanaged resources and errors, as drift findings against the spec."""
    lapsed = _lapsed_names(store, vendor, account, now)
    findings: list[DriftFinding] = []
    for change in plan.changes:
        if change.action == "create":
            findings.append(_absent(vendor, account, change.type, change.name, lapsed))
        elif change.action in ("update", "replace"):
            findings.append(
                DriftFinding(
                    vendor=vendor,
                    account=account,
                    resource=change.type,
                    name=change.name,
                    against="spec",
                    subscription_id=change.subscription_id,
                    finding="changed",
                    fields={d.field: {"want": d.after, "have": d.before} for d in change.diffs},
                    detail="; ".join(d.describe() for d in change.diffs),
                )
            )
    for resource in plan.unmanaged:
        findings.append(
            DriftFinding(
                vendor=vendor,
                account=account,
                resource=resource.type,
                subscription_id=resource.id,
                name=resource.name,
                against="spec",
                finding="extra",
                detail=f"not in the spec ({resource.kind or resource.type})",
            )
        )
    for error in plan.errors:
        findings.append(
            DriftFinding(
                vendor=vendor,
                account=account,
                resource="spec",
                against="spec",
                finding="invalid",
                detail=error,
            )
        )
    return findings


def repeat_spec_findings(
    store: HistoryStore, latest: LatestAudit, vendor: str, account: str, now: datetime
) -> list[DriftFinding]:
    """The latest audit's findings against the spec, ``missing`` and ``expired`` told apart at `now`."""
    frame = store.query(
        "SELECT resource, subscription_id, name, finding, fields, detail FROM drift_findings "
        "WHERE found_at = ? AND audit_id = ? AND against = 'spec'",
        [latest.finished_at, latest.audit_id],
    )
    lapsed = _lapsed_names(store, vendor, account, now) if frame["finding"].isin(ABSENT).any() else {}
    findings = []
    for row in frame.itertuples():
        if row.finding in ABSENT:
            findings.append(_absent(vendor, account, str(row.resource), _str(row.name), lapsed))
            continue
        findings.append(
            DriftFinding(
                vendor=vendor,
                account=account,
                resource=str(row.resource),
                subscription_id=_str(row.subscription_id),
                name=_str(row.name),
                against="spec",
                finding=row.finding,
                fields=json.loads(row.fields) if isinstance(row.fields, str) else None,
                detail=_str(row.detail),
            )
        )
    return findings


ABSENT = ("missing", "expired")
"""Findings of a spec entry the vendor lacks: ``expired`` when the history saw it live past its expiry."""


def _absent(
    vendor: str, account: str, resource: str, name: str | None, lapsed: dict[str, str]
) -> DriftFinding:
    expired = name in lapsed
    return DriftFinding(
        vendor=vendor,
        account=account,
        resource=resource,
        name=name,
        against="spec",
        subscription_id=lapsed.get(name or ""),
        finding="expired" if expired else "missing",
        detail="expired at the vendor" if expired else "not at the vendor",
    )


def _lapsed_names(store: HistoryStore, vendor: str, account: str, now: datetime) -> dict[str, str]:
    """Name -> id of the subscriptions whose latest history version is expired, or live past its expiry."""
    frame = store.query(
        """
        SELECT name, arg_max(subscription_id, valid_from) AS subscription_id,
               arg_max(status, valid_from) AS status, arg_max(expires_at, valid_from) AS expires_at
        FROM subscriptions WHERE vendor = ? AND account = ? AND name IS NOT NULL GROUP BY name
        """,
        [vendor, account],
    )
    lapsed = {}
    for row in frame.itertuples():
        expires = as_utc(row.expires_at)
        if row.status == "expired" or (row.status != "deleted" and expires is not None and expires <= now):
            lapsed[str(row.name)] = str(row.subscription_id)
    return lapsed
