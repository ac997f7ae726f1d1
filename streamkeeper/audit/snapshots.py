"""Snapshots of what a vendor holds, and drift against the previous snapshot.

Each audit of one vendor account gets an ``audit_id``: one ``audits`` row, one ``subscription_snapshots``
row per thing seen, and its findings in ``drift_findings`` (the ``drift`` view shows each account's latest
audit). A thing unchanged since the previous snapshot (same ETag, or the same body hash where the vendor
has no ETags) is stored without a body.

An audit that finds everything as the previous snapshot saw it (the same things, each unchanged) writes
one row instead, SCD2-style: ``resource = 'snapshot'``, ``subscription_id = '*'`` and ``same_as`` naming
the last full snapshot, whose rows then stand for this audit too. The ``snapshot_items`` view resolves
that: every successful audit with the things it saw and their bodies as of then, so "what did the vendor
hold at T" is the latest audit at or before T in that view (the ``vendor_held`` report).

Drift against the previous snapshot is what changed that streamkeeper did not do: a thing that appeared,
disappeared or was modified (volatile fields aside) is a finding unless the history recorded a change of
it by streamkeeper since the previous audit. A DMA subscription that disappeared after its expiry is
``expired``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, Field

from streamkeeper.audit.observe import Observation, Observed, canonical
from streamkeeper.store import HistoryStore, SubscriptionVersion
from streamkeeper.store.history import as_utc

Against = Literal["spec", "previous"]
Finding = Literal["missing", "extra", "changed", "expired", "invalid", "appeared", "disappeared", "modified"]


class DriftFinding(BaseModel):
    """One difference, against the spec or against the previous snapshot.

    Against the spec: ``missing``, ``extra``, ``changed`` (`fields` maps each field to ``{"want", "have"}``:
    the spec's value and the vendor's), ``expired``, ``invalid`` (a spec entry the vendor cannot resolve).
    Against the previous snapshot: ``appeared``, ``disappeared``, ``expired``, ``modified`` (`fields` maps
    each field to ``{"was", "now"}``).
    """

    vendor: str
    account: str
    resource: str
    subscription_id: str | None = None
    name: str | None = None
    against: Against
    finding: Finding
    fields: dict[str, dict[str, Any]] | None = None
    detail: str | None = None


class AuditResult(BaseModel):
    """What one audit of one vendor account saw and stored."""

    audit_id: str
    vendor: str
    account: str
    started_at: datetime
    finished_at: datetime
    observed: int = 0
    not_modified: int = 0
    bodies_stored: int = 0
    requests: int | None = None
    spec_checked: bool = False
    findings: list[DriftFinding] = Field(default_factory=list)
    error: str | None = None


class PreviousRow(BaseModel):
    resource: str
    id: str
    name: str | None
    etag: str | None
    body_hash: str | None


POINTER_RESOURCE = "snapshot"
POINTER_ID = "*"
"""The ``resource`` and ``subscription_id`` of the one row of an audit that found nothing changed."""


class LatestAudit(BaseModel):
    """The latest successful audit of a vendor account.

    Attributes:
        full_id: the snapshot whose rows stand for it (its own, or the full one its pointer row names).
        full_taken_at: when that snapshot was taken.
        inputs: what its result was computed from (`streamkeeper.audit.inputs`), when known.
    """

    audit_id: str
    finished_at: datetime
    observed: int
    inputs: str | None
    full_id: str
    full_taken_at: datetime


class PreviousSnapshot(BaseModel):
    """The latest successful audit of a vendor account: when, and the ETag and hash of each thing."""

    audit_id: str
    finished_at: datetime
    full_id: str
    rows: dict[tuple[str, str], PreviousRow]

    def etags(self) -> dict[tuple[str, str], str]:
        return {key: row.etag for key, row in self.rows.items() if row.etag}


def new_audit_id() -> str:
    return uuid.uuid4().hex


def latest_audit(store: HistoryStore, vendor: str, account: str) -> LatestAudit | None:
    """The latest successful audit of this vendor account, or None before the first one.

    Small reads on one connection; the one of ``subscription_snapshots`` is filtered on a time as well as
    an id: rows are appended in time order, so DuckDB skips the row groups of other times (measured: 2 ms
    instead of 190 ms at 5 M rows).
    """
    with store.reader() as con:
        latest = con.execute(
            "SELECT audit_id, finished_at, observed, inputs FROM audits "
            "WHERE vendor = ? AND account = ? AND error IS NULL ORDER BY finished_at DESC LIMIT 1",
            [vendor, account],
        ).fetchone()
        if latest is None:
            return None
        audit_id, finished_at, observed, inputs = latest
        pointer = con.execute(
            "SELECT same_as FROM subscription_snapshots WHERE taken_at = ? AND snapshot_id = ? "
            "AND same_as IS NOT NULL",
            [finished_at, audit_id],
        ).fetchone()
        full_id, full_taken_at = audit_id, finished_at
        if pointer is not None:
            full = con.execute("SELECT finished_at FROM audits WHERE audit_id = ?", [pointer[0]]).fetchone()
            full_id, full_taken_at = pointer[0], full[0] if full is not None else finished_at
    return LatestAudit(
        audit_id=audit_id,
        finished_at=as_utc(finished_at),
        observed=observed,
        inputs=inputs,
        full_id=full_id,
        full_taken_at=as_utc(full_taken_at),
    )


def previous_snapshot(store: HistoryStore, latest: LatestAudit | None) -> PreviousSnapshot | None:
    """What the latest successful audit saw (the rows of its full snapshot), or None before the first."""
    if latest is None:
        return None
    rows = store.query(
        "SELECT coalesce(resource, 'subscription') AS resource, subscription_id, name, etag, body_hash "
        "FROM subscription_snapshots WHERE taken_at = ? AND snapshot_id = ? AND same_as IS NULL",
        [latest.full_taken_at, latest.full_id],
    )
    return PreviousSnapshot(
        audit_id=latest.audit_id,
        finished_at=latest.finished_at,
        full_id=latest.full_id,
        rows={
            (r.resource, r.subscription_id): PreviousRow(
                resource=r.resource,
                id=r.subscription_id,
                name=_str(r.name),
                etag=_str(r.etag),
                body_hash=_str(r.body_hash),
            )
            for r in rows.itertuples()
        },
    )


def unchanged(item: Observed, prior: PreviousRow | None) -> bool:
    """Unchanged since the previous snapshot: the same ETag where the vendor gives one, else the same hash."""
    if prior is None:
        return False
    if item.fetched_not_modified:
        return True
    if item.etag is not None and prior.etag is not None:
        return item.etag == prior.etag
    return item.body_hash == prior.body_hash


def compare_previous(
    store: HistoryStore,
    observation: Observation,
    previous: PreviousSnapshot | None,
    now: datetime,
) -> list[DriftFinding]:
    """What changed since the previous snapshot that streamkeeper's history does not explain."""
    if previous is None:
        return []
    vendor, account = observation.vendor, observation.account
    explained = _changed_by_us_since(store, vendor, account, previous.finished_at)
    current = {(i.resource, i.id): i for i in observation.items}
    findings: list[DriftFinding] = []
    modified = [
        item
        for key, item in current.items()
        if key in previous.rows and not unchanged(item, previous.rows[key]) and item.id not in explained
    ]
    gone = [row for key, row in previous.rows.items() if key not in current and row.id not in explained]
    old_bodies = _latest_bodies(store, vendor, account, [i.id for i in modified] + [r.id for r in gone])
    for key, item in current.items():
        if key not in previous.rows and item.id not in explained:
            findings.append(_finding(observation, item.resource, item.id, item.name, "appeared", None))
    for item in modified:
        old = old_bodies.get((item.resource, item.id))
        fields = field_diff(_strip(old, item.volatile), item.comparable()) if old is not None else None
        if old is not None and not fields:
            continue  # only volatile fields moved (a DMA subscription refreshed by someone else)
        findings.append(_finding(observation, item.resource, item.id, item.name, "modified", fields))
    for row in gone:
        old = old_bodies.get((row.resource, row.id)) or {}
        expiry = _parse_time(old.get("calculated_expiration_date"))
        if expiry is not None and expiry <= now:
            findings.append(
                _finding(
                    observation,
                    row.resource,
                    row.id,
                    row.name,
                    "expired",
                    None,
                    f"expired at {expiry:%Y-%m-%dT%H:%M:%SZ}",
                )
            )
        else:
            findings.append(_finding(observation, row.resource, row.id, row.name, "disappeared", None))
    return findings


def record_audit(
    store: HistoryStore,
    observation: Observation,
    previous: PreviousSnapshot | None,
    findings: Sequence[DriftFinding],
    *,
    audit_id: str,
    started_at: datetime,
    requests: int | None = None,
    spec_checked: bool = False,
    inputs: str | None = None,
) -> AuditResult:
    """Write the audit: its ``audits`` row, a snapshot row per thing (a body only when changed), findings.

    When every thing is as the previous snapshot saw it, the snapshot is one row pointing at the last full
    one. One transaction, so the ``drift`` view never shows half an audit.
    """
    finished_at = datetime.now(UTC)
    prior_rows = previous.rows if previous is not None else {}
    same = [unchanged(item, prior_rows.get((item.resource, item.id))) for item in observation.items]
    keys = {(item.resource, item.id) for item in observation.items}
    if previous is not None and all(same) and keys == set(prior_rows):
        rows = [
            _pointer_row(
                store,
                observation.vendor,
                observation.account,
                audit_id,
                finished_at,
                previous.full_id,
                observation.version,
            )
        ]
    else:
        rows = [
            {
                "snapshot_id": audit_id,
                "taken_at": finished_at,
                "vendor": observation.vendor,
                "account": observation.account,
                "subscription_id": item.id,
                "name": item.name,
                "etag": item.etag,
                "not_modified": unchanged_,
                "body": None if unchanged_ else canonical(item.body),
                "flow_run_id": store.flow_run_id,
                "body_hash": item.body_hash,
                "resource": item.resource,
            }
            for item, unchanged_ in zip(observation.items, same, strict=True)
        ]
    result = AuditResult(
        audit_id=audit_id,
        vendor=observation.vendor,
        account=observation.account,
        started_at=started_at,
        finished_at=finished_at,
        observed=len(observation.items),
        not_modified=sum(same),
        bodies_stored=sum(1 for r in rows if r["body"] is not None),
        requests=requests,
        spec_checked=spec_checked,
        findings=list(findings),
    )
    _write(store, result, inputs, rows)
    return result


def record_repeat(
    store: HistoryStore,
    latest: LatestAudit,
    findings: Sequence[DriftFinding],
    *,
    vendor: str,
    account: str,
    audit_id: str,
    started_at: datetime,
    requests: int | None,
    spec_checked: bool,
    inputs: str,
    version: str | None,
) -> AuditResult:
    """Write an audit whose inputs are the latest audit's: one snapshot row pointing at its full snapshot."""
    finished_at = datetime.now(UTC)
    result = AuditResult(
        audit_id=audit_id,
        vendor=vendor,
        account=account,
        started_at=started_at,
        finished_at=finished_at,
        observed=latest.observed,
        not_modified=latest.observed,
        requests=requests,
        spec_checked=spec_checked,
        findings=list(findings),
    )
    _write(
        store,
        result,
        inputs,
        [_pointer_row(store, vendor, account, audit_id, finished_at, latest.full_id, version)],
    )
    return result


def _pointer_row(
    store: HistoryStore,
    vendor: str,
    account: str,
    audit_id: str,
    taken_at: datetime,
    full_id: str,
    version: str | None,
) -> dict[str, Any]:
    return {
        "snapshot_id": audit_id,
        "taken_at": taken_at,
        "vendor": vendor,
        "account": account,
        "subscription_id": POINTER_ID,
        "name": None,
        "etag": version,
        "not_modified": True,
        "body": None,
        "flow_run_id": store.flow_run_id,
        "body_hash": None,
        "resource": POINTER_RESOURCE,
        "same_as": full_id,
    }


def _write(store: HistoryStore, result: AuditResult, inputs: str | None, rows: list[dict[str, Any]]) -> None:
    with store.writer() as con:
        _append(con, "audits", [{**_audit_row(result, store.flow_run_id), "inputs": inputs}])
        _append(con, "subscription_snapshots", rows)
        _append(
            con,
            "drift_findings",
            [
                {
                    "audit_id": result.audit_id,
                    "found_at": result.finished_at,
                    **f.model_dump(exclude={"fields"}),
                    "fields": json.dumps(f.fields, default=str) if f.fields is not None else None,
                    "flow_run_id": store.flow_run_id,
                }
                for f in result.findings
            ],
        )


def record_failed_audit(
    store: HistoryStore, vendor: str, account: str, audit_id: str, started_at: datetime, error: str
) -> AuditResult:
    """An audit that could not read the vendor: its ``audits`` row says why; the drift view keeps the last good one."""
    result = AuditResult(
        audit_id=audit_id,
        vendor=vendor,
        account=account,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        error=error,
    )
    with store.writer() as con:
        _append(con, "audits", [_audit_row(result, store.flow_run_id)])
    return result


def history_versions(
    store: HistoryStore, findings: Sequence[DriftFinding], observation: Observation, at: datetime
) -> int:
    """Record what the audit learnt about subscriptions the history holds as live.

    A modified one becomes a ``drifted`` version with what the vendor now holds; a disappeared one is
    ``deleted`` (``expired`` for a DMA subscription past its expiry). The versions are stamped `at` (the
    audit's finish time), so that the next audit does not take them for changes made by streamkeeper.
    """
    live = store.current_subscriptions(observation.vendor, observation.account)
    if live.empty:
        return 0
    known = {str(r.subscription_id): r for r in live.itertuples() if r.status not in ("expired", "deleted")}
    items = {i.id: i for i in observation.items}
    versions: list[SubscriptionVersion] = []
    for f in findings:
        if f.against != "previous" or f.subscription_id not in known:
            continue
        row = known[f.subscription_id]
        base: dict[str, Any] = {
            "vendor": observation.vendor,
            "account": observation.account,
            "subscription_id": f.subscription_id,
            "name": _str(row.name),
            "kind": _str(row.kind),
            "owner": _str(row.owner),  # what the audit records keeps its owner (never taken over by the spec)
            "valid_from": at,
        }
        if f.finding == "modified" and f.subscription_id in items:
            item = items[f.subscription_id]
            versions.append(
                SubscriptionVersion(
                    **base,
                    desired=_json_or_none(row.desired),
                    observed=item.body,
                    etag=item.etag,
                    status="drifted",
                    change="drifted",
                    detail="changed at the vendor: " + ", ".join(sorted(f.fields or {})),
                )
            )
        elif f.finding in ("disappeared", "expired"):
            versions.append(
                SubscriptionVersion(
                    **base,
                    expires_at=as_utc(row.expires_at),
                    status="expired" if f.finding == "expired" else "deleted",
                    change="expired" if f.finding == "expired" else "deleted",
                    detail="gone at the vendor (seen by the audit)",
                )
            )
    return store.record_versions(versions)


# -- helpers --------------------------------------------------------------------------------------------------
def field_diff(was: dict[str, Any] | None, now: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Fields whose values differ, as ``{field: {"was": ..., "now": ...}}`` (nested values compared whole)."""
    was, now = was or {}, now or {}
    return {
        key: {"was": was.get(key), "now": now.get(key)}
        for key in sorted(set(was) | set(now))
        if canonical(was.get(key)) != canonical(now.get(key))
    }


def _finding(
    observation: Observation,
    resource: str,
    sub_id: str,
    name: str | None,
    finding: Finding,
    fields: dict[str, dict[str, Any]] | None,
    detail: str | None = None,
) -> DriftFinding:
    return DriftFinding(
        vendor=observation.vendor,
        account=observation.account,
        resource=resource,
        subscription_id=sub_id,
        name=name,
        against="previous",
        finding=finding,
        fields=fields,
        detail=detail,
    )


def _changed_by_us_since(store: HistoryStore, vendor: str, account: str, since: datetime) -> set[str]:
    frame = store.query(
        "SELECT DISTINCT subscription_id FROM subscriptions WHERE vendor = ? AND account = ? AND valid_from > ?",
        [vendor, account, since],
    )
    return set(frame["subscription_id"].astype(str))


def _latest_bodies(
    store: HistoryStore, vendor: str, account: str, ids: list[str]
) -> dict[tuple[str, str], dict[str, Any]]:
    """The last stored body of each of these things (the snapshot rows with a body)."""
    if not ids:
        return {}
    frame = store.query(
        """
        SELECT coalesce(resource, 'subscription') AS resource, subscription_id, arg_max(body, taken_at) AS body
        FROM subscription_snapshots
        WHERE vendor = ? AND account = ? AND body IS NOT NULL AND list_contains(?, subscription_id)
        GROUP BY ALL
        """,
        [vendor, account, ids],
    )
    return {(r.resource, r.subscription_id): json.loads(r.body) for r in frame.itertuples()}


def _strip(body: dict[str, Any] | None, volatile: Sequence[str]) -> dict[str, Any] | None:
    return None if body is None else {k: v for k, v in body.items() if k not in volatile}


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _str(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _json_or_none(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):
        loaded = json.loads(value)
        return loaded if isinstance(loaded, dict) else None
    return None


def _audit_row(result: AuditResult, flow_run_id: str | None) -> dict[str, Any]:
    return {
        **result.model_dump(exclude={"findings"}),
        "findings": len(result.findings),
        "flow_run_id": flow_run_id,
    }


def _append(con: Any, table: str, rows: list[dict[str, Any]]) -> None:
    """Insert rows (dicts keyed by column) in one statement."""
    if not rows:
        return
    frame = pd.DataFrame(rows)
    for column in frame.columns:
        if frame[column].isna().all():
            frame[column] = frame[column].astype("object")
    columns = ", ".join(f'"{c}"' for c in frame.columns)
    name = f"batch_{table}"
    con.register(name, frame)
    try:
        con.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {name}").fetchall()
    finally:
        con.unregister(name)
