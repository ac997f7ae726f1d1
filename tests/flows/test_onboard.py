"""onboard-organization against the Stream emulator, with real Prefect (test harness) and a real DuckDB file."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import get_client
from pydantic import SecretStr

from blocks.stream import StreamCredentials
from flows.onboard import onboard_organization
from streamkeeper.commands.onboard import WaitingStep, answer_paused_runs, render
from streamkeeper.onboarding import Journal, OnboardingError
from streamkeeper.onboarding.steps import open_sso_link
from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.stream import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PARTNER_ID,
    StreamSandbox,
)
from streamkeeper.store import HistoryStore
from streamkeeper.store.records import utcnow
from tasks.provision import save_secret

pytestmark = pytest.mark.usefixtures("prefect_api")

EXAMPLE = str(Path(__file__).parents[2] / "data" / "specs" / "onboarding-example.yaml")

SMALL = """\
organization:
  name: Chain Grill
  provider_id: chain-grill
  owner: {email: grace@grill.example, first_name: Grace, last_name: Hopper}
return_url: https://partner.example/stream/oauth/callback
pos: {source: toast}
dsps:
  - source: grubhub
    menus: [menu-lunch]
    bindings:
      - {location: toast-loc-001, store: gh-store-001}
      - {location: toast-loc-002, store: gh-store-002, menus: [menu-lunch, menu-dinner]}
flags: [new-menu-sync]
segments: [internal]
sso_users:
  - {email: grace@grill.example, full_name: Grace Hopper, phone_number: "+1 555 0199"}
"""


@pytest.fixture
def sandbox(serve: Callable[..., SandboxServer]) -> StreamSandbox:
    app = StreamSandbox()
    serve(app)
    return app


@pytest.fixture
def block(sandbox: StreamSandbox) -> str:
    name = f"stream-{uuid.uuid4().hex[:8]}"
    StreamCredentials(
        base_url=sandbox.url,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=SecretStr(DEFAULT_CLIENT_SECRET),
        partner_id=DEFAULT_PARTNER_ID,
        timeout_seconds=5.0,
    ).save(name, overwrite=True)
    return name


def steps_of(db_path: Path, where: str = "true") -> list[tuple[str, str]]:
    frame = HistoryStore(db_path).query(
        f"SELECT step, status FROM onboarding_steps WHERE {where} ORDER BY started_at"
    )
    return list(zip(frame["step"], frame["status"], strict=True))


def counts(sandbox: StreamSandbox, provider_id: str) -> dict[str, Any]:
    """How many of each thing the emulator holds for the organisation."""
    orgs = [o for o in sandbox.orgs.values() if o.provider_id == provider_id]
    org_ids = {o.id for o in orgs}
    return {
        "orgs": len(orgs),
        "partner_tokens": len([t for t in sandbox.partner_tokens.values() if t["org_id"] in org_ids]),
        "integrations": Counter(
            f"{i.type}:{i.source}" for i in sandbox.integrations.values() if i.org_id in org_ids
        ),
        "locations": Counter(loc.provider_id for o in orgs for loc in o.locations),
        "bindings": Counter(d.provider_id for o in orgs for loc in o.locations for d in loc.dsps),
    }


async def _artifacts(flow_run_id: str) -> list[Any]:
    async with get_client() as client:
        return [a for a in await client.read_artifacts() if str(a.flow_run_id) == flow_run_id]


def test_full_onboarding_then_a_rerun_that_writes_nothing(
    sandbox: StreamSandbox, block: str, db_path: Path
) -> None:
    sandbox.auto_authorize = True  # the merchant approves at once, as in the demo
    result = onboard_organization(spec_path=EXAMPLE, block_name=block, db_path=str(db_path))

    assert result.status == "live" and result.needs_human == []
    assert counts(sandbox, "luigis-trattoria") == {
        "orgs": 1,
        "partner_tokens": 1,
        "integrations": {"pos:square": 1, "dsp:doordash": 1, "dsp:ubereats": 1},
        "locations": {"sq-loc-001": 1, "sq-loc-002": 1},
        "bindings": {"dd-store-001": 1, "dd-store-002": 1, "ue-store-001": 1},
    }
    org = sandbox.orgs[result.org_id or ""]
    menus = {d.provider_id: d.menu_provider_ids for loc in org.locations for d in loc.dsps}
    assert menus == {
        "dd-store-001": ["menu-lunch", "menu-dinner"],
        "dd-store-002": ["menu-breakfast", "menu-lunch", "menu-dinner"],
        "ue-store-001": [],
    }
    context = ("sandbox-partner", "organization", org.id)
    assert (
        context in sandbox.flags["new-menu-sync"].contexts
        and context in sandbox.segments["beta-merchants"].contexts
    )
    assert result.steps[-2].ids["served"] == {"new-menu-sync": True, "sso-login": True}

    # the rotated refresh token went back to the block; the partner token's value to a Secret block
    credentials = StreamCredentials.load(block)
    assert credentials.refresh_token is not None
    from prefect.blocks.system import Secret

    partner_token = Secret.load(f"{block}-luigis-trattoria-partner-token").get()
    assert isinstance(partner_token, str) and partner_token

    # the user's single-use link logs them in once; a second use is a clear error naming the step
    (link,) = result.sso_links
    assert httpx.get(link.url.get_secret_value()).status_code == 200
    journal = Journal("luigis-trattoria", HistoryStore(db_path))
    with (
        pytest.raises(
            OnboardingError, match=r"^step sso-login: the SSO link for luigi@trattoria.example was"
        ),
        journal.step("sso-login") as step,
        credentials.get_client() as client,
    ):
        open_sso_link(client, link, step)

    # what `streamkeeper onboard` prints: each step, the link (shown there only), the summary
    printed = render(result).splitlines()
    assert printed[0].split() == ["step", "status", "created", "already", "done", "notes"]
    assert any(line.split()[:2] == ["dsp-bind:doordash", "done"] for line in printed)
    assert (
        printed[-2]
        == f"SSO login link for luigi@trattoria.example (single use): {link.url.get_secret_value()}"
    )
    assert printed[-1] == f"luigis-trattoria ({org.id}): live; 16 created, 4 already done"

    writes = sandbox.requests.writes
    again = onboard_organization(spec_path=EXAMPLE, block_name=block, db_path=str(db_path))
    assert sandbox.requests.writes == writes  # not one write call
    assert again.created == [] and again.sso_links == [] and again.status == "live"
    assert len(again.skipped) == len(result.created) + len(result.skipped)
    assert counts(sandbox, "luigis-trattoria")["orgs"] == 1

    store = HistoryStore(db_path)
    rows = store.query("SELECT * FROM onboarding_steps ORDER BY started_at")
    runs = rows["flow_run_id"].dropna().unique().tolist()
    assert len(runs) == 2  # every row carries its flow run
    second = rows[rows["flow_run_id"] == runs[1]]
    assert set(second["status"]) == {"done", "skipped"}
    assert second[second["status"] == "done"]["step"].tolist() == [
        "spec",
        "credentials",
        "token",
        "pos-locations",
    ]
    events = store.query('SELECT event, detail FROM token_events ORDER BY "at"')
    assert events["event"].tolist() == ["issued", "rotated"]
    assert all(block in d for d in events["detail"])

    (artifact,) = asyncio.run(_artifacts(runs[1]))
    assert artifact.key == "onboarding-luigis-trattoria" and artifact.type == "markdown"
    assert "## Skipped (already done)" in artifact.data and "organization: organisation" in artifact.data
    # no secret anywhere: history rows, artifacts, logs of the token endpoint
    dump = rows.to_json() + events.to_json() + store.query("SELECT * FROM api_calls").to_json()
    first_artifact = asyncio.run(_artifacts(runs[0]))[0].data
    assert "SSO link for luigi@trattoria.example" in first_artifact
    for secret in (
        link.token.get_secret_value(),
        partner_token,
        credentials.refresh_token.get_secret_value(),
        DEFAULT_CLIENT_SECRET,
    ):
        assert secret not in dump and secret not in artifact.data and secret not in first_artifact


FAULTS: list[tuple[str, str, str]] = [
    # (the step that fails, path, method): each answer is lost after Stream did the work (a truncated
    # body), the hardest case for a re-run; reads fail the same way
    ("organization", r"^/onboarding/org$", "POST"),
    ("token", r"^/oauth/token$", "POST"),  # spends the stored refresh token; the next run falls back
    ("partner-token", r"^/partner/tokens$", "POST"),
    ("pos-oauth-init", r"^/onboarding/integrations$", "POST"),
    ("pos-oauth-complete", r"^/onboarding/integrations/[^/]+$", "PUT"),
    ("pos-locations", r"^/onboarding/locations$", "GET"),
    ("pos-ingest", r"^/onboarding/locations$", "POST"),
    ("dsp-oauth-init:grubhub", r"^/onboarding/integrations$", "POST"),
    ("dsp-oauth-complete:grubhub", r"^/onboarding/integrations/[^/]+$", "PUT"),
    ("dsp-bind:grubhub", r"^/onboarding/locations/bind$", "POST"),
    ("menus", r"^/onboarding/menus$", "PUT"),
    ("feature-flags", r"^/feature-flags/[^/]+/targeting/contexts$", "POST"),  # after its segment add
    ("sso-links", r"^/white-label/generate-session$", "POST"),
]


def merchant_codes(sandbox: StreamSandbox) -> dict[str, str]:
    """The merchant approves every pending integration: its code by source."""
    return {
        i.source: sandbox.authorize(i.id)
        for i in list(sandbox.integrations.values())
        if i.status == "pending"
    }


def codes_block(codes: dict[str, str] | str) -> str:
    """A Secret block holding OAuth codes by source (as JSON text, the way the docs say); its name."""
    name = f"codes-{uuid.uuid4().hex[:8]}"
    save_secret(name, codes)
    return name


def run_small(sandbox: StreamSandbox, block: str, db_path: Path) -> Any:
    return onboard_organization(
        spec_yaml=SMALL,
        block_name=block,
        codes_block=codes_block(merchant_codes(sandbox)),
        code_timeout_seconds=1,  # a code the block lacks is not waited for here
        db_path=str(db_path),
    )


@pytest.mark.slow  # a fault at each of the steps, a flow run each: ~20-40 s
def test_a_failure_at_each_step_then_a_rerun_ends_with_one_of_everything(
    sandbox: StreamSandbox, block: str, db_path: Path
) -> None:
    for number, (step, path, method) in enumerate(FAULTS, start=1):
        sandbox.faults.set(rate=1.0, kinds=["malformed"], path=path, method=method, limit=1)
        with pytest.raises(OnboardingError) as failure:
            run_small(sandbox, block, db_path)
        assert failure.value.step == step, f"fault {number}: {failure.value}"
        assert str(failure.value).startswith(f"step {step}: stream ")
        assert sandbox.faults.injected == {"malformed": number}
        assert steps_of(db_path)[-1] == (step, "failed")  # recorded, with what it did before failing
        now = counts(sandbox, "chain-grill")
        assert now["orgs"] <= 1 and now["partner_tokens"] <= 1
        assert all(n == 1 for key in ("integrations", "locations", "bindings") for n in now[key].values())
    sandbox.faults.clear()

    result = run_small(sandbox, block, db_path)
    assert counts(sandbox, "chain-grill") == {
        "orgs": 1,
        "partner_tokens": 1,
        "integrations": {"pos:toast": 1, "dsp:grubhub": 1},
        "locations": {"toast-loc-001": 1, "toast-loc-002": 1},
        "bindings": {"gh-store-001": 1, "gh-store-002": 1},
    }
    org = sandbox.orgs[result.org_id or ""]
    assert {d.provider_id: d.menu_provider_ids for loc in org.locations for d in loc.dsps} == {
        "gh-store-001": ["menu-lunch"],
        "gh-store-002": ["menu-lunch", "menu-dinner"],
    }
    assert ("sandbox-partner", "organization", org.id) in sandbox.flags["new-menu-sync"].contexts
    assert len(result.sso_links) == 1  # the lost one was never handed out, so a new one is
    # the partner token's value was in the lost answer: that needs a human, and says so
    assert result.status == "needs a human"
    assert [n.split(":")[0] for n in result.needs_human] == ["partner-token"]
    # the spent refresh token was refused once, then client_credentials took over
    events = HistoryStore(db_path).query('SELECT event FROM token_events ORDER BY "at"')["event"].tolist()
    assert events[:3] == ["issued", "failed", "issued"] and events[3:] and set(events[3:]) == {"rotated"}

    writes = sandbox.requests.writes
    again = run_small(sandbox, block, db_path)
    assert sandbox.requests.writes == writes and again.created == []


def test_a_paused_run_resumes_with_the_code_given_through_prefects_api(
    sandbox: StreamSandbox, block: str, db_path: Path
) -> None:
    asked: list[WaitingStep] = []

    def merchant(waiting: WaitingStep) -> str:
        asked.append(waiting)
        sandbox.advance_clock(3601)  # the merchant takes an hour: the run's access token expires meanwhile
        return sandbox.authorize(waiting.ids["onboarding_id"])  # they approve; the code comes back

    stop = threading.Event()
    desk = threading.Thread(
        target=answer_paused_runs, args=(HistoryStore(db_path), "chain-grill", utcnow(), merchant, stop)
    )
    desk.start()
    try:
        result = onboard_organization(spec_yaml=SMALL, block_name=block, db_path=str(db_path))
    finally:
        stop.set()
        desk.join(timeout=30)
    assert [w.step for w in asked] == ["pos-oauth-complete", "dsp-oauth-complete:grubhub"]
    assert "authorises toast at http://" in asked[0].detail
    assert result.status == "live"
    assert {i.status for i in sandbox.integrations.values()} == {"active"}
    assert [s for s in steps_of(db_path) if "oauth-complete" in s[0]] == [
        ("pos-oauth-complete", "waiting"),
        ("pos-oauth-complete", "done"),
        ("dsp-oauth-complete:grubhub", "waiting"),
        ("dsp-oauth-complete:grubhub", "done"),
    ]

    async def final_state() -> Any:
        async with get_client() as client:
            run = await client.read_flow_run(uuid.UUID(asked[0].flow_run_id))
            return run.state

    state = asyncio.run(final_state())
    assert state is not None and state.is_completed()
    # after each wait the expired token was refreshed; each rotated refresh token reached the block
    events = HistoryStore(db_path).query('SELECT event FROM token_events ORDER BY "at"')["event"].tolist()
    assert events == ["issued", "rotated", "rotated"]
    stored = StreamCredentials.load(block).refresh_token
    assert stored is not None and not sandbox.refresh_tokens[stored.get_secret_value()].used


@pytest.mark.slow  # a flow run per mistake: ~10-25 s
def test_mistakes_name_the_step_and_leave_a_row(sandbox: StreamSandbox, block: str, db_path: Path) -> None:
    # a bad field in the spec: nothing is called at all
    with pytest.raises(OnboardingError) as bad_spec:
        onboard_organization(
            spec_yaml=SMALL.replace("  name: Chain Grill", "  nmae: Chain Grill"), db_path=str(db_path)
        )
    assert str(bad_spec.value) == (
        "step spec: <spec_yaml>:1: organization.name: Field required; "
        "<spec_yaml>:2: organization.nmae: Extra inputs are not permitted"
    )
    assert sandbox.requests.total == 0
    assert steps_of(db_path, "org_key = 'chain-grill'") == [("spec", "failed")]

    # a rejected code, then an expired one (from a codes block): each is asked for again, with Stream's
    # reason; nobody answers within the timeout, so the run fails, and the integration stays pending
    with pytest.raises(OnboardingError, match=r"^step pos-oauth-complete: no OAuth code within 1 s"):
        onboard_organization(
            spec_yaml=SMALL,
            block_name=block,
            codes_block=codes_block({"toast": "not-a-code"}),
            code_timeout_seconds=1,
            db_path=str(db_path),
        )
    (pending,) = sandbox.integrations.values()
    stale = sandbox.authorize(pending.id)
    sandbox.advance_clock(601)
    with pytest.raises(OnboardingError, match=r"^step pos-oauth-complete: no OAuth code within 1 s"):
        onboard_organization(
            spec_yaml=SMALL,
            block_name=block,
            codes_block=codes_block({"toast": stale}),
            code_timeout_seconds=1,
            db_path=str(db_path),
        )
    assert [i.status for i in sandbox.integrations.values()] == ["pending"]
    rows = HistoryStore(db_path).query(
        "SELECT status, ids, detail FROM onboarding_steps WHERE step = 'pos-oauth-complete' ORDER BY started_at"
    )
    assert rows["status"].tolist() == ["failed", "waiting", "failed"] * 2
    assert all(json.loads(i)["onboarding_id"] == pending.id for i in rows["ids"])
    rejected, asked_again = rows["detail"].iloc[0], rows["detail"].iloc[1]
    assert "the OAuth code for toast was rejected by Stream (invalid_code: " in rejected
    assert asked_again.startswith("needs a human: Stream rejected the last code (invalid_code: ")
    assert "was expired by Stream (code_expired: " in rows["detail"].iloc[3]
    assert stale not in rows.to_json()

    # a codes block naming a source the spec lacks, or holding no object of codes: one line, nothing called
    calls = sandbox.requests.total
    for value, message in (
        ({"square": "x"}, r"codes_block: square in Secret block '[^']+' not a source of the spec"),
        ("not json", r"codes_block: Secret block '[^']+' must hold a JSON object of OAuth codes"),
    ):
        with pytest.raises(OnboardingError, match=r"^step spec: " + message):
            onboard_organization(
                spec_yaml=SMALL, block_name=block, codes_block=codes_block(value), db_path=str(db_path)
            )
    assert sandbox.requests.total == calls

    # no code within the pause's timeout: named, recorded, and the run can be started again later
    with pytest.raises(OnboardingError, match=r"^step dsp-oauth-complete:grubhub: no OAuth code within 1 s"):
        onboard_organization(
            spec_yaml=SMALL,
            block_name=block,
            codes_block=codes_block({"toast": merchant_codes(sandbox)["toast"]}),
            code_timeout_seconds=1,
            db_path=str(db_path),
        )
    assert steps_of(db_path)[-2:] == [
        ("dsp-oauth-complete:grubhub", "waiting"),
        ("dsp-oauth-complete:grubhub", "failed"),
    ]

    # a flag that does not exist: named, and nothing added to any flag or segment
    no_flag = SMALL.replace("flags: [new-menu-sync]", "flags: [new-menu-sync, no-such-flag]")
    no_flag = no_flag[: no_flag.index("dsps:")] + no_flag[no_flag.index("flags:") :]
    with pytest.raises(OnboardingError) as flag:
        onboard_organization(spec_yaml=no_flag, block_name=block, db_path=str(db_path))
    assert str(flag.value) == (
        "step feature-flags: flags[1]: flag 'no-such-flag' does not exist at Stream (flag_not_found); "
        "nothing added"
    )
    assert all(not f.contexts for f in sandbox.flags.values())
    assert all(not s.contexts for s in sandbox.segments.values())
    assert steps_of(db_path)[-1] == ("feature-flags", "failed")


def test_a_step_is_retried_only_when_trying_again_may_help() -> None:
    from prefect.states import Failed

    from streamkeeper.errors import StoreError
    from tasks.onboard import transient_step

    def retried(exc: Exception) -> bool:
        return transient_step(None, None, Failed(data=exc))

    assert retried(OnboardingError("organization", "stream create_organization: HTTP 503", transient=True))
    assert retried(StoreError("the history store is busy"))
    assert not retried(OnboardingError("pos-oauth-complete", "the OAuth code was rejected"))
    assert not retried(ValueError("a bug"))


def form_description(flow_run_id: str) -> str:
    """The text of the Resume form a paused run shows (what the Prefect UI renders above the field)."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(uuid.UUID(flow_run_id))
        assert run.state is not None and run.state.is_paused()
        keyset = run.state.state_details.run_input_keyset
        assert keyset is not None
        return json.loads(client.read_flow_run_input(run.id, keyset["description"]))


@pytest.mark.slow  # several pauses or flow runs: 10-20 s
def test_a_rejected_code_is_asked_for_again_with_streams_reason_and_no_answer_is_kept(
    sandbox: StreamSandbox, block: str, db_path: Path
) -> None:
    forms: list[str] = []
    given: list[str] = []

    def operator(waiting: WaitingStep) -> str:
        forms.append(form_description(waiting.flow_run_id))
        first_ask = waiting.step == "pos-oauth-complete" and len(forms) == 1
        code = "typo-in-the-code" if first_ask else sandbox.authorize(waiting.ids["onboarding_id"])
        given.append(code)
        return code

    stop = threading.Event()
    desk = threading.Thread(
        target=answer_paused_runs, args=(HistoryStore(db_path), "chain-grill", utcnow(), operator, stop)
    )
    desk.start()
    try:
        result = onboard_organization(spec_yaml=SMALL, block_name=block, db_path=str(db_path))
    finally:
        stop.set()
        desk.join(timeout=30)
    assert result.status == "live"
    assert len(forms) == 3  # POS twice (the typo, then the real code), then the DSP
    assert "Stream rejected" not in forms[0] and forms[0].startswith("### OAuth code for toast (pos)")
    assert "**Stream rejected the last code:** invalid_code: " in forms[1]
    assert "Code 2 of 3" in forms[1]
    assert [s for s in steps_of(db_path) if s[0] == "pos-oauth-complete"] == [
        ("pos-oauth-complete", "waiting"),
        ("pos-oauth-complete", "failed"),
        ("pos-oauth-complete", "waiting"),
        ("pos-oauth-complete", "done"),
    ]

    run_id = HistoryStore(db_path).query("SELECT DISTINCT flow_run_id FROM onboarding_steps")["flow_run_id"][
        0
    ]
    with get_client(sync_client=True) as client:
        inputs = client.filter_flow_run_input(uuid.UUID(run_id), key_prefix="", limit=100, exclude_keys=set())
    assert inputs and not [i.key for i in inputs if i.key.endswith("-response")]  # the answers are gone
    kept = json.dumps([i.value for i in inputs])
    assert all(code not in kept for code in given)

    # the run's report: published once per pause and once at the end; the last one has no stale row
    reports = sorted(asyncio.run(_artifacts(run_id)), key=lambda a: a.created)
    assert len(reports) == 3 + 1
    final = reports[-1].data
    assert "| waiting |" not in final and "**Failed:**" not in final
    assert "| pos-oauth-complete | done |" in final


@pytest.mark.slow  # several pauses or flow runs: 10-20 s
def test_three_rejected_codes_fail_the_run_with_streams_reason(
    sandbox: StreamSandbox, block: str, db_path: Path
) -> None:
    stop = threading.Event()
    desk = threading.Thread(
        target=answer_paused_runs,
        args=(HistoryStore(db_path), "chain-grill", utcnow(), lambda waiting: "wrong", stop),
    )
    desk.start()
    try:
        with pytest.raises(OnboardingError) as failure:
            onboard_organization(
                spec_yaml=SMALL,
                block_name=block,
                codes_block=codes_block({"toast": "wrong-too"}),  # the block's code counts as one
                db_path=str(db_path),
            )
    finally:
        stop.set()
        desk.join(timeout=30)
    assert str(failure.value).startswith(
        "step pos-oauth-complete: Stream rejected 3 OAuth codes for toast in this run (last: invalid_code: "
    )
    assert str(failure.value).endswith("then retry the run to be asked again")
    assert [s for s in steps_of(db_path) if s[0] == "pos-oauth-complete"] == [
        ("pos-oauth-complete", "failed"),
        ("pos-oauth-complete", "waiting"),
        ("pos-oauth-complete", "failed"),
        ("pos-oauth-complete", "waiting"),
        ("pos-oauth-complete", "failed"),
    ]
    assert [i.status for i in sandbox.integrations.values()] == ["pending"]


@pytest.mark.slow  # several pauses or flow runs: 10-20 s
def test_provisioning_and_the_audit_leave_what_onboarding_owns_alone(
    sandbox: StreamSandbox, block: str, db_path: Path, tmp_path: Path
) -> None:
    from flows.audit import audit_subscriptions
    from flows.provision import provision_subscriptions

    sandbox.auto_authorize = True
    result = onboard_organization(spec_yaml=SMALL, block_name=block, db_path=str(db_path))
    org = ("sandbox-partner", "organization", result.org_id)
    # a provisioning spec of its own on the same Stream connection: one merchant in the beta segment
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"stream:\n  - connection: {block}\n    targeting:\n"
        "      - {name: acme-beta, context: merchant-acme, segment: beta-merchants}\n"
    )
    owned = HistoryStore(db_path).query(
        "SELECT subscription_id, owner, change FROM current_subscriptions WHERE owner IS NOT NULL ORDER BY 1"
    )
    assert owned.to_dict("records") == [
        {
            "subscription_id": f"organization:{result.org_id}@flag:new-menu-sync",
            "owner": "onboard-organization",
            "change": "created",
        },
        {
            "subscription_id": f"organization:{result.org_id}@segment:internal",
            "owner": "onboard-organization",
            "change": "created",
        },
    ]

    plan = provision_subscriptions(spec_path=str(spec), prune=True, db_path=str(db_path)).plan
    assert [c.action for c in plan.changes] == ["create"]  # not a delete of what onboarding made
    assert plan.unmanaged == []
    assert sorted(r.id or "" for r in plan.owned_elsewhere) == owned["subscription_id"].tolist()
    assert "2 owned by onboard-organization (left alone)" in plan.summary()
    applied = provision_subscriptions(spec_path=str(spec), dry_run=False, prune=True, db_path=str(db_path))
    assert [o.result for o in applied.outcomes] == ["created"]
    assert org in sandbox.flags["new-menu-sync"].contexts and org in sandbox.segments["internal"].contexts

    audit = audit_subscriptions(spec_path=str(spec), db_path=str(db_path))
    assert audit.findings == []  # onboarding's targeting is no "extra" drift
    # running onboarding again records nothing new: it already owns them
    onboard_organization(spec_yaml=SMALL, block_name=block, db_path=str(db_path))
    again = HistoryStore(db_path).query("SELECT count(*) AS n FROM subscriptions WHERE owner IS NOT NULL")
    assert again["n"][0] == 2


@pytest.mark.slow
@pytest.mark.parametrize("failing", ["pos-oauth-complete", "dsp-oauth-complete:grubhub"])
def test_a_run_retried_as_the_ui_does_after_failing_at_a_pause_resumes_there(
    sandbox: StreamSandbox, block: str, db_path: Path, failing: str
) -> None:
    """A deployment's run, run as a worker does (the engine, on the flow run); at the `failing` pause
    nobody answers, so the run fails; retried as the UI's Retry button does it (AwaitingRetry), it runs
    again, passes what is done, pauses where it stopped (before: 409, the input key already existed)."""
    from prefect.flow_engine import run_flow
    from prefect.states import AwaitingRetry

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow(onboard_organization)
        deployment_id = client.create_deployment(
            flow_id=flow_id,
            name=f"retry-{uuid.uuid4().hex[:8]}",
            entrypoint="flows/onboard.py:onboard_organization",
        )
        flow_run = client.create_flow_run_from_deployment(
            deployment_id,
            parameters={
                "spec_yaml": SMALL,
                "block_name": block,
                "code_timeout_seconds": 6,
                "db_path": str(db_path),
            },
        )
    asked: list[tuple[int, str]] = []
    attempt = 1

    def merchant(waiting: WaitingStep) -> str | None:
        asked.append((attempt, waiting.step))
        if attempt == 1 and waiting.step == failing:
            return None  # nobody answers: the pause times out and the run fails
        return sandbox.authorize(waiting.ids["onboarding_id"])

    def run_as_a_worker_does() -> Any:
        with get_client(sync_client=True) as client:
            current = client.read_flow_run(flow_run.id)
        return run_flow(onboard_organization, flow_run=current, return_type="state")

    stop = threading.Event()
    desk = threading.Thread(
        target=answer_paused_runs, args=(HistoryStore(db_path), "chain-grill", utcnow(), merchant, stop)
    )
    desk.start()
    try:
        first = run_as_a_worker_does()
        assert first.is_failed()
        with get_client(sync_client=True) as client:
            retried = client.set_flow_run_state(
                flow_run.id, AwaitingRetry(message="Retry from the UI"), force=False
            )
        assert retried.status.value == "ACCEPT"
        attempt = 2
        second = run_as_a_worker_does()
    finally:
        stop.set()
        desk.join(timeout=30)
    assert second.is_completed(), second.message
    steps = ["pos-oauth-complete", "dsp-oauth-complete:grubhub"]
    before = steps[: steps.index(failing) + 1]
    assert asked == [(1, s) for s in before] + [(2, s) for s in steps[steps.index(failing) :]]
    assert {i.status for i in sandbox.integrations.values()} == {"active"}
    assert counts(sandbox, "chain-grill")["integrations"] == {"pos:toast": 1, "dsp:grubhub": 1}
