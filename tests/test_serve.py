"""prefect.yaml and ``streamkeeper serve``: every flow of DESIGN.md deployed, its parameters valid for the
flow's typed signature, cron schedules and concurrency limits as declared; serve builds the same deployments."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamkeeper.commands.serve import load_flow, project_file, read_deployments, serve, to_runner_deployment
from streamkeeper.errors import ConfigError

FLOWS = {
    "onboard-organization": "flows/onboard.py:onboard_organization",
    "provision-subscriptions": "flows/provision.py:provision_subscriptions",
    "refresh-subscriptions": "flows/refresh.py:refresh_subscriptions",
    "audit-subscriptions": "flows/audit.py:audit_subscriptions",
    "ingest-events": "flows/ingest.py:ingest_events",
}
CRON = {
    "refresh-subscriptions": "0 * * * *",
    "audit-subscriptions": "15 */6 * * *",
    "ingest-events": "* * * * *",
}


def test_prefect_yaml_deploys_every_flow_with_valid_parameters_schedules_and_limits() -> None:
    specs = read_deployments(project_file(), [])
    assert {d["name"]: d["entrypoint"] for d in specs} == FLOWS
    for spec in specs:
        flow = load_flow(spec["entrypoint"])
        assert flow.name == spec["name"]
        flow.validate_parameters(spec.get("parameters") or {})  # typed: a wrong name or type raises
        assert spec["work_pool"]["name"] == "streamkeeper-process"
        crons = [s["cron"] for s in spec.get("schedules") or []]
        assert crons == ([CRON[spec["name"]]] if spec["name"] in CRON else [])

        deployment = to_runner_deployment(spec)
        assert [s.schedule.cron for s in deployment.schedules] == crons
        assert deployment.parameters == (spec.get("parameters") or {})
        if spec["name"] == "onboard-organization":
            assert deployment.concurrency_limit is None  # a paused onboarding must not block the next one
        else:
            assert deployment.concurrency_limit == 1
            strategy = "ENQUEUE" if spec["name"] == "provision-subscriptions" else "CANCEL_NEW"
            assert deployment.concurrency_options.collision_strategy == strategy
    refresh = next(s for s in specs if s["name"] == "refresh-subscriptions")
    assert refresh["parameters"]["refresh_within_seconds"] >= 2 * 3600  # twice the hourly interval


def test_serve_refuses_the_ephemeral_api_and_unknown_deployments(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with pytest.raises(ConfigError, match="needs a Prefect server"):
        serve(only=["refresh-subscriptions"], prefect_file=None, limit=None)
    with pytest.raises(ConfigError, match="no such deployment"):
        serve(only=["nope"], prefect_file=None, limit=None)
    broken = tmp_path / "prefect.yaml"
    broken.write_text("deployments: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        serve(only=None, prefect_file=broken, limit=None)
