"""provision-subscriptions under Prefect (test harness) over the whole sandbox, and `streamkeeper plan/apply`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from clikit import RunStreamkeeper
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from flows.provision import provision_subscriptions, save_sandbox_connections
from streamkeeper.errors import ConfigError
from streamkeeper.sandbox.runner import Sandbox
from streamkeeper.store import HistoryStore

pytestmark = pytest.mark.usefixtures("prefect_api")
EXAMPLE = Path(__file__).parents[2] / "data" / "specs" / "example.yaml"


@pytest.fixture(scope="module")
def sandbox(prefect_api: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    running = Sandbox.start(
        state_dir=tmp_path_factory.mktemp("sandbox"), dma={"validate_consumer_url": False}
    )
    assert running.tls is not None
    save_sandbox_connections(running.urls(), running.tls.cert_pem, prefix="pv")
    yield running
    running.stop()


def spec_file(tmp_path: Path, old: str = "", new: str = "") -> Path:
    text = EXAMPLE.read_text().replace("demo-", "pv-")
    path = tmp_path / "spec.yaml"
    path.write_text(text.replace(old, new) if old else text)
    return path


async def _artifacts(flow_run_id: UUID) -> dict[str, str | None]:
    """The artifacts one flow run published (other tests in the session publish the same keys)."""
    flt = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
    async with get_client() as client:
        return {a.key: a.description for a in await client.read_artifacts(artifact_filter=flt) if a.key}


def test_flow_plans_applies_and_records_the_example_over_five_vendors(
    sandbox: Sandbox, tmp_path: Path, db_path: Path
) -> None:
    spec = str(spec_file(tmp_path))
    writes = sum(app.requests.writes for app in sandbox.apps.values())
    state = provision_subscriptions(
        spec_path=spec, db_path=str(db_path), return_state=True
    )  # dry run: default
    planned = state.result()
    assert not planned.applied and planned.plan.exit_code == 2
    assert {c.vendor for c in planned.plan.pending()} == {"plt", "dma", "stream", "thingspace", "equinix"}
    assert sum(app.requests.writes for app in sandbox.apps.values()) == writes  # a plan writes nothing
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    assert "Dry run" in (asyncio.run(_artifacts(run_id)).get("provision-plan") or "")

    applied = provision_subscriptions(spec_path=spec, dry_run=False, db_path=str(db_path))
    assert applied.applied and applied.failed == []
    assert len(applied.outcomes) == len(planned.plan.pending()) == 13
    history = HistoryStore(db_path).query("SELECT vendor, change, flow_run_id FROM subscriptions")
    assert len(history) == 13 and set(history["change"]) == {"created"} and history["flow_run_id"].all()

    # the same spec inline: nothing to do
    again = provision_subscriptions(spec_yaml=Path(spec).read_text(), db_path=str(db_path))
    assert again.plan.exit_code == 0


def test_bad_parameters_and_missing_blocks_are_clear(sandbox: Sandbox, tmp_path: Path, db_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one of spec_path or spec_yaml"):
        provision_subscriptions(db_path=str(db_path))
    missing = spec_file(tmp_path, "connection: pv-equinix", "connection: pv-nowhere")
    with pytest.raises(ConfigError) as info:
        provision_subscriptions(spec_path=str(missing), db_path=str(db_path))
    assert "equinix block 'pv-nowhere' not found" in str(info.value)


def test_cli_plan_exit_codes_and_apply(
    sandbox: Sandbox, tmp_path: Path, run_streamkeeper: RunStreamkeeper
) -> None:
    from prefect.settings import PREFECT_API_URL

    env = {
        "STREAMKEEPER_HOME": str(tmp_path / "home"),
        "STREAMKEEPER_DB": str(tmp_path / "cli.duckdb"),
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
    }
    # the spec's DMA subscriptions only: the other connections are shared with the test above
    text = spec_file(tmp_path).read_text()
    only_dma = tmp_path / "dma.yaml"
    only_dma.write_text("dma:" + text.split("\ndma:", 1)[1].split("\nstream:", 1)[0])
    changed = tmp_path / "changed.yaml"
    changed.write_text(only_dma.read_text().replace("time_to_live: 7200", "time_to_live: 7000"))
    # the CLI's entry point in this process (a Prefect start per command costs seconds)
    applied, clean, pending = (
        run_streamkeeper([command, str(spec)], env=env)
        for command, spec in [("apply", only_dma), ("plan", only_dma), ("plan", changed)]
    )
    assert [applied.returncode, clean.returncode, pending.returncode] == [0, 0, 2], pending.stdout[-3000:]
    assert "Applied: 3" in applied.stdout  # created, or adopted when an earlier test made them
    assert "Plan: 0 to create, 0 to update" in clean.stdout
    assert "time_to_live: 7200 -> 7000" in pending.stdout and "1 to update" in pending.stdout
    current = HistoryStore(str(env["STREAMKEEPER_DB"])).query(
        "SELECT name FROM current_subscriptions ORDER BY name"
    )
    assert current["name"].tolist() == ["all-conferences", "board-meeting", "town-hall-participants"]
    bad = run_streamkeeper(["plan", str(tmp_path / "nope.yaml")], env=env)
    assert bad.returncode == 1 and "error: spec file not found" in bad.stderr


def test_every_parameter_is_described_for_the_ui() -> None:
    from prefect.utilities.callables import parameter_schema

    schema = parameter_schema(provision_subscriptions.fn).model_dump()
    assert set(schema["properties"]) == {"spec_path", "spec_yaml", "dry_run", "prune", "db_path", "workers"}
    assert all(p.get("description") for p in schema["properties"].values())
    assert (
        schema["properties"]["dry_run"]["default"] is True
        and schema["properties"]["prune"]["default"] is False
    )
