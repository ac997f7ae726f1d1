"""refresh-subscriptions against the DMA emulator, with real Prefect (test harness) and a real DuckDB file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from pydantic import SecretStr

from blocks.dma import DMACredentials
from flows.refresh import refresh_subscriptions
from streamkeeper.errors import StreamkeeperError
from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.dma import DMASandbox
from streamkeeper.sandbox.tls import TLSFiles
from streamkeeper.store import HistoryStore

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def dma(serve: Callable[..., SandboxServer], tls_files: TLSFiles) -> DMASandbox:
    sandbox = DMASandbox(validate_consumer_url=False)
    serve(sandbox, tls=tls_files)
    return sandbox


def save_block(dma: DMASandbox, tls_files: TLSFiles, name: str, password: str = "provisioner-pass") -> None:
    DMACredentials(
        base_url=dma.url + "/api/rest",
        username="provisioner",
        password=SecretStr(password),
        ca_bundle=tls_files.cert_pem,
    ).save(name, overwrite=True)


def test_refresh_extends_what_expires_soon_and_records_history(
    dma: DMASandbox, tls_files: TLSFiles, db_path: Path
) -> None:
    save_block(dma, tls_files, "dma-refresh")
    client = DMACredentials.load("dma-refresh").get_client()
    soon = client.create_subscription(
        "conferences", {"consumer_url": "http://x.test/a", "time_to_live": 300, "passback": "soon"}
    )
    later = client.create_subscription(
        "conferences/1", {"consumer_url": "http://x.test/b", "time_to_live": 90000, "passback": "later"}
    )

    summary = refresh_subscriptions(
        dma_blocks=["dma-refresh"], refresh_within_seconds=3600, time_to_live=0, db_path=str(db_path)
    )
    assert summary.refreshed == 1 and summary.failed == 0
    assert [o.subscription_id for o in summary.outcomes] == [soon.subscription_identifier]
    refreshed = client.get_subscription(soon.subscription_identifier)
    untouched = client.get_subscription(later.subscription_identifier)
    assert refreshed is not None and refreshed.time_to_live == 93600
    assert untouched is not None and untouched.entity_tag == later.entity_tag

    history = HistoryStore(db_path).query("SELECT * FROM subscriptions")
    assert history["change"].tolist() == ["refreshed"]
    row = history.iloc[0]
    assert row["previous_expires_at"] < row["expires_at"]
    assert row["flow_run_id"]
    calls = HistoryStore(db_path).query("SELECT operation, path, status FROM api_calls ORDER BY called_at")
    assert calls[["operation", "status"]].values.tolist() == [
        ["list_subscriptions", 200],
        ["update_time_to_live", 204],
    ]
    assert set(calls["path"]) == {"/subscriptions", "/subscriptions/{id}"}

    # the second run lists with If-None-Match: the DMA answers 304 when nothing changed since
    before = dma.requests.snapshot()["by_route"].get("GET /api/rest/subscriptions", 0)
    refresh_subscriptions(
        dma_blocks=["dma-refresh"], refresh_within_seconds=60, db_path=str(db_path)
    )  # changed list
    refresh_subscriptions(
        dma_blocks=["dma-refresh"], refresh_within_seconds=60, db_path=str(db_path)
    )  # unchanged
    statuses = (
        HistoryStore(db_path)
        .query("SELECT status FROM api_calls WHERE operation = 'list_subscriptions' ORDER BY called_at")[
            "status"
        ]
        .tolist()
    )
    assert statuses == [200, 200, 304]
    assert dma.requests.snapshot()["by_route"]["GET /api/rest/subscriptions"] == before + 2


async def _artifacts_of(flow_run_id: object) -> dict[str, str | None]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    flt = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
    async with get_client() as client:
        return {a.key: a.description for a in await client.read_artifacts(artifact_filter=flt) if a.key}


def test_refresh_publishes_an_artifact(dma: DMASandbox, tls_files: TLSFiles, db_path: Path) -> None:
    import asyncio

    save_block(dma, tls_files, "dma-artifact")
    client = DMACredentials.load("dma-artifact").get_client()
    client.create_subscription("conferences", {"consumer_url": "http://x.test/c", "time_to_live": 60})
    state = refresh_subscriptions(dma_blocks=["dma-artifact"], db_path=str(db_path), return_state=True)
    artifacts = asyncio.run(_artifacts_of(state.state_details.flow_run_id))
    assert artifacts["refresh-subscriptions"] and artifacts["refresh-subscriptions"].startswith("1 refreshed")


def test_wrong_password_fails_fast_with_a_clear_error(
    dma: DMASandbox, tls_files: TLSFiles, db_path: Path
) -> None:
    save_block(dma, tls_files, "dma-wrong", password="S3NTINEL-wrong")
    with pytest.raises(StreamkeeperError) as info:
        refresh_subscriptions(dma_blocks=["dma-wrong"], db_path=str(db_path))
    assert "HTTP 401" in str(info.value) and "S3NTINEL" not in str(info.value)
    # not retried: a refused password does not get better by asking again
    assert dma.requests.total == 1


def test_refresh_recreates_what_expired_from_the_spec_and_renews_tokens(
    dma: DMASandbox, serve: Callable[..., SandboxServer], tls_files: TLSFiles, db_path: Path, tmp_path: Path
) -> None:
    from prefect.blocks.system import Secret

    from blocks.equinix import EquinixCredentials
    from blocks.stream import StreamCredentials
    from blocks.thingspace import ThingSpaceCredentials
    from streamkeeper.reports import run_report
    from streamkeeper.sandbox import equinix as eqx
    from streamkeeper.sandbox import stream as st
    from streamkeeper.sandbox import thingspace as ts

    stream, thingspace, equinix = st.StreamSandbox(), ts.ThingSpaceSandbox(), eqx.EquinixSandbox()
    for sandbox in (stream, thingspace, equinix):
        serve(sandbox)
    save_block(dma, tls_files, "dma-spec")
    StreamCredentials(
        base_url=stream.url, client_id=st.DEFAULT_CLIENT_ID, client_secret=SecretStr(st.DEFAULT_CLIENT_SECRET)
    ).save("stream-tokens", overwrite=True)
    ThingSpaceCredentials(
        base_url=thingspace.url,
        app_key=ts.DEFAULT_APP_KEY,
        app_secret=SecretStr(ts.DEFAULT_APP_SECRET),
        username=ts.DEFAULT_USERNAME,
        password=SecretStr(ts.DEFAULT_PASSWORD),
        account_name=ts.DEFAULT_ACCOUNT,
    ).save("ts-tokens", overwrite=True)
    EquinixCredentials(
        base_url=equinix.url,
        client_id=eqx.DEFAULT_CLIENT_ID,
        client_secret=SecretStr(eqx.DEFAULT_CLIENT_SECRET),
    ).save("eqx-tokens", overwrite=True)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "dma:\n  - connection: dma-spec\n    subscriptions:\n"
        "      - {name: keep-me, subject: all_conferences, consumer_url: 'http://x.test/k', time_to_live: 600,\n"
        "         notification_credentials: {username: notifier, password_block: dma-notify-pass}}\n"
    )
    Secret(value={"password": "S3NTINEL-notify"}).save("dma-notify-pass", overwrite=True)
    client = DMACredentials.load("dma-spec").get_client()
    client.create_subscription(
        "conferences", {"consumer_url": "http://x.test/k", "time_to_live": 30, "passback": "keep-me"}
    )
    args = {
        "spec_path": str(spec),
        "stream_blocks": ["stream-tokens"],
        "thingspace_blocks": ["ts-tokens"],
        "equinix_blocks": ["eqx-tokens"],
        "db_path": str(db_path),
    }

    first = refresh_subscriptions(**args)
    assert (first.refreshed, first.expired, first.recreated) == (1, 0, 0)
    assert [(t.vendor, t.event) for t in first.tokens] == [
        ("stream", "issued"),
        ("thingspace", "renewed"),
        ("equinix", "renewed"),
    ]
    stored = StreamCredentials.load("stream-tokens").refresh_token
    assert stored is not None  # the new refresh token was saved back to the block

    dma.advance(60)  # nobody refreshed it for longer than its time-to-live: gone
    second = refresh_subscriptions(**args)
    assert (second.refreshed, second.expired, second.recreated) == (0, 1, 1)
    again = {s.passback: s for s in client.list_subscriptions().subscriptions}["keep-me"]  # type: ignore[union-attr]
    assert again.time_to_live == 600 and again.username == "notifier"  # as the spec says
    assert (
        dma.subscriptions[again.subscription_identifier].password == "S3NTINEL-notify"
    )  # from its Secret block
    assert second.tokens[0].event == "rotated"
    rotated = StreamCredentials.load("stream-tokens").refresh_token
    assert rotated is not None and rotated.get_secret_value() != stored.get_secret_value()

    history = HistoryStore(db_path)
    assert history.query("SELECT count(*) AS n FROM token_events")["n"][0] == 6
    for table in ("token_events", "api_calls", "subscriptions"):
        text = history.query(f"SELECT * FROM {table}").to_csv()
        assert stored.get_secret_value() not in text and rotated.get_secret_value() not in text
        assert "S3NTINEL" not in text
    health = run_report("token_health", db_path)
    assert sorted(health["health"]) == ["ok", "ok", "ok"]
    changes = run_report("refresh_history", db_path)["change"].tolist()
    assert sorted(changes) == ["expired", "recreated", "refreshed"]


def test_a_missing_block_is_one_clear_line(db_path: Path) -> None:
    with pytest.raises(
        StreamkeeperError, match=r"no Polycom DMA Credentials block named 'not-saved'.*connect dma"
    ):
        refresh_subscriptions(dma_blocks=["not-saved"], db_path=str(db_path))
