"""audit-subscriptions against the emulators, with real Prefect (test harness) and a real DuckDB file."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from pydantic import SecretStr

from blocks.dma import DMACredentials
from blocks.thingspace import ThingSpaceCredentials
from flows.audit import audit_subscriptions
from flows.provision import provision_subscriptions
from streamkeeper.reports import run_report
from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.dma import DMASandbox
from streamkeeper.sandbox.thingspace import (
    DEFAULT_ACCOUNT,
    DEFAULT_APP_KEY,
    DEFAULT_APP_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    ThingSpaceSandbox,
)
from streamkeeper.sandbox.tls import TLSFiles
from streamkeeper.store import HistoryStore

pytestmark = pytest.mark.usefixtures("prefect_api")


def calls_of(db: Path, flow_run_id: str) -> list[tuple[str, int]]:
    frame = HistoryStore(db).query(
        "SELECT operation, status FROM api_calls WHERE flow_run_id = ? ORDER BY called_at", [flow_run_id]
    )
    return [(str(o), int(s)) for o, s in frame.values.tolist()]


def findings(summary: object) -> set[tuple[str, str | None, str]]:
    return {(f.against, f.name, f.finding) for f in summary.findings}  # type: ignore[attr-defined]


def run_of(db: Path, audit_id: str) -> str:
    frame = HistoryStore(db).query("SELECT flow_run_id FROM audits WHERE audit_id = ?", [audit_id])
    return str(frame["flow_run_id"][0])


async def _drift_artifact(flow_run_id: str) -> object:
    async with get_client() as client:
        found = [
            a for a in await client.read_artifacts() if a.key == "drift" and str(a.flow_run_id) == flow_run_id
        ]
        return found[0] if found else None


def test_dma_audit_is_304s_when_unchanged_and_shows_drift_made_behind_our_back(
    serve: Callable[..., SandboxServer], tls_files: TLSFiles, db_path: Path, tmp_path: Path
) -> None:
    dma = DMASandbox(validate_consumer_url=False)
    serve(dma, tls=tls_files)
    block = DMACredentials(
        base_url=dma.url + "/api/rest",
        username="provisioner",
        password=SecretStr("provisioner-pass"),
        ca_bundle=tls_files.cert_pem,
    )
    block.save("audit-dma", overwrite=True)
    client = block.get_client()
    for name, subject in (("all", "conferences"), ("one", "conferences/1")):
        client.create_subscription(
            subject, {"consumer_url": f"http://x.test/{name}", "time_to_live": 3600, "passback": name}
        )
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "dma:\n  - connection: audit-dma\n    subscriptions:\n"
        "      - {name: all, subject: all_conferences, consumer_url: 'http://x.test/all', time_to_live: 3600}\n"
        "      - {name: one, subject: conference, conference: '1', consumer_url: 'http://x.test/one', "
        "time_to_live: 3600}\n"
    )

    first = audit_subscriptions(spec_path=str(spec), db_path=str(db_path))
    assert first.findings == []
    assert (first.audits[0].observed, first.audits[0].bodies_stored) == (2, 2)

    # nothing changed: the one list GET is answered 304, and no body is stored
    second = audit_subscriptions(spec_path=str(spec), db_path=str(db_path))
    audit = second.audits[0]
    assert (audit.observed, audit.not_modified, audit.bodies_stored, audit.requests) == (2, 2, 0, 1)
    assert calls_of(db_path, run_of(db_path, audit.audit_id)) == [("list_subscriptions", 304)]
    stored = HistoryStore(db_path).query(
        "SELECT subscription_id, same_as, body FROM subscription_snapshots WHERE snapshot_id = ?",
        [audit.audit_id],
    )
    # one row, pointing at the first audit's snapshot (which stands for this one too)
    assert stored[["subscription_id", "same_as"]].values.tolist() == [["*", first.audits[0].audit_id]]
    assert stored["body"].isna().all()
    assert second.findings == []

    # behind our back: someone shortens "all", deletes "one", adds one of their own
    listed = {s.passback: s for s in client.list_subscriptions().subscriptions}  # type: ignore[union-attr]
    client.update_time_to_live(listed["all"].subscription_identifier, 600, listed["all"].entity_tag or "")
    client.delete_subscription(listed["one"].subscription_identifier)
    client.create_subscription(
        "conferences/2", {"consumer_url": "http://x.test/rogue", "time_to_live": 900, "passback": "rogue"}
    )
    third = audit_subscriptions(spec_path=str(spec), db_path=str(db_path))
    assert findings(third) == {
        ("previous", "all", "modified"),
        ("spec", "all", "changed"),
        ("previous", "one", "disappeared"),
        ("spec", "one", "missing"),
        ("previous", "rogue", "appeared"),
        ("spec", "rogue", "extra"),
    }
    modified = next(f for f in third.findings if f.finding == "modified")
    assert modified.fields == {"time_to_live": {"was": 3600, "now": 600}}  # expiry and ETag moves ignored
    changed = next(f for f in third.findings if f.finding == "changed")
    assert changed.fields == {"time_to_live": {"want": 3600, "have": 600}}
    assert third.audits[0].bodies_stored == 2  # "all" changed, "rogue" is new; "one" has none to store

    # the drift view, its report and the artifact say the same
    view = HistoryStore(db_path).query("SELECT against, name, finding FROM drift")
    assert set(map(tuple, view.values.tolist())) == findings(third)
    assert len(run_report("drift", db_path)) == 6
    artifact = asyncio.run(_drift_artifact(run_of(db_path, third.audits[0].audit_id)))
    assert artifact is not None and "6 drift finding(s)" in (artifact.description or "")  # type: ignore[attr-defined]

    # heal: apply the spec, then audit again; what apply leaves alone without prune is still "extra"
    healed = audit_subscriptions(spec_path=str(spec), heal=True, db_path=str(db_path))
    assert healed.healed
    assert {f for f in findings(healed) if f[0] == "spec"} == {("spec", "rogue", "extra")}
    now = {s.passback: s for s in client.list_subscriptions().subscriptions}  # type: ignore[union-attr]
    assert now["all"].time_to_live == 3600 and "one" in now


def test_thingspace_plain_reads_store_a_body_only_when_it_changed(
    serve: Callable[..., SandboxServer], db_path: Path, tmp_path: Path
) -> None:
    thingspace = ThingSpaceSandbox()
    serve(thingspace)
    block = ThingSpaceCredentials(
        base_url=thingspace.url,
        app_key=DEFAULT_APP_KEY,
        app_secret=SecretStr(DEFAULT_APP_SECRET),
        username=DEFAULT_USERNAME,
        password=SecretStr(DEFAULT_PASSWORD),
        account_name=DEFAULT_ACCOUNT,
    )
    block.save("audit-ts", overwrite=True)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "thingspace:\n  - connection: audit-ts\n    targets:\n"
        "      - name: receiver\n        address: http://127.0.0.1:8099/thingspace\n"
        "        subscriptions:\n          - {name: device-events, streamkind: ts.event}\n"
    )
    provision_subscriptions(spec_path=str(spec), dry_run=False, db_path=str(db_path))

    first = audit_subscriptions(spec_path=str(spec), db_path=str(db_path))
    second = audit_subscriptions(spec_path=str(spec), db_path=str(db_path))
    assert first.findings == [] and second.findings == []
    assert (first.audits[0].observed, first.audits[0].bodies_stored) == (2, 2)  # the target and subscription
    assert (second.audits[0].not_modified, second.audits[0].bodies_stored) == (2, 0)

    # disabled behind our back (a PATCH at the vendor): drift, and a "drifted" version in the history
    with block.get_client() as client:
        sub = next(s for s in client.query_subscriptions() if s.name == "device-events")
        client.update_subscription({"id": sub.id, "disabled": True})
    third = audit_subscriptions(spec_path=str(spec), db_path=str(db_path))
    assert findings(third) == {
        ("previous", "device-events", "modified"),
        ("spec", "device-events", "changed"),
    }
    modified = next(f for f in third.findings if f.finding == "modified")
    assert modified.fields is not None and modified.fields["disabled"] == {"was": False, "now": True}
    assert third.audits[0].bodies_stored == 1
    latest = HistoryStore(db_path).query(
        "SELECT change, observed FROM current_subscriptions WHERE subscription_id = ?", [sub.id]
    )
    assert latest["change"].tolist() == ["drifted"]
    assert json.loads(latest["observed"][0])["disabled"] is True
