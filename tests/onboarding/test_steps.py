"""The onboarding steps against the Stream emulator over loopback HTTP, without Prefect.

Each step reads before it writes: a second pass writes nothing, a pass after a failure finishes the job
without doubles, and each refusal is an `OnboardingError` naming the step, with its row recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from streamkeeper.onboarding import Journal, OnboardingError, OnboardingSpec, SSOLink, load_spec_text, steps
from streamkeeper.onboarding.spec import POSSpec
from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.stream import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PARTNER_ID,
    StreamSandbox,
)
from streamkeeper.store import HistoryStore
from streamkeeper.vendors.http import RetryPolicy
from streamkeeper.vendors.stream import Onboarding, StreamClient

FAST = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.02)

SPEC = """\
organization:
  name: Pizza Pronto
  provider_id: pizza-pronto
  owner: {email: ada@pronto.example, first_name: Ada, last_name: Lovelace}
return_url: https://partner.example/cb
pos: {source: square, locations: [sq-loc-001, sq-loc-002]}
dsps:
  - source: doordash
    menus: [menu-lunch]
    bindings:
      - {location: sq-loc-001, store: dd-store-001}
      - {location: sq-loc-002, store: dd-store-002, menus: []}
flags: [new-menu-sync, sso-login]
segments: [beta-merchants]
sso_users:
  - {email: ada@pronto.example, full_name: Ada Lovelace, phone_number: "+1 555 0100"}
"""


class MemoryVault:
    """Keeps the partner token's value in memory (the flow keeps it in a Prefect Secret block)."""

    def __init__(self) -> None:
        self.value: SecretStr | None = None

    def location(self) -> str:
        return "memory"

    def holds(self) -> bool:
        return self.value is not None

    def keep(self, value: SecretStr) -> None:
        self.value = value


@pytest.fixture
def sandbox(serve: Callable[..., SandboxServer]) -> StreamSandbox:
    app = StreamSandbox()
    serve(app)
    return app


@pytest.fixture
def client(sandbox: StreamSandbox) -> Iterator[StreamClient]:
    with StreamClient(
        sandbox.url,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=SecretStr(DEFAULT_CLIENT_SECRET),
        partner_id=DEFAULT_PARTNER_ID,
        retry=FAST,
        timeout=5.0,
    ) as c:
        yield c


@pytest.fixture
def spec() -> OnboardingSpec:
    return load_spec_text(SPEC)


class Onboarder:
    """Runs the steps in the flow's order, as the flow's tasks do, with codes from the emulator."""

    def __init__(
        self, client: StreamClient, sandbox: StreamSandbox, spec: OnboardingSpec, store: HistoryStore | None
    ) -> None:
        self.client, self.sandbox, self.spec = client, sandbox, spec
        self.journal = Journal(spec.org_key, store)
        self.vault = MemoryVault()

    def connect(self, org_id: str, type: Any, source: str, code: str | None = None) -> Onboarding:
        with self.journal.step(steps.step_name("oauth-init", type, source)) as step:
            onboarding = steps.start_integration(
                self.client, org_id, type, source, self.spec.return_url, step
            )
        if onboarding.status == "pending" and code is None:
            code = self.sandbox.authorize(onboarding.id)  # the merchant approves
        with self.journal.step(steps.step_name("oauth-complete", type, source)) as step:
            return steps.complete_integration(self.client, onboarding, code, step)

    def run(self) -> list[SSOLink]:
        j, c, spec = self.journal, self.client, self.spec
        with j.step("token") as step:
            steps.get_token(c, step)
        with j.step("organization") as step:
            org_id = j.org_id = steps.ensure_organization(c, spec, step)
        with j.step("partner-token") as step:
            steps.ensure_partner_token(c, org_id, spec.partner_token, self.vault, step)
        pos = self.connect(org_id, "pos", spec.pos.source)
        with j.step("pos-locations") as step:
            chosen = steps.choose_pos_locations(c, pos, spec, step)
        with j.step("pos-ingest") as step:
            locations = steps.ensure_pos_locations(c, org_id, pos, chosen, step)
        connections: dict[tuple[str, str], str] = {}
        for index, dsp in enumerate(spec.dsps):
            onboarding = self.connect(org_id, "dsp", dsp.source)
            with j.step(steps.step_name("bind", "dsp", dsp.source)) as step:
                bound = steps.ensure_bindings(c, org_id, onboarding, spec, index, locations, step)
            connections.update({(dsp.source, s): i for s, i in bound.items()})
        with j.step("menus") as step:
            steps.ensure_menus(c, org_id, spec, connections, step)
        with j.step("feature-flags") as step:
            steps.ensure_flags(c, org_id, spec, step)
        with j.step("sso-links") as step:
            issued = {e for r in j.records if r.step == "sso-links" for e in r.ids.get("issued", [])}
            links = steps.issue_sso_links(c, spec, issued, step)
        j.flush()
        return links


def rows(store: HistoryStore) -> list[tuple[str, str, dict[str, Any], str | None]]:
    frame = store.query("SELECT step, status, ids, detail FROM onboarding_steps ORDER BY started_at")
    return [
        (r.step, r.status, json.loads(r.ids) if isinstance(r.ids, str) else {}, r.detail)
        for r in frame.itertuples()
    ]


def test_a_second_pass_writes_nothing(
    client: StreamClient, sandbox: StreamSandbox, spec: OnboardingSpec, db_path: Path
) -> None:
    onboarder = Onboarder(client, sandbox, spec, HistoryStore(db_path))
    links = onboarder.run()
    assert len(links) == 1 and links[0].email == "ada@pronto.example"
    org = client.find_organization(provider_id="pizza-pronto")
    assert org is not None
    locations = client.list_org_locations(org.id)
    assert sorted((loc.name, [d.name for d in loc.dsps]) for loc in locations) == [
        ("Downtown", ["Downtown (DoorDash)"]),
        ("Harbor", ["Harbor (DoorDash)"]),
    ]
    menus = {d.name: d.menu_provider_ids for loc in locations for d in loc.dsps}
    assert menus == {"Downtown (DoorDash)": ["menu-lunch"], "Harbor (DoorDash)": []}
    assert client.evaluate_flag("new-menu-sync", key=org.id, kind="organization").value is True

    writes = sandbox.requests.writes
    again = Onboarder(client, sandbox, spec, HistoryStore(db_path))
    again.journal.records = list(onboarder.journal.records)  # what an earlier run recorded (SSO links)
    assert again.run() == []
    assert sandbox.requests.writes == writes
    recorded = rows(HistoryStore(db_path))
    second = recorded[len(recorded) // 2 :]
    assert {status for _, status, _, _ in second} == {"done", "skipped"}
    assert [s for s, status, _, _ in second if status == "done"] == ["token", "pos-locations"]  # reads


def test_rejected_and_expired_oauth_codes_name_the_step_and_leave_a_row(
    client: StreamClient, sandbox: StreamSandbox, spec: OnboardingSpec, db_path: Path
) -> None:
    store = HistoryStore(db_path)
    onboarder = Onboarder(client, sandbox, spec, store)
    with onboarder.journal.step("organization") as step:
        org_id = steps.ensure_organization(client, spec, step)

    with pytest.raises(OnboardingError) as rejected:
        onboarder.connect(org_id, "pos", "square", code="not-a-code")
    assert rejected.value.step == "pos-oauth-complete" and not rejected.value.transient
    assert str(rejected.value).startswith("step pos-oauth-complete: the OAuth code for square was rejected")
    assert "invalid_code" in str(rejected.value) and "/_sandbox/stream/oauth/" in str(rejected.value)

    pending = client.list_integrations(org_id=org_id)
    assert [o.status for o in pending] == ["pending"]
    stale = sandbox.authorize(pending[0].id)
    sandbox.advance_clock(601)  # codes live 10 minutes
    with pytest.raises(
        OnboardingError, match=r"^step pos-oauth-complete: the OAuth code for square was expired"
    ):
        onboarder.connect(org_id, "pos", "square", code=stale)

    # the merchant authorises again: the same integration completes, none is started twice
    active = onboarder.connect(org_id, "pos", "square")
    assert active.status == "active" and active.id == pending[0].id
    assert len(client.list_integrations(org_id=org_id)) == 1
    recorded = [(s, status, ids.get("onboarding_id")) for s, status, ids, _ in rows(store)]
    assert recorded[1:] == [
        ("pos-oauth-init", "done", pending[0].id),
        ("pos-oauth-complete", "failed", pending[0].id),
        ("pos-oauth-init", "skipped", pending[0].id),
        ("pos-oauth-complete", "failed", pending[0].id),
        ("pos-oauth-init", "skipped", pending[0].id),
        ("pos-oauth-complete", "done", pending[0].id),
    ]
    assert onboarder.journal.needs_human() == []  # the completion settled the request to authorise


def test_a_missing_code_says_where_the_merchant_authorises(
    client: StreamClient, sandbox: StreamSandbox, spec: OnboardingSpec
) -> None:
    journal = Journal(spec.org_key)
    with journal.step("organization") as step:
        org_id = steps.ensure_organization(client, spec, step)
    with journal.step("pos-oauth-init") as step:
        onboarding = steps.start_integration(client, org_id, "pos", "square", spec.return_url, step)
    assert journal.needs_human() == [
        f"pos-oauth-init: the merchant authorises square at {onboarding.entry_url}; "
        "the code comes back on the return URL (?code=...)"
    ]
    with (
        pytest.raises(OnboardingError, match="is pending and no OAuth code was given"),
        journal.step("pos-oauth-complete") as step,
    ):
        steps.complete_integration(client, onboarding, None, step)


def test_a_flag_that_does_not_exist_adds_nothing(
    client: StreamClient, sandbox: StreamSandbox, spec: OnboardingSpec, db_path: Path
) -> None:
    store = HistoryStore(db_path)
    journal = Journal(spec.org_key, store)
    bad = spec.model_copy(update={"flags": ["new-menu-sync", "no-such-flag"]})
    with journal.step("organization") as step:
        org_id = steps.ensure_organization(client, bad, step)
    writes = sandbox.requests.writes
    with pytest.raises(OnboardingError) as info, journal.step("feature-flags") as step:
        steps.ensure_flags(client, org_id, bad, step)
    assert str(info.value) == (
        "step feature-flags: flags[1]: flag 'no-such-flag' does not exist at Stream (flag_not_found); "
        "nothing added"
    )
    assert sandbox.requests.writes == writes  # not even the segment or the first flag
    assert client.search_contexts(q=org_id) == []
    assert rows(store)[-1][:2] == ("feature-flags", "failed")


def test_a_segment_that_does_not_exist_keeps_what_was_added_on_record(
    client: StreamClient, spec: OnboardingSpec, db_path: Path
) -> None:
    store = HistoryStore(db_path)
    journal = Journal(spec.org_key, store)
    bad = spec.model_copy(update={"segments": ["beta-merchants", "gone"]})
    with journal.step("organization") as step:
        org_id = steps.ensure_organization(client, bad, step)
    with (
        pytest.raises(OnboardingError, match=r"segments\[1\]: segment 'gone' does not exist"),
        journal.step("feature-flags") as step,
    ):
        steps.ensure_flags(client, org_id, bad, step)
    step_, status, ids, detail = rows(store)[-1]
    assert (step_, status, ids["segments_added"]) == ("feature-flags", "failed", ["beta-merchants"])
    assert detail is not None and "created: segment beta-merchants" in detail
    # the run after the fix finds the segment done and adds the rest
    with journal.step("feature-flags") as step:
        served = steps.ensure_flags(client, org_id, spec, step)
    assert served == {"new-menu-sync": True, "sso-login": True}
    assert step.existing == ["segment beta-merchants"]


def test_an_sso_link_is_single_use(client: StreamClient, spec: OnboardingSpec, db_path: Path) -> None:
    store = HistoryStore(db_path)
    journal = Journal(spec.org_key, store)
    with journal.step("organization") as step:
        steps.ensure_organization(client, spec, step)
    with journal.step("sso-links") as step:
        (link,) = steps.issue_sso_links(client, spec, set(), step)
    page = httpx.get(link.url.get_secret_value())  # the user opens it
    assert page.status_code == 200 and "ada@pronto.example" in page.text
    with pytest.raises(OnboardingError) as info, journal.step("sso-login") as step:
        steps.open_sso_link(client, link, step)
    assert str(info.value).startswith(
        "step sso-login: the SSO link for ada@pronto.example was already used (sso_token_redeemed)"
    )
    assert rows(store)[-1][:2] == ("sso-login", "failed")
    # a fresh link logs in once
    with journal.step("sso-links") as step:
        (fresh,) = steps.issue_sso_links(client, spec, {"ada@pronto.example"}, step, reissue=True)
    with journal.step("sso-login") as step:
        assert steps.open_sso_link(client, fresh, step).email == "ada@pronto.example"
    dump = HistoryStore(db_path).query("SELECT * FROM onboarding_steps").to_json()
    for secret in (link.token, fresh.token):
        assert secret.get_secret_value() not in dump
        assert secret.get_secret_value() not in journal.markdown()


def test_a_partner_token_whose_answer_was_lost_needs_a_human(
    client: StreamClient, sandbox: StreamSandbox, spec: OnboardingSpec
) -> None:
    journal = Journal(spec.org_key)
    vault = MemoryVault()
    with journal.step("organization") as step:
        org_id = steps.ensure_organization(client, spec, step)
    sandbox.faults.set(rate=1.0, kinds=["malformed"], path=r"^/partner/tokens$", method="POST", limit=1)
    with (
        pytest.raises(OnboardingError, match=r"^step partner-token: stream create_partner_token: "),
        journal.step("partner-token") as step,
    ):
        steps.ensure_partner_token(client, org_id, spec.partner_token, vault, step)
    with journal.step("partner-token") as step:
        steps.ensure_partner_token(client, org_id, spec.partner_token, vault, step)
    assert len(client.list_partner_tokens(org_id=org_id)) == 1 and not vault.holds()
    assert journal.needs_human() == [
        "partner-token: partner token 'streamkeeper' exists at Stream but its value was never stored in "
        "memory (its answer was lost): revoke it at Stream or set partner_token.name to a new name, then "
        "run again"
    ]


def test_lost_create_answers_are_looked_up_not_repeated(
    client: StreamClient, sandbox: StreamSandbox, spec: OnboardingSpec
) -> None:
    journal = Journal(spec.org_key)
    sandbox.faults.set(rate=1.0, kinds=["drop_after"], path=r"^/onboarding/(org|integrations)$", limit=2)
    with journal.step("organization") as step:
        org_id = steps.ensure_organization(client, spec, step)
    with journal.step("pos-oauth-init") as step:
        steps.start_integration(client, org_id, "pos", "square", spec.return_url, step)
    assert sandbox.faults.injected == {"drop_after": 2}
    assert len(client.list_organizations()) == 1 and len(client.list_integrations()) == 1


def test_bindings_and_locations_are_checked_before_any_write(
    client: StreamClient, sandbox: StreamSandbox, spec: OnboardingSpec
) -> None:
    onboarder = Onboarder(client, sandbox, spec, None)
    onboarder.run()
    org_id = onboarder.journal.org_id
    assert org_id is not None
    pos = client.list_integrations(org_id=org_id, type="pos")[0]
    dsp = client.list_integrations(org_id=org_id, type="dsp")[0]
    locations = {
        loc.model_extra["provider_id"]: loc.id for loc in client.list_org_locations(org_id) if loc.model_extra
    }
    journal = onboarder.journal
    writes = sandbox.requests.writes

    swapped = load_spec_text(
        SPEC.replace(
            "{location: sq-loc-001, store: dd-store-001}", "{location: sq-loc-001, store: dd-store-009}"
        )
    )
    with (
        pytest.raises(OnboardingError, match=r"dsps\[0\].bindings\[0\].store: 'dd-store-009' is not a store"),
        journal.step("dsp-bind:doordash") as step,
    ):
        steps.ensure_bindings(client, org_id, dsp, swapped, 0, locations, step)
    moved = load_spec_text(
        SPEC.replace("store: dd-store-001}", "store: dd-store-003}").replace(
            "{location: sq-loc-002, store: dd-store-002", "{location: sq-loc-002, store: dd-store-001"
        )
    )
    with (
        pytest.raises(OnboardingError, match=r"store 'dd-store-001' is bound to location .* unbind it"),
        journal.step("dsp-bind:doordash") as step,
    ):
        steps.ensure_bindings(client, org_id, dsp, moved, 0, locations, step)
    unknown = spec.model_copy(
        update={"pos": POSSpec(source="square", locations=["sq-loc-001", "sq-loc-009"])}
    )
    with (
        pytest.raises(
            OnboardingError,
            match=r"^step pos-locations: pos.locations: sq-loc-009 not in the merchant's square account",
        ),
        journal.step("pos-locations") as step,
    ):
        steps.choose_pos_locations(client, pos, unknown, step)
    assert sandbox.requests.writes == writes
