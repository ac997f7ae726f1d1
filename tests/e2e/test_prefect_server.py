"""End to end, as it runs for real: a Prefect server, the work pool, ``prefect deploy --all`` from prefect.yaml,
a process worker, a run triggered through the API as the UI does, and a cron-scheduled run firing.

Prefect's ephemeral API has no scheduler, so this starts ``prefect server start`` (its own PREFECT_HOME in a
temp dir, a free port). The deployments are the project's prefect.yaml, with its schedules switched off so
that nothing else fires, plus one test-only deployment of refresh-subscriptions on an every-minute cron.
Every process started here is killed with its process group, also when the test fails.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from e2ekit import ROOT, Processes, api, free_port, wait_for
from pydantic import SecretStr

from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.dma import DMASandbox
from streamkeeper.sandbox.tls import TLSFiles
from streamkeeper.store import HistoryStore
from streamkeeper.vendors.dma import DMAClient
from streamkeeper.vendors.http import tls_verify

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

POOL = "streamkeeper-process"
CRON_DEPLOYMENT = "e2e-refresh-every-minute"


def test_deploy_trigger_worker_and_cron(
    tmp_path: Path, processes: Processes, serve: Callable[..., SandboxServer], tls_files: TLSFiles
) -> None:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    # -- the vendor: a DMA emulator with one short-lived subscription ------------------------------------
    dma = DMASandbox(validate_consumer_url=False)
    serve(dma, tls=tls_files)
    client = DMAClient(
        dma.url + "/api/rest",
        username="provisioner",
        password=SecretStr("provisioner-pass"),
        verify=tls_verify(tls_files.cert_pem),
    )
    sub = client.create_subscription(
        "conferences", {"consumer_url": "http://x.test/e2e", "time_to_live": 600, "passback": "e2e-all"}
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "dma:\n  - connection: e2e-dma\n    subscriptions:\n"
        "      - {name: e2e-all, subject: all_conferences, consumer_url: 'http://x.test/e2e', time_to_live: 600}\n"
    )

    t0 = time.monotonic()
    # -- the server -------------------------------------------------------------------------------------
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "STREAMKEEPER_"))}
    env |= {
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "STREAMKEEPER_HOME": str(tmp_path / "home"),
        "STREAMKEEPER_DB": str(tmp_path / "history.duckdb"),
    }
    server = processes.start(
        "server",
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env,
    )
    env["PREFECT_API_URL"] = url

    def healthy() -> bool:
        assert server.poll() is None, processes.log("server")
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, 180, "the Prefect server's /api/health")
    print(f"server healthy after {time.monotonic() - t0:.0f} s")

    # -- the work pool (deploy needs it first) ----------------------------------------------------------
    api(url, lambda c: c.create_work_pool(WorkPoolCreate(name=POOL, type="process")))
    # the worker starts while the block is saved (as a user does: `streamkeeper connect`) and the deployments
    # are made from the project's prefect.yaml, its schedules switched off, plus the test's every-minute cron
    processes.start(
        "worker",
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--limit", "4"],
        env | {"PREFECT_WORKER_QUERY_SECONDS": "2"},  # poll for due runs every 2 s instead of 10
    )
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    for deployment in config["deployments"]:
        for schedule in deployment.get("schedules") or []:
            schedule["active"] = False
    config["deployments"].append(
        {
            "name": CRON_DEPLOYMENT,
            "entrypoint": "flows/refresh.py:refresh_subscriptions",
            "work_pool": {"name": POOL},
            "parameters": {"dma_blocks": ["e2e-dma"], "refresh_within_seconds": 3600},
            "schedules": [{"cron": "* * * * *", "timezone": "UTC"}],
        }
    )
    prefect_file = tmp_path / "prefect.yaml"
    prefect_file.write_text(yaml.safe_dump(config, sort_keys=False))
    connect = processes.start(
        "connect",
        [sys.executable, "-m", "streamkeeper.cli", "connect", "dma", "--name", "e2e-dma"]
        + ["--set", f"base_url={dma.url}/api/rest", "--set", "username=provisioner"]
        + ["--set", f"ca_bundle=@{tls_files.certfile}"],
        env | {"STREAMKEEPER_DMA_PASSWORD": "provisioner-pass"},
    )
    deploy = processes.start(
        "deploy",
        [
            sys.executable,
            "-m",
            "prefect",
            "--no-prompt",
            "deploy",
            "--all",
            "--prefect-file",
            str(prefect_file),
        ],
        env,
    )
    for name, proc in (("connect", connect), ("deploy", deploy)):
        assert proc.wait(timeout=300) == 0, processes.log(name)
    print(f"deployed after {time.monotonic() - t0:.0f} s")

    deployments = {
        d.name: d
        for d in api(
            url,
            lambda c: c.read_deployments(
                deployment_filter=DeploymentFilter(
                    name=DeploymentFilterName(any_=[d["name"] for d in config["deployments"]])
                )
            ),
        )
    }
    assert set(deployments) == {d["name"] for d in config["deployments"]}
    refresh = deployments["refresh-subscriptions"]
    assert refresh.work_pool_name == POOL
    assert (
        refresh.concurrency_options is not None
        and refresh.concurrency_options.collision_strategy == "CANCEL_NEW"
    )
    assert [s.schedule.cron for s in refresh.schedules] == ["0 * * * *"]
    assert refresh.parameter_openapi_schema["properties"]["refresh_within_seconds"]["type"] == "integer"

    # -- a run triggered through the API as the UI's "Run" button does, executed by the worker -----------
    triggered = api(
        url,
        lambda c: c.create_flow_run_from_deployment(
            refresh.id, parameters={"spec_path": str(spec), "time_to_live": 0}
        ),
    )

    def finished(run_id: Any) -> Any:
        run = api(url, lambda c: c.read_flow_run(run_id))
        return run if run.state is not None and run.state.is_final() else None

    run = wait_for(lambda: finished(triggered.id), 180, "the triggered refresh-subscriptions run", every=1.0)
    assert run.state.is_completed(), f"{run.state}\n{processes.log('worker')}"
    print(f"triggered run completed after {time.monotonic() - t0:.0f} s")
    refreshed = client.get_subscription(sub.subscription_identifier)
    assert refreshed is not None and refreshed.time_to_live == 93600  # the run's time_to_live=0: 26 h
    history = HistoryStore(tmp_path / "history.duckdb")
    rows = history.query("SELECT change, flow_run_id FROM subscriptions WHERE flow_run_id = ?", [str(run.id)])
    assert rows["change"].tolist() == ["refreshed"]

    # -- the every-minute cron fires, and its run completes on the worker --------------------------------
    cron_id = deployments[CRON_DEPLOYMENT].id

    def cron_run_done() -> Any:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId

        runs = api(
            url,
            lambda c: c.read_flow_runs(
                flow_run_filter=FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[cron_id]))
            ),
        )
        return next((r for r in runs if r.state is not None and r.state.is_final()), None)

    fired = wait_for(cron_run_done, 150, "a cron-scheduled run to fire and finish", every=2.0)
    print(f"cron run finished after {time.monotonic() - t0:.0f} s")
    assert fired.auto_scheduled, "the run was not created by the scheduler"
    assert fired.state.is_completed(), f"{fired.state}\n{processes.log('worker')}"
    assert fired.expected_start_time.second == 0  # on the minute, as the cron says
    assert not history.query("SELECT 1 FROM api_calls WHERE flow_run_id = ?", [str(fired.id)]).empty
