"""Auditing what the vendors hold: snapshots (conditional where the vendor allows), drift against the
previous snapshot and against the spec.

`audit_connection` audits one connection of the spec: it reads what the vendor holds through the
connection's provisioning adapter (`observe`), compares it with the previous snapshot
(`snapshots.compare_previous`) and with the spec (the planner, read-only: `spec_drift`), and records the
snapshot, the findings and the audit in one transaction. No Prefect here: ``tasks/audit.py`` wraps it.

An audit costs what changed: when the vendor's first answer names what it holds (the DMA list's ETag, a
304 when nothing changed) and that, the connection's spec entries and the account's history are what the
latest audit worked from (`inputs`), it repeats that audit's findings against the spec and writes one
snapshot row pointing at the last full snapshot, without reading the list or planning again.
"""

from __future__ import annotations

from datetime import UTC, datetime

from streamkeeper.audit.inputs import audit_inputs, history_mark
from streamkeeper.audit.observe import Observation, Observed, observe, read_vendor
from streamkeeper.audit.snapshots import (
    AuditResult,
    DriftFinding,
    compare_previous,
    history_versions,
    latest_audit,
    new_audit_id,
    previous_snapshot,
    record_audit,
    record_failed_audit,
    record_repeat,
)
from streamkeeper.audit.spec_drift import plan_from_observation, repeat_spec_findings, spec_findings
from streamkeeper.errors import StreamkeeperError
from streamkeeper.keepalive import Clock, utc_now
from streamkeeper.provision.adapters.base import Adapter
from streamkeeper.store import HistoryStore
from streamkeeper.vendors.http import redact


def audit_connection(
    adapter: Adapter,
    store: HistoryStore,
    *,
    check_spec: bool = True,
    clock: Clock = utc_now,
) -> AuditResult:
    """Snapshot what one connection holds at its vendor and record its drift.

    Args:
        adapter: the connection's provisioning adapter (its client's recorder counts the audit's requests).
        store: the history store.
        check_spec: compare with the connection's spec entries (the planner); False compares only with
            the previous snapshot.
        clock: the current time as the vendor sees it (whether a vanished subscription had expired).

    A vendor that cannot be read gives an audit with `error` set (the ``drift`` view keeps showing the
    last good audit); it does not raise.
    """
    vendor, account = adapter.vendor, adapter.account
    audit_id = new_audit_id()
    started = datetime.now(UTC)
    latest = latest_audit(store, vendor, account)
    history = history_mark(store, vendor, account)
    recorder = adapter.client.recorder
    before = len(recorder)
    try:
        read = read_vendor(adapter, store)
        inputs = audit_inputs(read.version, history, adapter, check_spec)
        if latest is not None and inputs is not None and inputs == latest.inputs:
            return record_repeat(
                store,
                latest,
                repeat_spec_findings(store, latest, vendor, account, clock()) if check_spec else [],
                vendor=vendor,
                account=account,
                audit_id=audit_id,
                started_at=started,
                requests=len(recorder) - before,
                spec_checked=check_spec,
                inputs=inputs,
                version=read.version,
            )
        previous = previous_snapshot(store, latest)
        observation = observe(adapter, store, read, previous.etags() if previous else {})
    except StreamkeeperError as exc:
        return record_failed_audit(store, vendor, account, audit_id, started, redact(str(exc)))
    requests = len(recorder) - before
    now = clock()
    findings = compare_previous(store, observation, previous, now)
    if check_spec:
        plan = plan_from_observation(adapter, observation, store)
        findings += spec_findings(plan, store, vendor, account, now)
    result = record_audit(
        store,
        observation,
        previous,
        findings,
        audit_id=audit_id,
        started_at=started,
        requests=requests,
        spec_checked=check_spec,
        inputs=audit_inputs(observation.version, history, adapter, check_spec),
    )
    history_versions(store, findings, observation, at=result.finished_at)
    return result


__all__ = ["AuditResult", "DriftFinding", "Observation", "Observed", "audit_connection"]
