"""Unchanged audits cost what they change: one snapshot row pointing at the last full one, and the history
still answers "what did the vendor hold at T" and drift right after a run of them.

The DMA emulator over HTTPS on loopback, the real client and a real DuckDB file; no Prefect (the audit as a
library call, `audit_connection`), the clock given where the test needs time to pass.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from streamkeeper.audit import AuditResult, audit_connection
from streamkeeper.provision.adapters import make_adapter
from streamkeeper.reports import run_report
from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.dma import DMASandbox
from streamkeeper.sandbox.tls import TLSFiles
from streamkeeper.spec import load_spec_text
from streamkeeper.store import HistoryStore, SubscriptionVersion
from streamkeeper.vendors.dma import DMAClient
from streamkeeper.vendors.http import RetryPolicy, tls_verify

SPEC = """
dma:
  - connection: snap-dma
    subscriptions:
      - {name: all, subject: all_conferences, consumer_url: 'http://x.test/all', time_to_live: 3600}
      - {name: one, subject: conference, conference: '1', consumer_url: 'http://x.test/one', time_to_live: 3600}
      - {name: ghost, subject: all_conferences, consumer_url: 'http://x.test/ghost', time_to_live: 3600}
"""


@pytest.fixture
def client(serve: Callable[..., SandboxServer], tls_files: TLSFiles) -> DMAClient:
    dma = DMASandbox(validate_consumer_url=False)
    serve(dma, tls=tls_files)
    made = DMAClient(
        dma.url + "/api/rest",
        username="provisioner",
        password=SecretStr("provisioner-pass"),
        verify=tls_verify(tls_files.cert_pem),
        retry=RetryPolicy(backoff_base=0.01),
    )
    for name, subject in (("all", "conferences"), ("one", "conferences/1"), ("rogue", "conferences/2")):
        made.create_subscription(
            subject, {"consumer_url": f"http://x.test/{name}", "time_to_live": 3600, "passback": name}
        )
    return made


def audit(
    client: DMAClient, db: Path, clock: Callable[[], datetime] | None = None, spec: str = SPEC
) -> AuditResult:
    adapter = make_adapter("dma", load_spec_text(spec).dma[0], client)
    store = HistoryStore(db)
    return audit_connection(adapter, store, clock=clock) if clock else audit_connection(adapter, store)


def findings(result: AuditResult) -> set[tuple[str, str | None, str]]:
    return {(f.against, f.name, f.finding) for f in result.findings}


def snapshot_rows(db: Path, audit_id: str) -> list[tuple[str, str, str | None]]:
    frame = HistoryStore(db).query(
        "SELECT resource, subscription_id, same_as FROM subscription_snapshots WHERE snapshot_id = ? "
        "ORDER BY subscription_id",
        [audit_id],
    )
    return [(r.resource, r.subscription_id, r.same_as) for r in frame.itertuples()]


def held(db: Path, at: datetime | None = None) -> dict[str, int]:
    """What the vendor held at `at` (the vendor_held report): name -> time-to-live."""
    params = {"at": at.isoformat()} if at is not None else {}
    frame = run_report("vendor_held", db, params)
    return {str(r.name): int(json.loads(r.body)["time_to_live"]) for r in frame.itertuples()}


def test_unchanged_audits_write_one_row_and_the_history_still_answers(
    client: DMAClient, db_path: Path
) -> None:
    before_any = datetime.now(UTC)
    first = audit(client, db_path)
    expected = {("spec", "ghost", "missing"), ("spec", "rogue", "extra")}
    assert findings(first) == expected
    assert (first.observed, first.bodies_stored) == (3, 3)
    assert len(snapshot_rows(db_path, first.audit_id)) == 3

    # a run of unchanged audits: one 304 each, one row each pointing at the first, the same drift
    repeats = [audit(client, db_path) for _ in range(3)]
    for repeat in repeats:
        assert snapshot_rows(db_path, repeat.audit_id) == [("snapshot", "*", first.audit_id)]
        assert (repeat.observed, repeat.not_modified, repeat.bodies_stored, repeat.requests) == (3, 3, 0, 1)
        assert findings(repeat) == expected
    drift = HistoryStore(db_path).query("SELECT against, name, finding, audit_id FROM drift")
    assert {(r.against, r.name, r.finding) for r in drift.itertuples()} == expected
    assert set(drift["audit_id"]) == {repeats[-1].audit_id}
    after_repeats = datetime.now(UTC)

    # then a change behind our back: the next audit compares with what the first one stored
    listed = {s.passback: s for s in client.list_subscriptions().subscriptions}  # type: ignore[union-attr]
    client.update_time_to_live(listed["all"].subscription_identifier, 600, listed["all"].entity_tag or "")
    changed = audit(client, db_path)
    assert findings(changed) == expected | {("previous", "all", "modified"), ("spec", "all", "changed")}
    modified = next(f for f in changed.findings if f.finding == "modified")
    assert modified.fields == {"time_to_live": {"was": 3600, "now": 600}}
    assert changed.bodies_stored == 1  # only "all"; the others are as the first audit stored them
    assert [r[1] for r in snapshot_rows(db_path, changed.audit_id)] == sorted(
        s.subscription_identifier for s in listed.values()
    )

    # what the vendor held at T: nothing before the first audit, the first audit's holdings all through
    # the unchanged ones, and the change after it
    assert held(db_path, before_any) == {}
    assert held(db_path, after_repeats) == {"all": 3600, "one": 3600, "rogue": 3600}
    assert held(db_path) == {"all": 600, "one": 3600, "rogue": 3600}

    # and an unchanged audit after the change points at the changed one
    again = audit(client, db_path)
    assert snapshot_rows(db_path, again.audit_id) == [("snapshot", "*", changed.audit_id)]
    assert findings(again) == expected | {("spec", "all", "changed")}
    assert held(db_path) == {"all": 600, "one": 3600, "rogue": 3600}


def test_a_repeated_audit_tells_missing_from_expired_at_its_own_time(
    client: DMAClient, db_path: Path
) -> None:
    # the history saw "ghost" live, expiring in an hour; the DMA no longer holds it
    expires = datetime.now(UTC) + timedelta(hours=1)
    HistoryStore(db_path).record_versions(
        [
            SubscriptionVersion(
                vendor="dma",
                account="snap-dma",
                subscription_id="99",
                name="ghost",
                change="created",
                status="active",
                expires_at=expires,
            )
        ]
    )
    first = audit(client, db_path)
    assert ("spec", "ghost", "missing") in findings(first)  # not past its expiry yet

    later = audit(client, db_path, clock=lambda: expires + timedelta(minutes=5))
    assert snapshot_rows(db_path, later.audit_id) == [("snapshot", "*", first.audit_id)]  # a repeat
    ghost = next(f for f in later.findings if f.name == "ghost")
    assert (ghost.finding, ghost.subscription_id) == ("expired", "99")


def test_an_edited_spec_is_compared_again_though_the_vendor_is_unchanged(
    client: DMAClient, db_path: Path
) -> None:
    first = audit(client, db_path)
    edited = SPEC.replace("x.test/one', time_to_live: 3600", "x.test/one', time_to_live: 600")
    assert edited != SPEC
    again = audit(client, db_path, spec=edited)
    assert snapshot_rows(db_path, again.audit_id) == [("snapshot", "*", first.audit_id)]  # vendor unchanged
    changed = next(f for f in again.findings if f.finding == "changed")
    assert (changed.name, changed.fields) == ("one", {"time_to_live": {"want": 600, "have": 3600}})
