"""``audit-subscriptions``: snapshot what every vendor holds, and report drift against the spec and the last
snapshot; optionally heal it by applying the spec.

One task per connection of the spec. Each writes its snapshot (conditional reads where the vendor has
ETags: an unchanged DMA subscription costs a 304 and stores no body), its findings and its audit row in
the history store; the ``drift`` view and the ``drift`` table artifact show what differs.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, Field

from flows.artifacts import connection, cut
from flows.dashboard import publish_dashboard
from flows.parameters import Text, existing_file, given
from streamkeeper.audit import AuditResult, DriftFinding
from streamkeeper.errors import StreamkeeperError
from streamkeeper.spec import load_spec
from tasks.audit import audit_vendor_connection
from tasks.dashboard import DashboardPage

ARTIFACT_ROWS = 500

HEALABLE = frozenset({"missing", "changed", "expired"})
"""Findings that applying the spec repairs (extra ones stay: apply deletes only with prune)."""


class AuditSummary(BaseModel):
    """What an audit run saw; after healing, `audits` is the audit taken after the apply."""

    audits: list[AuditResult] = Field(default_factory=list)
    healed: bool = False
    before_heal: list[AuditResult] = Field(default_factory=list)
    dashboard: DashboardPage | None = None

    @property
    def findings(self) -> list[DriftFinding]:
        return [f for a in self.audits for f in a.findings]

    @property
    def failed(self) -> list[AuditResult]:
        return [a for a in self.audits if a.error]

    def line(self) -> str:
        observed = sum(a.observed for a in self.audits)
        unchanged = sum(a.not_modified for a in self.audits)
        stored = sum(a.bodies_stored for a in self.audits)
        return (
            f"{len(self.audits)} connection(s), {observed} resources ({unchanged} unchanged, {stored} bodies "
            f"stored), {len(self.findings)} drift finding(s), {len(self.failed)} failed"
        )


@flow(name="audit-subscriptions", log_prints=True)
def audit_subscriptions(
    spec_path: str, heal: bool = False, db_path: Text = None, dashboard_path: Text = None
) -> AuditSummary:
    """Snapshot every connection of the spec at its vendor and report the drift.

    Args:
        spec_path: Spec file (YAML): which connections to audit and what they should hold; a relative path
            is taken from the deployment's working directory.
        heal: Apply the spec when it drifted (provision-subscriptions, without prune), then audit again.
        db_path: History store file; empty: $STREAMKEEPER_DB, else data/streamkeeper.duckdb.
        dashboard_path: Also write the dashboard (one HTML page of charts) to this file, linked from the
            run's artifacts; empty: none. A relative path is taken from the deployment's working directory.
    """
    logger = get_run_logger()
    db_path = given(db_path)
    summary = AuditSummary(audits=_audit_all(spec_path, db_path))
    logger.info("audit: %s", summary.line())
    _publish(summary)
    if heal and any(f.against == "spec" and f.finding in HEALABLE for f in summary.findings):
        from flows.provision import provision_subscriptions

        logger.info("healing: applying %s", spec_path)
        provision_subscriptions(spec_path=spec_path, dry_run=False, db_path=db_path)
        summary = AuditSummary(audits=_audit_all(spec_path, db_path), healed=True, before_heal=summary.audits)
        logger.info("after healing: %s", summary.line())
        _publish(summary)
    if given(dashboard_path):
        summary.dashboard = publish_dashboard(str(dashboard_path), db_path)
        logger.info("dashboard: %s", summary.dashboard.path)
    if summary.failed:
        first = summary.failed[0]
        raise StreamkeeperError(
            f"{len(summary.failed)} connection(s) could not be audited; first: {first.vendor}/{first.account}: "
            f"{first.error}"
        )
    return summary


def _audit_all(spec_path: str, db_path: str | None) -> list[AuditResult]:
    path = existing_file(spec_path)
    spec = load_spec(path)
    runs = [
        audit_vendor_connection.submit(vendor, str(path), c.connection, getattr(c, "account", None), db_path)
        for vendor, c in spec.connections()
    ]
    return [run.result() for run in runs]


def _publish(summary: AuditSummary) -> None:
    """The ``drift`` table: one row a finding, in four columns that fit the UI (`flows.artifacts`)."""
    rows = [
        {
            "connection": connection(f.vendor, f.account),
            "what": cut(f"{f.resource} {f.name or f.subscription_id or ''}", 26),
            "finding": f"{'spec' if f.against == 'spec' else 'last audit'}: {f.finding}",
            "detail": cut(f.detail, 28),
        }
        for f in summary.findings[:ARTIFACT_ROWS]
    ]
    rows += [
        {
            "connection": connection(a.vendor, a.account),
            "what": "",
            "finding": "audit failed",
            "detail": cut(a.error, 28),
        }
        for a in summary.failed
    ]
    description = summary.line() + (" (after healing)" if summary.healed else "")
    if len(summary.findings) > ARTIFACT_ROWS:
        description += f"; first {ARTIFACT_ROWS} findings shown"
    description += "; each finding in full (ids, field values): `streamkeeper report drift`"
    create_table_artifact(key="drift", table=rows or [{"finding": "no drift"}], description=description)
