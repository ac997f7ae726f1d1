"""Contract tests: the real `StreamClient` against the Stream emulator over loopback HTTP."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.stream import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PARTNER_ID,
    StreamSandbox,
)
from streamkeeper.vendors.http import (
    AuthenticationFailed,
    Conflict,
    MalformedResponse,
    NotFound,
    PermissionDenied,
    RequestInvalid,
    RetryPolicy,
    VendorHTTPError,
)
from streamkeeper.vendors.stream import (
    SIGNATURE_HEADER,
    IntegrationType,
    Onboarding,
    StreamClient,
    TokenInfo,
    verify_webhook_signature,
)

FAST = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.02)
SENTINEL = "sentinel-Qz7-client-secret-4f1e9"
RETURN_URL = "https://partner.example/return"
USER = {"email": "owner@pizza.example", "first_name": "Ada", "last_name": "Lovelace"}

MakeClient = Callable[..., StreamClient]


@pytest.fixture
def sandbox() -> StreamSandbox:
    return StreamSandbox()


@pytest.fixture
def url(serve: Callable[..., SandboxServer], sandbox: StreamSandbox) -> str:
    return serve(sandbox).url


@pytest.fixture
def make_client(url: str) -> Iterator[MakeClient]:
    clients: list[StreamClient] = []

    def make(**kwargs: Any) -> StreamClient:
        options: dict[str, Any] = {
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": SecretStr(DEFAULT_CLIENT_SECRET),
            "partner_id": DEFAULT_PARTNER_ID,
            "retry": FAST,
            "timeout": 5.0,
        }
        options.update(kwargs)
        client = StreamClient(url, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: MakeClient) -> StreamClient:
    return make_client()


def active_integration(
    client: StreamClient, sandbox: StreamSandbox, org_id: str, source: str, type: IntegrationType
) -> Onboarding:
    onboarding = client.init_integration(org_id=org_id, source=source, type=type, return_url=RETURN_URL)
    return client.complete_integration(onboarding.id, sandbox.authorize(onboarding.id))


# -- every operation -------------------------------------------------------------------------------------
def test_every_operation_end_to_end(client: StreamClient, sandbox: StreamSandbox, url: str) -> None:
    token = client.request_token()
    assert token.token_type == "bearer" and token.expires_in == 3600
    assert token.refresh_token_expires_in == 7200
    assert token.scopes == ["onboarding", "sso", "user"]

    org = client.create_organization(name="Pizza Palace", provider_id="pp-1", user=USER)
    assert org.org_id and org.user_id
    found = client.find_organization(provider_id="pp-1")
    assert found is not None and found.id == org.org_id and found.name == "Pizza Palace"
    assert client.find_organization(provider_id="nobody") is None

    partner_token = client.create_partner_token(org_id=org.org_id, token_name="pos-sync", scopes=["user"])
    assert partner_token.token is not None and partner_token.org_id == org.org_id

    # POS: OAuth (pending -> merchant approves -> code -> active), then ingest
    pos = client.init_integration(org_id=org.org_id, source="square", type="pos", return_url=RETURN_URL)
    assert pos.status == "pending" and pos.org_id == org.org_id and pos.partner_org_id == "pp-1"
    assert pos.entry_url is not None and pos.entry_url.startswith(url)
    assert client.get_integration(pos.id).status == "pending"
    pos = client.complete_integration(pos.id, sandbox.authorize(pos.id))
    assert pos.status == "active" and pos.merchant_id and pos.integration_id
    assert client.get_integration(pos.id).status == "active"
    assert [o.id for o in client.list_integrations(org_id=org.org_id, type="pos")] == [pos.id]

    pos_locations = client.list_onboarding_locations(pos.id)
    assert {loc.provider_id for loc in pos_locations} == {"sq-loc-001", "sq-loc-002", "sq-loc-003"}
    assert pos_locations[0].address is not None and pos_locations[0].address.locality == "Springfield"
    ingested = client.ingest_pos_locations(pos.id, ["sq-loc-001", "sq-loc-002"])
    assert [loc.provider_id for loc in ingested] == ["sq-loc-001", "sq-loc-002"]
    # ingest is keyed by provider id: again gives the same ids
    assert client.ingest_pos_locations(pos.id, ["sq-loc-001"])[0].id == ingested[0].id

    # DSP: OAuth through the admin route, then bind to a POS location
    dsp = client.init_integration(org_id=org.org_id, source="doordash", type="dsp", return_url=RETURN_URL)
    code = httpx.post(f"{url}/_sandbox/stream/integrations/{dsp.id}/authorize").json()["code"]
    dsp = client.complete_integration(dsp.id, code)
    stores = client.list_onboarding_locations(dsp.id)
    bound = client.bind_dsp_locations(
        dsp.id,
        [
            {
                "pos_location_id": ingested[0].id,
                "dsp_provider_id": stores[0].provider_id,
                "dsp_store_name": "Pizza Palace Downtown",
            }
        ],
    )
    assert bound[0].status == "APPROVED" and bound[0].dsp_store_name == "Pizza Palace Downtown"

    locations = client.list_org_locations(org.org_id)
    assert len(locations) == 2
    downtown = client.list_org_locations(org.org_id, location_id=ingested[0].id)
    assert len(downtown) == 1 and downtown[0].dsps[0].id == bound[0].id
    assert downtown[0].dsps[0].status == "APPROVED" and downtown[0].dsps[0].source == "doordash"

    # menus: replace the assignment; an empty list restores "publish all menus"
    assigned = client.assign_menus(
        org_id=org.org_id, dsp_location_id=bound[0].id, menu_provider_ids=["menu-lunch", "menu-dinner"]
    )
    assert assigned.menu_provider_ids == ["menu-lunch", "menu-dinner"]
    dsp_conn = client.list_org_locations(org.org_id, location_id=ingested[0].id)[0].dsps[0]
    assert dsp_conn.menu_provider_ids == ["menu-lunch", "menu-dinner"]
    assert (
        client.assign_menus(
            org_id=org.org_id, dsp_location_id=bound[0].id, menu_provider_ids=[]
        ).menu_provider_ids
        == []
    )
    assert client.list_org_locations(org.org_id)[0].dsps[0].menu_provider_ids == []

    # feature flags: flag targeting, segments, search, evaluation
    assert client.evaluate_flag("new-menu-sync", key=org.org_id, kind="organization").value is False
    added = client.add_flag_contexts("new-menu-sync", [{"key": org.org_id, "kind": "organization"}])
    assert [(c.kind, c.key) for c in added.contexts] == [("organization", org.org_id)]
    evaluation = client.evaluate_flag("new-menu-sync", key=org.org_id, kind="organization")
    assert evaluation.flag_key == "new-menu-sync" and evaluation.value is True and evaluation.enabled is True
    assert (
        client.remove_flag_contexts("new-menu-sync", [{"key": org.org_id, "kind": "organization"}]).contexts
        == []
    )
    assert client.evaluate_flag("new-menu-sync", key=org.org_id, kind="organization").value is False
    client.add_segment_contexts("beta-merchants", [{"key": "merchant-7"}])  # kind defaults to "user"
    assert client.evaluate_flag("new-menu-sync", key="merchant-7").value is True  # via the flag's segment
    assert client.evaluate_flag("dsp-auto-bind", key="merchant-7").enabled is False
    client.add_flag_contexts("sso-login", [{"key": "merchant-8"}, {"key": "store-1", "kind": "store"}])
    assert {c.key for c in client.search_contexts(q="MERCHANT")} == {"merchant-7", "merchant-8"}
    assert [c.key for c in client.search_contexts(kind="store")] == ["store-1"]
    assert len(client.search_contexts(limit=1)) == 1
    client.remove_segment_contexts("beta-merchants", [{"key": "merchant-7"}])
    assert client.evaluate_flag("new-menu-sync", key="merchant-7").value is False

    # SSO: a single-use login token
    session = client.generate_sso_session(
        email="owner@pizza.example",
        full_name="Ada Lovelace",
        phone_number="+15550100",
        provider_org_id="pp-1",
    )
    redeemed = client.redeem_sso_session(session.sso_login_token)
    assert redeemed.email == "owner@pizza.example" and redeemed.org_id == org.org_id
    assert "sso_login_token=" in client.sso_login_url(session.sso_login_token)


def test_unknown_response_fields_parse(client: StreamClient, sandbox: StreamSandbox) -> None:
    org = client.create_organization(name="Extra", provider_id="ex-1", user=USER)
    onboarding = client.init_integration(org_id=org.org_id, source="toast", type="pos", return_url=RETURN_URL)
    assert onboarding.model_extra is not None and "created_at" in onboarding.model_extra
    listed = client.list_organizations()[0]
    assert listed.model_extra is not None and "created_at" in listed.model_extra
    client.add_flag_contexts("sso-login", [{"key": "k1"}])
    found = client.search_contexts()[0]
    assert found.model_extra == {"flags": ["sso-login"], "segments": []}


# -- tokens ----------------------------------------------------------------------------------------------
def test_token_exp_and_refresh_token_single_use(client: StreamClient) -> None:
    short = client.request_token(exp=int(time.time()) + 600)
    assert 590 <= short.expires_in <= 600
    assert short.refresh_token is not None
    rotated = client.request_token("refresh_token", refresh_token=short.refresh_token)
    assert rotated.refresh_token is not None
    assert rotated.refresh_token.get_secret_value() != short.refresh_token.get_secret_value()
    with pytest.raises(VendorHTTPError) as reused:
        client.request_token("refresh_token", refresh_token=short.refresh_token)
    assert reused.value.status == 400 and reused.value.code == "invalid_grant"
    narrower = client.request_token("refresh_token", refresh_token=rotated.refresh_token, scopes=["sso"])
    assert narrower.scopes == ["sso"]


def test_token_endpoint_rules(sandbox: StreamSandbox, url: str) -> None:
    def post(**body: Any) -> httpx.Response:
        base = {
            "grant_type": "client_credentials",
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
        }
        return httpx.post(f"{url}/oauth/token", json={**base, **body})

    assert post().status_code == 201
    far = post(exp=time.time() + 7200)
    assert far.status_code == 400 and far.json()["error"] == "invalid_request"
    assert post(exp=time.time() - 1).status_code == 400
    assert post(grant_type="password").json()["error"] == "validation_error"
    assert post(scopes=["root"]).status_code == 400
    assert post(grant_type="refresh_token").json()["error"] == "invalid_request"
    assert post(grant_type="refresh_token", refresh_token="nope").json()["error"] == "invalid_grant"
    bad = post(client_secret="wrong")
    assert bad.status_code == 401 and bad.json() == {
        "error": "invalid_client",
        "error_description": "unknown client_id or wrong client_secret",
    }
    sandbox.add_client("narrow", "narrow-secret", scopes=["sso"])
    narrow = post(client_id="narrow", client_secret="narrow-secret", scopes=["onboarding"])
    assert narrow.status_code == 400 and narrow.json()["error"] == "invalid_scope"
    # a token of one client cannot be refreshed by another
    other = post(client_id="narrow", client_secret="narrow-secret").json()["refresh_token"]
    assert post(grant_type="refresh_token", refresh_token=other).json()["error"] == "invalid_grant"
    # a bad or expired bearer token
    assert httpx.get(f"{url}/onboarding/org").status_code == 401
    assert httpx.get(f"{url}/onboarding/org", headers={"Authorization": "Bearer nope"}).status_code == 401
    access = post(exp=time.time() + 100).json()["access_token"]
    sandbox.advance_clock(101)
    expired = httpx.get(f"{url}/onboarding/org", headers={"Authorization": f"Bearer {access}"})
    assert expired.status_code == 401 and expired.json()["error"] == "token_expired"


def test_token_refreshed_before_expiry_with_rotation_callback(
    make_client: MakeClient, sandbox: StreamSandbox
) -> None:
    now = [1_000_000.0]
    seen: list[TokenInfo] = []
    client = make_client(clock=lambda: now[0], on_token=seen.append)
    client.list_organizations()
    assert sandbox.token_requests["client_credentials"] == 1 and len(seen) == 1
    assert seen[0].grant_type == "client_credentials" and seen[0].refresh_token is not None

    now[0] += 3000  # 600 s left: the cached token is used
    client.list_organizations()
    assert sandbox.token_requests["total"] == 1

    now[0] += 541  # 59 s left: inside the 60 s margin, refreshed before the call
    client.list_organizations()
    assert sandbox.token_requests["refresh_token"] == 1 and sandbox.token_requests["total"] == 2
    assert len(seen) == 2 and seen[1].grant_type == "refresh_token"
    first, second = (info.refresh_token for info in seen)
    assert first is not None and second is not None
    assert first.get_secret_value() != second.get_secret_value()
    # the first refresh token was spent by the rotation
    with pytest.raises(VendorHTTPError, match="invalid_grant"):
        client.request_token("refresh_token", refresh_token=first)

    info = client.refresh_tokens()  # a forced refresh rotates again
    assert info.grant_type == "refresh_token" and len(seen) == 3 and seen[2] == info


def test_token_refreshed_once_on_401(client: StreamClient, sandbox: StreamSandbox) -> None:
    client.list_organizations()
    sandbox.faults.set(rate=1.0, kinds=["token_expiry"], path="^/onboarding", limit=1)
    client.list_organizations()  # 401, refresh (with the refresh token), resend: succeeds
    assert sandbox.token_requests["refresh_token"] == 1
    assert sandbox.requests.by_route["GET /onboarding/org"] == 3

    sandbox.faults.set(rate=1.0, kinds=["token_expiry"], path="^/onboarding")  # every token revoked
    with pytest.raises(AuthenticationFailed) as caught:
        client.list_organizations()
    assert caught.value.code == "invalid_token" and caught.value.operation == "list_organizations"
    assert sandbox.token_requests["refresh_token"] == 2  # refreshed once, not more
    assert sandbox.requests.by_route["GET /onboarding/org"] == 5  # sent once, resent once


def test_refused_refresh_falls_back_to_client_credentials(
    make_client: MakeClient, sandbox: StreamSandbox
) -> None:
    seen: list[TokenInfo] = []
    client = make_client(on_token=seen.append)
    client.list_organizations()
    sandbox.revoke_refresh_tokens()
    sandbox.expire_tokens()
    client.list_organizations()
    assert sandbox.token_requests["refresh_token"] == 1 and sandbox.token_requests["client_credentials"] == 2
    assert seen[-1].grant_type == "client_credentials" and seen[-1].refresh_refused is True


def test_stored_refresh_token_is_used_first(make_client: MakeClient, sandbox: StreamSandbox) -> None:
    stored = make_client().request_token().refresh_token
    seen: list[TokenInfo] = []
    client = make_client(refresh_token=stored, on_token=seen.append)
    client.list_organizations()
    assert sandbox.token_requests["refresh_token"] == 1 and sandbox.token_requests["client_credentials"] == 1
    assert seen[0].grant_type == "refresh_token"


def test_refresh_is_single_flight_across_threads(client: StreamClient, sandbox: StreamSandbox) -> None:
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait(timeout=10)
            client.list_organizations()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sandbox.token_requests["total"] == 1
    assert sandbox.requests.by_route["GET /onboarding/org"] == 8


# -- SSO -------------------------------------------------------------------------------------------------
def test_sso_token_is_single_use(client: StreamClient, sandbox: StreamSandbox, url: str) -> None:
    session = client.generate_sso_session(
        email="a@b.example", full_name="A B", phone_number="+1555", role="manager"
    )
    assert client.redeem_sso_session(session.sso_login_token).role == "manager"
    with pytest.raises(Conflict) as reused:
        client.redeem_sso_session(session.sso_login_token)
    assert reused.value.code == "sso_token_redeemed" and reused.value.status == 409

    link = client.generate_sso_session(email="a@b.example", full_name="A B", phone_number="+1555")
    page = httpx.get(client.sso_login_url(link.sso_login_token))
    assert page.status_code == 200 and "a@b.example" in page.text
    assert httpx.get(client.sso_login_url(link.sso_login_token)).json()["error"] == "sso_token_redeemed"

    late = client.generate_sso_session(email="a@b.example", full_name="A B", phone_number="+1555")
    sandbox.advance_clock(301)
    with pytest.raises(Conflict, match="sso_token_expired"):
        client.redeem_sso_session(late.sso_login_token)
    with pytest.raises(NotFound, match="sso_token_not_found"):
        client.redeem_sso_session("never-issued")


# -- OAuth integrations ----------------------------------------------------------------------------------
def test_oauth_consent_page_and_code_rules(client: StreamClient, sandbox: StreamSandbox) -> None:
    org = client.create_organization(name="Tacos", provider_id="tc-1", user=USER)
    first = client.init_integration(
        org_id=org.org_id, source="clover", type="pos", return_url=RETURN_URL + "?s=1"
    )
    assert first.entry_url is not None
    page = httpx.get(first.entry_url)
    assert page.status_code == 200 and "clover" in page.text
    approved = httpx.get(first.entry_url + "/approve")
    assert approved.status_code == 303
    redirect = httpx.URL(approved.headers["location"])
    assert str(redirect).startswith(RETURN_URL) and redirect.params["s"] == "1"
    assert redirect.params["onboarding_id"] == first.id
    code = redirect.params["code"]

    with pytest.raises(Conflict, match="invalid_code"):  # 422
        client.complete_integration(first.id, "not-a-code")
    assert client.complete_integration(first.id, code).status == "active"
    assert client.complete_integration(first.id, code).status == "active"  # same code again: same answer
    with pytest.raises(Conflict) as active:
        client.complete_integration(first.id, "other-code")
    assert active.value.status == 409 and active.value.code == "integration_active"

    second = client.init_integration(org_id=org.org_id, source="clover", type="pos", return_url=RETURN_URL)
    with pytest.raises(Conflict) as used:  # a code belongs to one integration, once
        client.complete_integration(second.id, code)
    assert used.value.status == 422
    stale = sandbox.authorize(second.id)
    sandbox.advance_clock(601)
    with pytest.raises(Conflict, match="code_expired"):
        client.complete_integration(second.id, stale)
    with pytest.raises(ValueError):
        sandbox.authorize(first.id)  # not pending any more


def test_auto_authorize_activates_at_creation(client: StreamClient, sandbox: StreamSandbox) -> None:
    sandbox.auto_authorize = True
    org = client.create_organization(name="Auto", provider_id="au-1", user=USER)
    onboarding = client.init_integration(
        org_id=org.org_id, source="square", type="pos", return_url=RETURN_URL
    )
    assert onboarding.status == "active" and onboarding.merchant_id
    assert client.complete_integration(onboarding.id, "anything").status == "active"
    assert len(client.list_onboarding_locations(onboarding.id)) == 3


# -- documented errors -----------------------------------------------------------------------------------
def test_documented_error_statuses(
    make_client: MakeClient, client: StreamClient, sandbox: StreamSandbox
) -> None:
    org = client.create_organization(name="Errors", provider_id="er-1", user=USER)

    with pytest.raises(AuthenticationFailed) as bad_client:  # 401
        make_client(client_secret=SecretStr("wrong-secret")).list_organizations()
    assert bad_client.value.code == "invalid_client" and bad_client.value.operation == "token"

    with pytest.raises(PermissionDenied) as scope:  # 403: scope missing
        make_client(scopes=["user"]).create_organization(name="X", provider_id="x", user=USER)
    assert scope.value.code == "insufficient_scope"
    with pytest.raises(PermissionDenied, match="partner_mismatch"):  # 403: another partner's id
        make_client(partner_id="someone-else").evaluate_flag("sso-login", key="k")

    sandbox.add_client("rival", "rival-secret", partner_id="rival-partner")
    rival = make_client(
        client_id="rival", client_secret=SecretStr("rival-secret"), partner_id="rival-partner"
    )
    with pytest.raises(NotFound):  # another partner's org is not visible
        rival.list_org_locations(org.org_id)
    assert rival.list_organizations() == []

    for call in (  # 404
        lambda: client.get_integration("0" * 24),
        lambda: client.list_org_locations("0" * 24),
        lambda: client.evaluate_flag("no-such-flag", key="k"),
        lambda: client.add_flag_contexts("no-such-flag", [{"key": "k"}]),
        lambda: client.remove_segment_contexts("no-such-segment", [{"key": "k"}]),
        lambda: client.assign_menus(org_id=org.org_id, dsp_location_id="0" * 24, menu_provider_ids=[]),
        lambda: client.create_partner_token(org_id="0" * 24, token_name="t", scopes=["user"]),
        lambda: client.generate_sso_session(
            email="a@b.c", full_name="A", phone_number="1", provider_org_id="nope"
        ),
    ):
        with pytest.raises(NotFound):
            call()

    with pytest.raises(Conflict) as exists:  # 409
        client.create_organization(name="Errors again", provider_id="er-1", user=USER)
    assert exists.value.status == 409 and exists.value.code == "org_exists"
    client.create_partner_token(org_id=org.org_id, token_name="t", scopes=["user"])
    with pytest.raises(Conflict, match="partner_token_exists"):
        client.create_partner_token(org_id=org.org_id, token_name="t", scopes=["user"])
    pending = client.init_integration(org_id=org.org_id, source="square", type="pos", return_url=RETURN_URL)
    with pytest.raises(Conflict, match="integration_not_active"):
        client.list_onboarding_locations(pending.id)
    with pytest.raises(Conflict, match="integration_not_active"):
        client.ingest_pos_locations(pending.id, ["sq-loc-001"])

    with pytest.raises(Conflict) as source:  # 422
        client.init_integration(org_id=org.org_id, source="no-such-pos", type="pos", return_url=RETURN_URL)
    assert source.value.status == 422 and source.value.code == "unknown_source"
    with pytest.raises(Conflict, match="unknown_source"):
        client.init_integration(org_id=org.org_id, source="doordash", type="pos", return_url=RETURN_URL)
    pos = active_integration(client, sandbox, org.org_id, "square", "pos")
    with pytest.raises(Conflict, match="unknown_location"):
        client.ingest_pos_locations(pos.id, ["sq-loc-001", "elsewhere"])
    assert client.list_org_locations(org.org_id) == []  # all or nothing
    [location] = client.ingest_pos_locations(pos.id, ["sq-loc-001"])
    with pytest.raises(Conflict, match="wrong_integration_type"):
        client.bind_dsp_locations(
            pos.id,
            [{"pos_location_id": location.id, "dsp_provider_id": "dd-store-001", "dsp_store_name": "n"}],
        )
    dsp = active_integration(client, sandbox, org.org_id, "doordash", "dsp")
    with pytest.raises(Conflict, match="unknown_dsp_location"):
        client.bind_dsp_locations(
            dsp.id, [{"pos_location_id": location.id, "dsp_provider_id": "nope", "dsp_store_name": "n"}]
        )
    with pytest.raises(Conflict, match="unknown_pos_location"):
        client.bind_dsp_locations(
            dsp.id, [{"pos_location_id": "0" * 24, "dsp_provider_id": "dd-store-001", "dsp_store_name": "n"}]
        )
    [bound] = client.bind_dsp_locations(
        dsp.id, [{"pos_location_id": location.id, "dsp_provider_id": "dd-store-001", "dsp_store_name": "n"}]
    )
    with pytest.raises(Conflict, match="unknown_menu"):
        client.assign_menus(org_id=org.org_id, dsp_location_id=bound.id, menu_provider_ids=["menu-secret"])
    sandbox.add_menus(org.org_id, ["menu-secret"])
    assert client.assign_menus(org_id=org.org_id, dsp_location_id=bound.id, menu_provider_ids=["menu-secret"])

    # 400: the emulator's own validation, for requests the client would refuse to send
    token = client.request_token().access_token.get_secret_value()
    auth = {"Authorization": f"Bearer {token}"}
    too_many = httpx.get(f"{client.base_url}/contexts", params={"limit": "51"}, headers=auth)
    assert too_many.status_code == 400 and too_many.json()["error"] == "validation_error"
    no_partner = httpx.post(
        f"{client.base_url}/feature-flags/sso-login/evaluate", json={"key": "k"}, headers=auth
    )
    assert no_partner.status_code == 400 and "partner_id" in no_partner.json()["error_description"]
    unknown_field = httpx.post(
        f"{client.base_url}/onboarding/org",
        json={"name": "n", "provider_id": "p", "user": USER, "color": "red"},
        headers=auth,
    )
    assert unknown_field.status_code == 400 and "color" in unknown_field.json()["error_description"]


def test_request_validation_names_the_field_and_sends_nothing(
    make_client: MakeClient, sandbox: StreamSandbox
) -> None:
    client = make_client()
    no_partner = make_client(partner_id=None)
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: client.init_integration(org_id="o", source="s", type="kiosk", return_url="r"), "type"),  # type: ignore[arg-type]
        (lambda: client.search_contexts(limit=51), "limit"),
        (
            lambda: client.create_organization(name="n", provider_id="p", user={**USER, "email": "nope"}),
            "user.email",
        ),
        (
            lambda: client.bind_dsp_locations("ob", [{"pos_location_id": "p", "dsp_store_name": "n"}]),
            "locations[0].dsp_provider_id",
        ),
        (lambda: client.ingest_pos_locations("ob", []), "locations"),
        (lambda: client.assign_menus(org_id="", dsp_location_id="d", menu_provider_ids=[]), "org_id"),
        (
            lambda: client.generate_sso_session(email="a@b.c", full_name="A", phone_number="1", role="boss"),  # type: ignore[arg-type]
            "role",
        ),
        (lambda: client.create_partner_token(org_id="o", token_name="t", scopes=[]), "scopes"),
        (lambda: client.add_flag_contexts("f", [{"key": "k", "colour": "red"}]), "contexts[0].colour"),
        (lambda: client.request_token(exp=int(time.time()) + 7200), "exp"),
        (lambda: client.request_token("refresh_token"), "refresh_token"),
        (lambda: client.get_integration(""), "onboarding_id"),
        (lambda: no_partner.evaluate_flag("sso-login", key="k"), "partner_id"),
    ]
    for call, field in cases:
        with pytest.raises(RequestInvalid) as caught:
            call()
        assert field in str(caught.value), (field, str(caught.value))
        assert caught.value.vendor == "stream"
    assert sandbox.requests.total == 0


# -- faults ----------------------------------------------------------------------------------------------
def test_malformed_response_names_vendor_and_operation(client: StreamClient, sandbox: StreamSandbox) -> None:
    org = client.create_organization(name="M", provider_id="m-1", user=USER)
    onboarding = client.init_integration(
        org_id=org.org_id, source="square", type="pos", return_url=RETURN_URL
    )
    sandbox.faults.set(rate=1.0, kinds=["malformed"], path="^/onboarding/integrations/")
    with pytest.raises(MalformedResponse) as caught:
        client.get_integration(onboarding.id)
    assert caught.value.vendor == "stream" and caught.value.operation == "get_integration"
    assert str(caught.value).startswith("stream get_integration: ")


def test_create_whose_answer_was_lost_is_looked_up_not_repeated(
    client: StreamClient, sandbox: StreamSandbox
) -> None:
    sandbox.faults.set(rate=1.0, kinds=["drop_after"], path="^/onboarding/org$", method="POST", limit=1)
    org = client.create_organization(name="Lost", provider_id="lost-1", user=USER)
    assert sandbox.faults.injected == {"drop_after": 1}
    assert [o.id for o in client.list_organizations()] == [org.org_id]
    assert sandbox.requests.by_route["POST /onboarding/org"] == 1
    assert org.user_id == sandbox.orgs[org.org_id].user_id

    sandbox.faults.set(
        rate=1.0, kinds=["drop_after"], path="^/onboarding/integrations$", method="POST", limit=1
    )
    onboarding = client.init_integration(org_id=org.org_id, source="toast", type="pos", return_url=RETURN_URL)
    assert [o.id for o in client.list_integrations(org_id=org.org_id)] == [onboarding.id]
    assert sandbox.requests.by_route["POST /onboarding/integrations"] == 1


def test_reads_tokens_and_evaluations_are_not_writes(client: StreamClient, sandbox: StreamSandbox) -> None:
    org = client.create_organization(name="W", provider_id="w-1", user=USER)
    pos = active_integration(client, sandbox, org.org_id, "square", "pos")
    sandbox.requests.reset()
    client.refresh_tokens()
    client.request_token()
    client.list_organizations()
    client.get_integration(pos.id)
    client.list_onboarding_locations(pos.id)
    client.list_org_locations(org.org_id)
    client.search_contexts()
    client.evaluate_flag("sso-login", key="k")
    assert sandbox.requests.writes == 0 and sandbox.requests.total == 8
    client.add_flag_contexts("sso-login", [{"key": "k"}])
    assert sandbox.requests.writes == 1


# -- secrets ---------------------------------------------------------------------------------------------
def test_client_secret_never_in_errors_or_logs(
    make_client: MakeClient, sandbox: StreamSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with pytest.raises(AuthenticationFailed) as caught:
        make_client(client_id=DEFAULT_CLIENT_ID, client_secret=SecretStr(SENTINEL)).list_organizations()
    texts += [str(caught.value), repr(caught.value), str(caught.value.detail)]

    sandbox.add_client("sentinel", SENTINEL, partner_id=DEFAULT_PARTNER_ID)
    client = make_client(client_id="sentinel", client_secret=SecretStr(SENTINEL))
    org = client.create_organization(name="S", provider_id="s-1", user=USER)
    sandbox.revoke_refresh_tokens()
    sandbox.expire_tokens()  # refresh refused, client_credentials again: the secret is sent twice more
    client.list_org_locations(org.org_id)
    with pytest.raises(NotFound) as missing:
        client.get_integration("0" * 24)
    texts += [str(missing.value), repr(client.last_token_info), repr(client.request_token())]
    texts += [call.model_dump_json() for call in client.recorder.drain()]
    texts += [record.getMessage() for record in caplog.records]
    texts += [repr(record.args) for record in caplog.records]
    assert caplog.records, "expected the client and httpx to log something"
    assert any("falling back" in record.getMessage() for record in caplog.records)
    for text in texts:
        assert SENTINEL not in text


# -- webhooks --------------------------------------------------------------------------------------------
def test_webhook_sender_signs_the_body(sandbox: StreamSandbox, url: str) -> None:
    received: list[tuple[bytes, str | None]] = []

    async def hook(request: Request) -> Response:
        received.append((await request.body(), request.headers.get(SIGNATURE_HEADER)))
        return Response(status_code=204)

    with SandboxServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as receiver:
        event = sandbox.webhook_event("order.created", {"order_id": "o-1"})
        assert sandbox.send_webhook(f"{receiver.url}/hook", "whsec-test", event) == 204
        admin = httpx.post(
            f"{url}/_sandbox/stream/webhooks",
            json={
                "url": f"{receiver.url}/hook",
                "secret": "whsec-test",
                "event": {"id": "evt-2", "type": "t"},
            },
        )
        assert admin.json() == {"status": 204}
    assert len(received) == 2
    for body, signature in received:
        assert verify_webhook_signature(body, SecretStr("whsec-test"), signature)
        assert not verify_webhook_signature(body + b" ", "whsec-test", signature)
        assert not verify_webhook_signature(body, "other-secret", signature)
    assert not verify_webhook_signature(received[0][0], "whsec-test", None)
