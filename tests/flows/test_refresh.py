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


async def _artifact_keys() -> set[str]:
    async with get_client() as client:
        return {a.key for a in await client.read_artifacts() if a.key}


def test_refresh_publishes_an_artifact(dma: DMASandbox, tls_files: TLSFiles, db_path: Path) -> None:
    import asyncio

    save_block(dma, tls_files, "dma-artifact")
    refresh_subscriptions(dma_blocks=["dma-artifact"], db_path=str(db_path))
    assert "refresh-subscriptions" in asyncio.run(_artifact_keys())


def test_wrong_password_fails_fast_with_a_clear_error(
    dma: DMASandbox, tls_files: TLSFiles, db_path: Path
) -> None:
    save_block(dma, tls_files, "dma-wrong", password="S3NTINEL-wrong")
    with pytest.raises(StreamkeeperError) as info:
        refresh_subscriptions(dma_blocks=["dma-wrong"], db_path=str(db_path))
    assert "HTTP 401" in str(info.value) and "S3NTINEL" not in str(info.value)
    # not retried: a refused password does not get better by asking again
    assert dma.requests.total == 1
