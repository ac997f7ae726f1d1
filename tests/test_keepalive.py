"""Keeping subscriptions and tokens alive, against the emulators over loopback, judged by the DMA's own clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from streamkeeper.keepalive import (
    DesiredDMASubscription,
    refresh_dma,
    renew_equinix_token,
    renew_thingspace_session,
    rotate_stream_token,
)
from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.dma import DMASandbox
from streamkeeper.sandbox.equinix import DEFAULT_CLIENT_ID as EQX_ID
from streamkeeper.sandbox.equinix import DEFAULT_CLIENT_SECRET as EQX_SECRET
from streamkeeper.sandbox.equinix import EquinixSandbox
from streamkeeper.sandbox.stream import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, StreamSandbox
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
from streamkeeper.vendors.dma import DMAClient
from streamkeeper.vendors.equinix import EquinixClient
from streamkeeper.vendors.http import RetryPolicy, tls_verify
from streamkeeper.vendors.stream import StreamClient, TokenInfo
from streamkeeper.vendors.thingspace import ThingSpaceClient

FAST = RetryPolicy(backoff_base=0.01)


@pytest.fixture
def dma(serve: Callable[..., SandboxServer], tls_files: TLSFiles) -> DMASandbox:
    sandbox = DMASandbox(validate_consumer_url=False)
    serve(sandbox, tls=tls_files)
    return sandbox


@pytest.fixture
def connect(dma: DMASandbox, tls_files: TLSFiles) -> Callable[[str], DMAClient]:
    def make(user: str = "provisioner") -> DMAClient:
        return DMAClient(
            dma.url + "/api/rest",
            username=user,
            password=SecretStr(f"{user}-pass"),
            verify=tls_verify(tls_files.cert_pem),
            retry=FAST,
        )

    return make


def dma_clock(dma: DMASandbox) -> Callable[[], datetime]:
    return lambda: datetime.fromtimestamp(dma.now(), UTC)


def new(client: DMAClient, name: str, ttl: int, subject: str = "conferences") -> str:
    sub = client.create_subscription(
        subject, {"consumer_url": f"http://x.test/{name}", "time_to_live": ttl, "passback": name}
    )
    return sub.subscription_identifier


def wanted(name: str, ttl: int) -> dict[str, Callable[[], DesiredDMASubscription]]:
    body = DesiredDMASubscription(
        name=name,
        subject="conferences",
        subscription={"consumer_url": f"http://x.test/{name}", "time_to_live": ttl},
    )
    return {name: lambda: body}


def test_short_lived_subscription_stays_alive_across_runs_and_one_left_alone_expires(
    dma: DMASandbox, connect: Callable[[str], DMAClient], db_path: Path
) -> None:
    # the refreshing account (no Provisioner role) sees only its own subscriptions: the admin's is left alone
    operator, admin = connect("operator"), connect("admin")
    kept = new(operator, "kept", ttl=300)
    left = new(admin, "left", ttl=300)
    store = HistoryStore(db_path)
    clock = dma_clock(dma)

    for _ in range(5):  # 1000 s of DMA time, more than three times the time-to-live
        dma.advance(200)
        outcomes = refresh_dma(operator, store, "dma", within=timedelta(seconds=300), clock=clock)
        assert [(o.subscription_id, o.outcome) for o in outcomes] == [(kept, "refreshed")]
        assert outcomes[0].new_expires_at == pytest.approx(
            clock() + timedelta(seconds=300), abs=timedelta(seconds=5)
        )

    alive = operator.get_subscription(kept)
    assert alive is not None and alive.time_to_live == 300
    assert alive.calculated_expiration_date is not None and alive.calculated_expiration_date > clock()
    assert admin.list_subscriptions().subscriptions == [alive]  # type: ignore[union-attr]  # left: gone
    assert left not in dma.subscriptions
    history = store.query("SELECT subscription_id, change FROM subscriptions ORDER BY valid_from")
    assert history.values.tolist() == [[kept, "refreshed"]] * 5

    # refreshing stops: it expires too; the next run records that, and recreates it when the spec wants it
    dma.advance(400)
    outcomes = refresh_dma(
        operator, store, "dma", within=timedelta(seconds=300), clock=clock, desired=wanted("kept", 300)
    )
    assert [(o.subscription_id, o.outcome) for o in outcomes[:1]] == [(kept, "expired")]
    assert outcomes[0].detail == "no longer listed by the DMA"
    assert outcomes[1].outcome == "recreated" and outcomes[1].name == "kept"
    again = operator.get_subscription(outcomes[1].subscription_id)
    assert again is not None and again.passback == "kept" and again.subscription_identifier != kept
    current = store.current_subscriptions("dma", "dma")
    assert sorted(zip(current["subscription_id"], current["change"], strict=True)) == sorted(
        [(kept, "expired"), (again.subscription_identifier, "recreated")]
    )


def test_what_expires_within_the_horizon_is_refreshed_soonest_first(
    dma: DMASandbox, connect: Callable[[str], DMAClient], db_path: Path
) -> None:
    client = connect("provisioner")
    ids = {ttl: new(client, f"s{ttl}", ttl) for ttl in (5000, 900, 100, 200)}
    far = client.get_subscription(ids[5000])
    outcomes = refresh_dma(
        client,
        HistoryStore(db_path),
        "dma",
        within=timedelta(seconds=1000),
        clock=dma_clock(dma),
        time_to_live=0,
    )
    assert [o.subscription_id for o in outcomes] == [ids[100], ids[200], ids[900]]
    assert {o.outcome for o in outcomes} == {"refreshed"}
    for ttl in (100, 200, 900):
        sub = client.get_subscription(ids[ttl])
        assert sub is not None and sub.time_to_live == 93600
    untouched = client.get_subscription(ids[5000])
    assert far is not None and untouched is not None and untouched.entity_tag == far.entity_tag


def test_a_404_on_the_put_is_an_expiry_and_the_spec_recreates_it(
    dma: DMASandbox, connect: Callable[[str], DMAClient], db_path: Path
) -> None:
    client = connect("provisioner")
    doomed = new(client, "doomed", ttl=1)
    # the PUT arrives after the subscription's last second: listed alive, gone when refreshed
    dma.faults.set(rate=1.0, kinds=["slow"], slow_seconds=1.5, method="PUT")
    outcomes = refresh_dma(
        client, HistoryStore(db_path), "dma", within=timedelta(hours=1), desired=wanted("doomed", 600)
    )
    dma.faults.clear()
    assert [(o.subscription_id, o.outcome, o.detail) for o in outcomes][0] == (
        doomed,
        "expired",
        "gone (404)",
    )
    assert outcomes[1].outcome == "recreated" and outcomes[1].detail == f"replaces expired {doomed}"
    recreated = client.get_subscription(outcomes[1].subscription_id)
    assert recreated is not None and recreated.passback == "doomed" and recreated.time_to_live == 600
    rows = HistoryStore(db_path).query("SELECT change, desired FROM subscriptions ORDER BY valid_from")
    assert rows["change"].tolist() == ["expired", "recreated"]


def test_vendor_tokens_are_renewed_and_recorded_without_the_token(
    serve: Callable[..., SandboxServer],
) -> None:
    stream, thingspace, equinix = StreamSandbox(), ThingSpaceSandbox(), EquinixSandbox()
    for sandbox in (stream, thingspace, equinix):
        serve(sandbox)

    saved: list[TokenInfo] = []
    first = StreamClient(
        stream.url, client_id=DEFAULT_CLIENT_ID, client_secret=SecretStr(DEFAULT_CLIENT_SECRET), retry=FAST
    ).request_token()
    assert first.refresh_token is not None
    with StreamClient(
        stream.url,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=SecretStr(DEFAULT_CLIENT_SECRET),
        refresh_token=first.refresh_token,
        on_token=saved.append,
        retry=FAST,
    ) as client:
        event = rotate_stream_token(client, "stream-block")
    assert event.event == "rotated" and event.vendor == "stream" and event.account == "stream-block"
    assert len(saved) == 1 and saved[0].refresh_token is not None
    assert saved[0].refresh_token.get_secret_value() != first.refresh_token.get_secret_value()
    assert stream.token_requests["refresh_token"] == 1

    # the stored refresh token was spent elsewhere (another run): new tokens by client_credentials
    with StreamClient(
        stream.url,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=SecretStr(DEFAULT_CLIENT_SECRET),
        refresh_token=first.refresh_token,
        on_token=saved.append,
        retry=FAST,
    ) as client:
        again = rotate_stream_token(client, "stream-block")
    assert again.event == "issued" and "refused" in (again.detail or "")

    with ThingSpaceClient(
        thingspace.url,
        app_key=DEFAULT_APP_KEY,
        app_secret=SecretStr(DEFAULT_APP_SECRET),
        username=DEFAULT_USERNAME,
        password=SecretStr(DEFAULT_PASSWORD),
        account_name=DEFAULT_ACCOUNT,
        retry=FAST,
    ) as ts:
        renewed = renew_thingspace_session(ts, "ts-block")
    assert renewed.event == "renewed" and renewed.expires_at is not None
    assert renewed.expires_at > datetime.now(UTC) + timedelta(minutes=5)

    with EquinixClient(equinix.url, client_id=EQX_ID, client_secret=SecretStr(EQX_SECRET), retry=FAST) as eq:
        token = renew_equinix_token(eq, "eqx-block")
    assert token.event == "renewed" and token.expires_at is not None

    with EquinixClient(
        equinix.url, client_id=EQX_ID, client_secret=SecretStr("S3NTINEL-wrong"), retry=FAST
    ) as bad:
        failed = renew_equinix_token(bad, "eqx-bad")
    assert (
        failed.event == "failed"
        and "AuthenticationFailed" in (failed.detail or "")
        and "HTTP 400 invalid_client" in (failed.detail or "")  # doc: the token API refuses with a 400
        and "S3NTINEL" not in (failed.detail or "")
    )


def test_a_refresh_that_meets_a_newer_change_never_shortens_it(connect: Callable[[str], DMAClient]) -> None:
    from streamkeeper.keepalive import _refresh_one, utc_now

    client = connect("provisioner")
    made = client.create_subscription("conferences", {"consumer_url": "http://x.test/a", "time_to_live": 600})
    listed = client.get_subscription(made.subscription_identifier)
    assert listed is not None
    # another run extends it to the maximum after we listed it: our PUT's entity tag is stale (412)
    client.update_time_to_live(listed.subscription_identifier, 0, listed.entity_tag or "")

    outcome = _refresh_one(client, "dma-a", listed.model_copy(), 600, utc_now)

    now = client.get_subscription(listed.subscription_identifier)
    assert now is not None and now.time_to_live == 93600  # not put back to 600
    assert outcome.outcome == "refreshed" and "another run" in (outcome.detail or "")
    assert outcome.new_expires_at == now.calculated_expiration_date

    # a change that leaves it shorter than ours: ours is put again, with the fresh entity tag
    fresh = client.get_subscription(listed.subscription_identifier)
    assert fresh is not None
    client.update_time_to_live(fresh.subscription_identifier, 60, fresh.entity_tag or "")
    outcome = _refresh_one(client, "dma-a", fresh.model_copy(), 600, utc_now)
    again = client.get_subscription(fresh.subscription_identifier)
    assert outcome.outcome == "refreshed" and outcome.detail is None
    assert again is not None and again.time_to_live == 600
