"""ingest-events and audit-subscriptions with ``dashboard_path``: each writes the page and publishes a link to
it and its headline figures as artifacts of the run (real Prefect test harness, the DMA emulator)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from pydantic import SecretStr

from blocks.dma import DMACredentials
from flows.audit import audit_subscriptions
from flows.ingest import ingest_events
from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.dma import DMASandbox
from streamkeeper.sandbox.tls import TLSFiles
from streamkeeper.store import HistoryStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dashkit import seed  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]  # ~6 s a flow run with its page


async def _artifacts(flow_run_id: Any) -> dict[str, Any]:
    async with get_client() as client:
        return {a.key: a for a in await client.read_artifacts() if a.flow_run_id == flow_run_id}


def check_artifacts(flow_run_id: Any, page: Path) -> None:
    artifacts = asyncio.run(_artifacts(flow_run_id))
    link = artifacts["dashboard"]
    # a link artifact is markdown: [text](link)
    assert link.type == "markdown" and f"]({page.resolve().as_uri()})" in link.data, link.data
    assert "6 of 6 charts with data" in (link.description or "")
    figures = artifacts["dashboard-figures"]
    assert (
        figures.type == "table"
        and "failed audits" in figures.data
        and str(page.resolve()) in (figures.description or "")
    )


def test_ingest_writes_the_dashboard_and_links_it(db_path: Path, tmp_path: Path) -> None:
    seed(HistoryStore(db_path))
    landing = tmp_path / "landing"
    landing.mkdir()
    page = tmp_path / "site" / "dashboard.html"
    state = ingest_events(
        landing_dir=str(landing), db_path=str(db_path), dashboard_path=str(page), return_state=True
    )
    summary = state.result()
    assert summary.dashboard is not None and summary.dashboard.path == str(page.resolve())
    assert "Plotly.newPlot(" in page.read_text()
    check_artifacts(state.state_details.flow_run_id, page)


def test_audit_writes_the_dashboard_and_links_it(
    serve: Callable[..., SandboxServer], tls_files: TLSFiles, db_path: Path, tmp_path: Path
) -> None:
    seed(HistoryStore(db_path))
    dma = DMASandbox(validate_consumer_url=False)
    serve(dma, tls=tls_files)
    DMACredentials(
        base_url=dma.url + "/api/rest",
        username="provisioner",
        password=SecretStr("provisioner-pass"),
        ca_bundle=tls_files.cert_pem,
    ).save("dashboard-dma", overwrite=True)
    spec = tmp_path / "spec.yaml"
    spec.write_text("dma:\n  - connection: dashboard-dma\n    subscriptions: []\n")
    page = tmp_path / "dashboard.html"
    state = audit_subscriptions(
        spec_path=str(spec), db_path=str(db_path), dashboard_path=str(page), return_state=True
    )
    summary = state.result()
    assert summary.dashboard is not None and summary.dashboard.drawn == 6
    # the audit this run made is on the page: one more audit than the week seeded
    audits = HistoryStore(db_path).query("SELECT count(*) AS n FROM audits")["n"][0]
    assert audits == 9 and summary.dashboard.headline["failed audits"] == "1"
    check_artifacts(state.state_details.flow_run_id, page)
