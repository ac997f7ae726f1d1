"""Each vendor's rules as plan and apply respect them: replacements, streamkind slots, write-only secrets,
lost creates, twins, the seed Equinix API. All against the emulators."""

from __future__ import annotations

import json

import pytest
from conftest import Kit, fast_retry  # tests/provision/conftest.py
from pydantic import SecretStr

from streamkeeper.provision import apply_plan, known_from_store, make_adapter, plan_connection, versions
from streamkeeper.sandbox.equinix import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, EquinixSandbox
from streamkeeper.sandbox.thingspace import ThingSpaceSandbox
from streamkeeper.spec import load_spec_text
from streamkeeper.vendors.dma import DMAClient
from streamkeeper.vendors.equinix import EquinixClient
from streamkeeper.vendors.thingspace import ThingSpaceClient

SENTINELS = ("S3NTINEL",)


def _no_secret(*texts: str) -> None:
    for text in texts:
        for sentinel in SENTINELS:
            assert sentinel not in text


def test_dma_changes_beyond_time_to_live_are_replacements_and_secrets_stay_out(make_kit) -> None:  # type: ignore[no-untyped-def]
    kit: Kit = make_kit("dma")
    kit.apply(kit.plan())
    client = kit.client
    assert isinstance(client, DMAClient)

    # the password block is write-only: never compared with the vendor, so no drift on every plan...
    assert kit.plan().exit_code == 0
    # ...but a new block name (a rotated credential) is seen against the last applied spec: a replacement
    kit.spec_text = kit.spec_text.replace("password_block: dma-notify", "password_block: dma-notify-2")
    kit.secrets["dma-notify-2"] = "S3NTINEL-rotated"
    plan = kit.plan()
    [change] = plan.pending()
    assert change.action == "replace" and [d.field for d in change.diffs] == ["password_block"]
    old_id = change.subscription_id
    [outcome] = kit.apply(plan)
    assert outcome.result == "replaced" and outcome.subscription_id != old_id
    listing = client.list_subscriptions()
    assert listing is not None
    assert sorted(s.passback or "" for s in listing.subscriptions) == [
        "all-conferences",
        "board",
        "town-hall",
    ]
    assert kit.plan().exit_code == 0

    # credentials added where there were none: seen too (the DMA shows the username, the block is on record)
    kit.spec_text = kit.spec_text.replace(
        "time_to_live: 0\n",
        "time_to_live: 0\n        notification_credentials: {username: sk, password_block: dma-notify}\n",
    )
    pending = kit.plan().pending()
    assert len(pending) == 1, kit.plan().render()
    [change] = pending
    assert (change.name, change.action) == ("board", "replace")
    assert sorted(d.field for d in change.diffs) == ["password_block", "username"]
    assert [o.result for o in kit.apply(kit.plan())] == ["replaced"]

    # a consumer URL cannot be PUT: replace, never an update the DMA would refuse
    kit.spec_text = kit.spec_text.replace(
        "http://127.0.0.1:9/dma\n        time_to_live: 1200",
        "http://127.0.0.1:8/new\n        time_to_live: 1200",
    )
    [change] = kit.plan().pending()
    assert (change.name, change.action) == ("town-hall", "replace")

    history = kit.store.query("SELECT desired, observed FROM subscriptions")
    _no_secret(plan.render(), plan.model_dump_json(), history.to_json())
    assert kit.sandbox.subscriptions  # type: ignore[attr-defined]
    sent = [s.password for s in kit.sandbox.subscriptions.values() if s.passback == "all-conferences"]  # type: ignore[attr-defined]
    assert sent == ["S3NTINEL-rotated"]  # the secret did reach the vendor, and only the vendor


def test_dma_lost_creates_are_found_by_passback_never_duplicated(make_kit) -> None:  # type: ignore[no-untyped-def]
    kit: Kit = make_kit("dma")
    # every create's answer is lost after the DMA made the subscription
    kit.sandbox.faults.set(rate=1.0, kinds=["drop_after"], path="/conferences", method="POST", seed=3)
    outcomes = kit.apply(kit.plan())
    assert [o.result for o in outcomes] == ["created"] * 3
    kit.sandbox.faults.clear()
    assert len(kit.sandbox.subscriptions) == 3  # type: ignore[attr-defined]
    assert kit.plan().exit_code == 0


def test_a_create_that_failed_after_the_vendor_made_it_is_adopted_next_time(make_kit) -> None:  # type: ignore[no-untyped-def]
    kit: Kit = make_kit("dma")
    # answers lost and every lookup refused: the applier reports failures, the DMA holds the subscriptions
    kit.client.retry = fast_retry(attempts=1)
    kit.sandbox.faults.set(rate=1.0, kinds=["drop_after"], path="/conferences", method="POST")
    outcomes = kit.apply(kit.plan())
    assert {o.result for o in outcomes} == {"failed"}
    kit.sandbox.faults.clear()
    kit.client.retry = fast_retry()
    plan = kit.plan()
    assert [c.action for c in plan.pending()] == ["adopt"] * 3, plan.render()
    writes = kit.writes
    assert {o.result for o in kit.apply(plan)} == {"adopted"}
    assert kit.writes == writes  # adopting is a history row, not a vendor call
    assert set(kit.store.query("SELECT change FROM current_subscriptions")["change"]) == {"adopted"}
    assert kit.plan().exit_code == 0


def test_twins_at_the_vendor_one_is_matched_the_other_reported(make_kit) -> None:  # type: ignore[no-untyped-def]
    kit: Kit = make_kit("dma")
    kit.apply(kit.plan())
    assert isinstance(kit.client, DMAClient)
    kit.client.create_subscription(
        "conferences", {"consumer_url": "http://127.0.0.1:9/dma", "time_to_live": 600, "passback": "board"}
    )
    plan = kit.plan()
    assert plan.exit_code == 0 and [r.name for r in plan.unmanaged] == ["board"]
    pruned = kit.plan(prune=True)
    [delete] = pruned.pending()
    assert delete.action == "delete"
    known_id = kit.store.query("SELECT subscription_id FROM current_subscriptions WHERE name = 'board'")
    assert delete.subscription_id not in set(known_id["subscription_id"])  # the one we made survives


def test_thingspace_changed_target_is_replaced_and_its_subscriptions_move(make_kit) -> None:  # type: ignore[no-untyped-def]
    kit: Kit = make_kit("thingspace")
    kit.apply(kit.plan())
    client = kit.client
    assert isinstance(client, ThingSpaceClient)
    old = {t.name: t.id for t in client.query_targets()}

    kit.spec_text = kit.spec_text.replace("address: 127.0.0.1:9443", "address: 127.0.0.1:9444")
    plan = kit.plan()
    actions = sorted((c.type, c.name, c.action) for c in plan.pending())
    assert actions == [
        ("subscription", "diagnostics", "update"),
        ("subscription", "events", "update"),
        ("target", "receiver", "replace"),
    ], plan.render()
    outcomes = kit.apply(plan)
    assert all(o.ok for o in outcomes), [o.detail for o in outcomes]
    targets = {t.name: t for t in client.query_targets()}
    assert set(targets) == {"receiver", "queue"} and targets["receiver"].id != old["receiver"]
    assert targets["receiver"].address == "127.0.0.1:9444"
    on_receiver = sorted(
        s.name or "" for s in client.query_subscriptions() if s.targetid == targets["receiver"].id
    )
    assert on_receiver == ["diagnostics", "events"]
    assert kit.plan().exit_code == 0
    rows = kit.store.query(
        "SELECT subscription_id, change FROM subscriptions WHERE kind = 'ts.target' ORDER BY valid_from"
    )
    assert (old["receiver"], "deleted") in list(rows.itertuples(index=False, name=None))


def test_thingspace_a_taken_streamkind_is_a_plan_error_not_a_vendor_error(make_kit) -> None:  # type: ignore[no-untyped-def]
    kit: Kit = make_kit("thingspace")
    client = kit.client
    assert isinstance(client, ThingSpaceClient)
    target = client.create_target(
        {"name": "theirs", "address": "10.0.0.1:443", "addressscheme": "streamrest"}
    )
    client.create_subscription(
        {"name": "console-made", "streamkind": "ts.event", "targetid": target.id, "allowaggregation": False}
    )
    writes = kit.writes
    plan = kit.plan()
    assert plan.exit_code == 1 and len(plan.errors) == 1, plan.render()
    assert "streamkind ts.event" in plan.errors[0] and "console-made" in plan.errors[0]
    assert kit.writes == writes
    # with prune the slot is freed first (stage 0), then the spec's subscription takes it
    pruned = kit.plan(prune=True)
    assert pruned.errors == []
    outcomes = kit.apply(pruned)
    assert all(o.ok for o in outcomes), [o.detail for o in outcomes]
    assert sorted(s.name or "" for s in client.query_subscriptions()) == [
        "config-changes",
        "diagnostics",
        "events",
    ]
    assert sorted(t.name or "" for t in client.query_targets()) == ["queue", "receiver"]


def test_thingspace_receiver_credentials_reach_the_vendor_only(make_kit) -> None:  # type: ignore[no-untyped-def]
    kit: Kit = make_kit("thingspace")
    plan = kit.plan()
    kit.apply(plan)
    sandbox = kit.sandbox
    assert isinstance(sandbox, ThingSpaceSandbox)
    [receiver] = [t for t in sandbox.targets.values() if t.public["name"] == "receiver"]
    assert receiver.headers["Authorization"].startswith("Basic ")
    history = kit.store.query("SELECT * FROM subscriptions").to_json()
    _no_secret(plan.model_dump_json(), history)
    assert json.loads(
        kit.store.query("SELECT desired FROM subscriptions WHERE kind = 'ts.target' AND name = 'receiver'")[
            "desired"
        ][0]
    )["write_only"] == {"username": "sk", "password_block": "ts-receiver"}
    assert kit.plan().exit_code == 0  # the credentials are never read back: no drift


def test_equinix_seed_api_one_subscription_per_organisation(serve, db_path) -> None:  # type: ignore[no-untyped-def]
    from streamkeeper.store import HistoryStore

    sandbox = EquinixSandbox()
    server = serve(sandbox)
    client = EquinixClient(
        server.url,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=SecretStr(DEFAULT_CLIENT_SECRET),
        retry=fast_retry(),
    )
    store = HistoryStore(db_path)
    text = """
equinix:
  - connection: eqx-org
    api: streams
    subscriptions:
      - name: org-stream
        families:
          alarm: [{account: "133724", ibx: [PA4, PA5], alarm_type: [ABSOLUTE]}]
          power: [{account: "133724", ibx: PA4}]
        config: {method: PUSH, provider: GOOGLE, url: "https://push.example.com/eq", token_block: eq-token}
"""
    secrets = {"eq-token": "S3NTINEL-eq-1", "eq-token-2": "S3NTINEL-eq-2"}

    def run(spec_text: str, prune: bool = False) -> tuple[object, list[object]]:
        adapter = make_adapter(
            "equinix", load_spec_text(spec_text).equinix[0], client, secrets=secrets.__getitem__
        )
        plan = plan_connection(adapter, known_from_store(store), prune=prune)
        outcomes = apply_plan(adapter, plan)
        store.record_versions(versions(outcomes))
        return plan, outcomes

    plan, _ = run(text)
    assert [c.action for c in plan.pending()] == ["create"]  # type: ignore[attr-defined]
    [held] = sandbox.subscriptions()
    assert sandbox.streams_token[held["subscriptionId"]] == "S3NTINEL-eq-1"
    plan, outcomes = run(text)
    assert plan.exit_code == 0 and outcomes == []  # type: ignore[attr-defined]
    # a filter changed: the one subscription is updated in place (PUT), token sent again
    plan, _ = run(text.replace("alarm_type: [ABSOLUTE]", "alarm_type: [ABSOLUTE, DIGITAL]"))
    [change] = plan.pending()  # type: ignore[attr-defined]
    assert change.action == "update" and [d.field for d in change.diffs] == ["families.alarm"]
    assert sandbox.subscriptions()[0]["alarm"][0]["alarmType"] == ["ABSOLUTE", "DIGITAL"]
    # another token block: write-only, an update (the vendor never shows the token)
    plan, _ = run(
        text.replace("alarm_type: [ABSOLUTE]", "alarm_type: [ABSOLUTE, DIGITAL]").replace(
            "eq-token}", "eq-token-2}"
        )
    )
    [change] = plan.pending()  # type: ignore[attr-defined]
    assert change.action == "update" and change.diffs[0].write_only
    assert sandbox.streams_token[held["subscriptionId"]] == "S3NTINEL-eq-2"
    _no_secret(store.query("SELECT * FROM subscriptions").to_json())


def test_equinix_one_channel_type_per_organisation_is_checked_when_planning(make_kit) -> None:  # type: ignore[no-untyped-def]
    kit: Kit = make_kit("equinix")
    kit.apply(kit.plan())
    kit.spec_text = kit.spec_text.replace(
        'channel: {url: "https://hooks.example/eq"}',
        "channel: {type: AWS_IOT_CORE, url: 'https://x.iot.example'}",
    )
    writes = kit.writes
    plan = kit.plan()
    assert plan.exit_code == 1, plan.render()
    assert "channel type AWS_IOT_CORE cannot join WEBHOOK" in plan.errors[0], plan.render()
    assert kit.writes == writes


@pytest.mark.parametrize("api", ["streams", "streaming"])
def test_equinix_refusal_on_a_200_fails_the_change_and_shows_in_plan_and_audit(serve, db_path, api) -> None:  # type: ignore[no-untyped-def]
    from streamkeeper.audit import audit_connection
    from streamkeeper.store import HistoryStore

    sandbox = EquinixSandbox()
    client = EquinixClient(
        serve(sandbox).url,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=SecretStr(DEFAULT_CLIENT_SECRET),
        api_generation=api,
        retry=fast_retry(),
    )
    store = HistoryStore(db_path)
    delivery = (
        "config: {method: PULL, provider: AWS}" if api == "streams" else "channel: {url: 'https://h/e'}"
    )
    text = f"""
equinix:
  - connection: eqx-refused
    api: {api}
    subscriptions:
      - name: org-stream
        families:
          power: [{{account: "133724", ibx: {"PA4" if api == "streams" else "[PA4]"}}}]
        {delivery}
"""

    def adapter():  # type: ignore[no-untyped-def]
        return make_adapter("equinix", load_spec_text(text).equinix[0], client, secrets={}.__getitem__)

    # seed: a 200 carries errors[] and a status other than OK (streaming: the subscription reads FAILED)
    sandbox.refusals = [{"code": "IBX_NOT_ALLOWED", "message": "PA4 is not on the account", "more_info": ""}]
    plan = plan_connection(adapter(), known_from_store(store))
    outcomes = apply_plan(adapter(), plan)
    store.record_versions(versions(outcomes))
    [failed] = outcomes
    assert failed.result == "failed", failed
    assert "refused subscription" in (failed.detail or "") and "status FAILED" in (failed.detail or "")
    if api == "streams":
        assert "IBX_NOT_ALLOWED: PA4 is not on the account" in (failed.detail or "")
    # what the vendor holds is on record as failed: stream_health says so, with the vendor's words
    [health] = store.query("SELECT * FROM stream_health").to_dict("records")
    assert health["status"] == "failing" and health["name"] == "org-stream", health
    assert "refused subscription" in health["failure"] and health["vendor_status"] == "FAILED"

    # what the vendor holds (and refused) is seen by the next plan, and by the audit, as drift
    again = plan_connection(adapter(), known_from_store(store))
    [change] = again.pending()
    assert change.action == "update" and "problem" in [d.field for d in change.diffs], again.render()
    result = audit_connection(adapter(), store)
    [finding] = [f for f in result.findings if f.against == "spec"]
    assert finding.finding == "changed" and "problem" in (finding.fields or {}), finding
    assert "status FAILED" in (finding.detail or "")

    # the refusal persists: apply fails clearly again; once the vendor accepts, the drift is gone
    outcomes = apply_plan(adapter(), again)
    assert [o.result for o in outcomes if o.action == "update"] == ["failed"]
    sandbox.refusals = []
    store.record_versions(versions(outcomes))
    healed = plan_connection(adapter(), known_from_store(store))
    outcomes = apply_plan(adapter(), healed)
    store.record_versions(versions(outcomes))
    assert [o.result for o in outcomes if o.action == "update"] == ["updated"]
    assert plan_connection(adapter(), known_from_store(store)).exit_code == 0
    [health] = store.query("SELECT * FROM stream_health").to_dict("records")
    assert health["status"] == "not-started" and health["failure"] is None, health  # accepted, no events yet
