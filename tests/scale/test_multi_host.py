"""Many machines on real engines, on this one machine: hosts made of network namespaces.

- host ``core``: PostgreSQL (the Prefect server's database and DuckLake's catalog), moto's S3 server (the
  lake's Parquet files), and ``prefect server start`` on that PostgreSQL;
- hosts ``w1`` and ``w2``: ``prefect worker start``, each on a work queue of its own (so a run goes to the
  host the test chooses), running the project's deployments from ``prefect.yaml``;
- host ``rx``: the push receiver, writing each delivery to the landing area on S3 before it answers 2xx
  (over HTTP for the DMA, ThingSpace and Stream; over HTTPS with mutual TLS for Equinix's webhooks);
- the test process: the vendors' emulators (reached by every host over the bridge) and the checks.

Onboarding, provisioning and a refresh run on the workers; the vendors send events (PubNub, Equinix's pull
feed and webhooks, DMA / ThingSpace / Stream pushes to the receiver); the workers find the receiver through
``STREAMKEEPER_RECEIVER_URL`` and ``STREAMKEEPER_RECEIVER_TLS_URL`` in the example spec; an ingest run on ``w1`` is stopped right after its
landing commit and before it deletes the objects it loaded, an ingest run on ``w2`` starts beside it, and ``w1`` is
killed (the worker and its flow run, SIGKILL). A second batch of events follows and ``w2`` ingests again.
Then every event the vendors sent is in ``events`` exactly once, every DMA subscription was refreshed, and
the reports give the same answer on every host.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from lakekit import S3Server, free_port, lake_env, start_postgres, start_s3, wait_for
from netkit import Cluster, Processes
from pydantic import SecretStr

from flows.demo import PREFIX, Credentials, _receiver_config
from streamkeeper.landing_storage import S3Storage
from streamkeeper.sandbox.runner import Sandbox
from streamkeeper.sandbox.tls import self_signed
from streamkeeper.spec import load_spec_text
from streamkeeper.store import HistoryStore, StoreSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))
from faultkit import events_by_vendor  # noqa: E402  (the count the crash tests check, per vendor)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[2]
POOL = "streamkeeper-process"


def api(url: str, action: Callable[[Any], Any]) -> Any:
    """One call against the cluster's Prefect server."""
    from prefect.client.orchestration import PrefectClient

    async def call() -> Any:
        async with PrefectClient(api=url) as client:
            return await action(client)

    return asyncio.run(call())


def receiver_yaml(config: Any) -> tuple[str, dict[str, str]]:
    """The receiver's config as YAML with ``${VAR}`` for every secret, and the variables' values."""
    env: dict[str, str] = {}
    out: dict[str, Any] = {}
    for section in ("dma", "thingspace", "stream", "equinix"):
        routes = getattr(config, section)
        out[section] = {}
        for name, route in routes.items():
            fields: dict[str, Any] = {}
            for key, value in route:
                if isinstance(value, SecretStr):
                    var = f"RX_{section}_{name}_{key}".upper().replace("-", "_")
                    env[var] = value.get_secret_value()
                    fields[key] = f"${{{var}}}"
                elif value is not None:
                    fields[key] = value
            out[section][name] = fields
    return yaml.safe_dump(out), env


def send_events(sandbox: Sandbox, credentials: Credentials, receiver: str) -> dict[str, Counter[str]]:
    """Every vendor sends a batch; what must land once, per vendor (ids, or counts per Equinix stream)."""
    apps: Any = sandbox.apps
    sent: dict[str, Counter[str]] = {v: Counter() for v in ("plt", "dma", "thingspace", "stream", "equinix")}
    for partner in list(apps["plt"].partners.values()):
        for stream in [s for s in partner.streams.values() if s.started]:
            sent["plt"].update(str(t) for t in apps["plt"].emit(stream.stream_id, stream.tenant_id, 30))
    for subscription in ("1", "2"):
        deliveries = apps["dma"].emit(subscription)
        assert all(d.status == 200 for d in deliveries), [d.status for d in deliveries]
        sent["dma"].update(d.subscription_id for d in deliveries)
    deliveries = apps["thingspace"].emit(credentials.thingspace_account, 5)
    assert deliveries and all(d.ok for d in deliveries), [d.error for d in deliveries]
    sent["thingspace"].update(i for d in deliveries for i in d.event_ids)
    for n in range(3):
        event = apps["stream"].webhook_event("order.created", {"order_id": f"mh-{time.monotonic_ns()}-{n}"})
        status = apps["stream"].send_webhook(f"{receiver}/stream/{PREFIX}", credentials.webhook_secret, event)
        assert status == 200, status
        sent["stream"][event["id"]] += 1
    pushed = len(apps["equinix"].deliveries)
    for subscription_id in list(apps["equinix"].streaming):  # to the pull feed, and by webhook on return
        sent["equinix"][subscription_id] += len(apps["equinix"].emit(subscription_id, 10))
    webhooks = [d for d in apps["equinix"].deliveries[pushed:] if d.channel == "WEBHOOK"]
    assert webhooks and all(d.ok for d in webhooks), [d.error for d in webhooks]
    return sent


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    hosts = Cluster(["core", "w1", "w2", "rx"]).up()
    try:
        yield hosts
    finally:
        hosts.down()


def test_workers_on_several_hosts_store_every_event_once(cluster: Cluster, tmp_path: Path) -> None:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL, temporary_settings

    t0 = time.monotonic()
    timings: dict[str, float] = {}
    core = cluster.address("core")
    procs = Processes(cluster, tmp_path, ROOT)
    pg = start_postgres(host=core, netns=cluster.netns("core"))
    s3: S3Server | None = None
    sandbox: Sandbox | None = None
    try:
        # -- host core: PostgreSQL, S3, the Prefect server on PostgreSQL -----------------------------------
        pg.create_database("prefect")
        pg.create_database("history")
        s3 = start_s3(host=core, netns=cluster.netns("core"), log=tmp_path / "moto.log")
        s3.create_bucket("history")
        prefect_port = free_port()
        url = f"http://{core}:{prefect_port}/api"
        clean = {
            k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "STREAMKEEPER_", "AWS_"))
        }
        base = clean | {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        procs.start(
            "server",
            "core",
            [sys.executable, "-m", "prefect", "server", "start", "--host", core, "--port", str(prefect_port)],
            base
            | {
                "PREFECT_HOME": str(tmp_path / "prefect-server"),
                "PREFECT_API_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://postgres@{core}:{pg.port}/prefect",
            },
        )

        def healthy() -> bool:
            assert procs.started["server"].poll() is None, procs.log("server")
            try:
                return httpx.get(f"{url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 240, "the Prefect server on PostgreSQL", every=0.5)
        timings["server healthy"] = time.monotonic() - t0
        landing = "s3://history/landing/"  # the receiver PUTs, the workers claim and load
        storage = S3Storage(landing, client=s3.client())
        store_env = lake_env(pg, "history", s3, "history")
        host_env = base | store_env | {"PREFECT_API_URL": url, "STREAMKEEPER_LANDING": landing}

        # -- the vendors (in this process, on the bridge), the blocks, the receiver on host rx ---------------
        sandbox = Sandbox.start(
            host=cluster.root_address, state_dir=tmp_path / "sandbox", stream={"auto_authorize": True}
        )
        credentials = Credentials()
        credentials.register(sandbox)
        rx = cluster.address("rx")
        rx_port, rx_tls_port = free_port(), free_port()
        receiver, receiver_tls = f"http://{rx}:{rx_port}", f"https://{rx}:{rx_tls_port}"
        # the example spec as a deployment uses it: the workers' environment says where the receiver is
        host_env |= {"STREAMKEEPER_RECEIVER_URL": receiver, "STREAMKEEPER_RECEIVER_TLS_URL": receiver_tls}
        spec = ROOT / "data/specs/example.yaml"
        equinix: Any = sandbox.apps["equinix"]
        rx_certificate = self_signed(tmp_path / "rx-tls", common_name="receiver", addresses=(rx,))
        equinix.webhook_verify = rx_certificate.cert_pem  # Equinix checks the receiver's certificate
        api(url, lambda c: c.create_work_pool(WorkPoolCreate(name=POOL, type="process")))
        for queue in ("w1", "w2"):
            api(url, lambda c, q=queue: c.create_work_queue(name=q, work_pool_name=POOL))
        with temporary_settings({PREFECT_API_URL: url}):
            credentials.save_blocks(sandbox)
            config_text, rx_secrets = receiver_yaml(
                _receiver_config(
                    load_spec_text(spec.read_text()),
                    credentials.webhook_secret,
                    PREFIX,
                    equinix.webhook_certificate,
                )
            )
        (tmp_path / "receiver.yaml").write_text(config_text)
        receive = [
            sys.executable,
            "-m",
            "streamkeeper.cli",
            "receive",
            "--config",
            str(tmp_path / "receiver.yaml"),
        ]
        procs.start(  # each receiver keeps its own state (its own home), both write to the one S3 prefix
            "receiver",
            "rx",
            receive + ["--host", rx, "--port", str(rx_port), "--landing", landing],
            host_env | rx_secrets | {"STREAMKEEPER_HOME": str(tmp_path / "rx-home")},
        )
        procs.start(
            "receiver-tls",
            "rx",
            receive
            + ["--host", rx, "--port", str(rx_tls_port), "--landing", landing]
            + ["--certfile", str(rx_certificate.certfile), "--keyfile", str(rx_certificate.keyfile)]
            + ["--client-ca", str(equinix.webhook_certificate.certfile)],
            host_env | rx_secrets | {"STREAMKEEPER_HOME": str(tmp_path / "rx-tls-home")},
        )
        as_equinix = ssl.create_default_context(cadata=rx_certificate.cert_pem)
        as_equinix.load_cert_chain(equinix.webhook_certificate.certfile, equinix.webhook_certificate.keyfile)

        # -- the deployments (prefect.yaml, schedules off, ingest without its one-at-a-time limit) ----------
        config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
        for deployment in config["deployments"]:
            for schedule in deployment.get("schedules") or []:
                schedule["active"] = False
            if deployment["name"] == "ingest-events":
                deployment.pop("concurrency_limit", None)  # two runs at once, on two hosts
        (tmp_path / "prefect.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        deploy = procs.start(
            "deploy",
            "core",
            [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"]
            + ["--prefect-file", str(tmp_path / "prefect.yaml")],
            host_env,
        )
        fifo = tmp_path / "pause-w1"
        os.mkfifo(fifo)
        for worker in ("w1", "w2"):
            pause = {
                "STREAMKEEPER_INGEST_PAUSE_AFTER_COMMIT": str(fifo),
                "STREAMKEEPER_INGEST_PAUSE_SOURCE": "landing",
            }
            procs.start(
                worker,
                worker,
                [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--work-queue", worker]
                + ["--name", f"worker-{worker}", "--limit", "4"],
                host_env | {"PREFECT_WORKER_QUERY_SECONDS": "2"} | (pause if worker == "w1" else {}),
            )

        def receiving() -> bool:
            for name in ("receiver", "receiver-tls"):
                assert procs.started[name].poll() is None, procs.log(name)
            try:
                plain = httpx.get(receiver + "/healthz", timeout=2)
                secure = httpx.get(receiver_tls + "/healthz", timeout=2, verify=as_equinix)
            except httpx.HTTPError:
                return False
            return plain.status_code == secure.status_code == 200

        wait_for(receiving, 120, "the receiver's two listeners on host rx", every=0.5)
        assert deploy.wait(timeout=400) == 0, procs.log("deploy")
        timings["deployed"] = time.monotonic() - t0
        deployments = {d.name: d for d in api(url, lambda c: c.read_deployments())}

        def run(name: str, queue: str, parameters: dict[str, Any]) -> Any:
            return api(
                url,
                lambda c: c.create_flow_run_from_deployment(
                    deployments[name].id, parameters=parameters, work_queue_name=queue
                ),
            )

        def finished(flow_run: Any, what: str, deadline: float = 400) -> Any:
            def final() -> Any:
                state = api(url, lambda c: c.read_flow_run(flow_run.id))
                return state if state.state is not None and state.state.is_final() else None

            done = wait_for(final, deadline, what, every=1.0)
            assert done.state.is_completed(), f"{what}: {done.state}\n{procs.log('w1')}\n{procs.log('w2')}"
            return done

        # -- onboarding and provisioning on w1, a refresh on w2 ---------------------------------------------
        finished(run("onboard-organization", "w1", {"block_name": f"{PREFIX}-stream"}), "onboarding on w1")
        finished(
            run("provision-subscriptions", "w1", {"spec_path": str(spec), "dry_run": False}), "apply on w1"
        )
        refreshed_run = finished(
            run("refresh-subscriptions", "w2", {"spec_path": str(spec), "refresh_within_seconds": 93600}),
            "refresh on w2",
        )
        timings["provisioned and refreshed"] = time.monotonic() - t0

        # -- events; ingest on w1 (stopped after its landing commit), on w2 beside it, then w1 is killed ----
        sent = send_events(sandbox, credentials, receiver)
        wait_for(lambda: list(storage.pending()), 30, "the receiver's landing objects")
        ingest = {
            "plt_blocks": [f"{PREFIX}-plt"],
            "equinix_blocks": [f"{PREFIX}-equinix"],
            "landing_dir": landing,
            "pubnub_idle_seconds": 1.0,
            "pubnub_max_seconds": 20.0,
        }
        first = run("ingest-events", "w1", ingest)
        marker = Path(str(fifo) + ".committed")
        wait_for(marker.exists, 400, "w1's ingest run to commit its landing batch", every=0.5)
        assert list(storage.pending()), "w1 paused after its commit, before deleting the objects"
        beside = run("ingest-events", "w2", ingest)
        wait_for(
            lambda: api(url, lambda c: c.read_flow_run(beside.id)).state.is_running(), 120, "w2's ingest run"
        )
        killed = procs.kill_tree("w1")
        timings["w1 killed mid-ingest"] = time.monotonic() - t0
        assert len(killed) >= 2, "the worker and its flow run"
        done = finished(beside, "ingest on w2 beside the killed one")
        assert (
            done.work_queue_name == "w2"
            and api(url, lambda c: c.read_flow_run(first.id)).work_queue_name == "w1"
        )
        more = send_events(sandbox, credentials, receiver)
        finished(run("ingest-events", "w2", ingest), "ingest on w2 after the crash")
        timings["ingested"] = time.monotonic() - t0

        # -- every event once, every DMA subscription refreshed ----------------------------------------------
        store = HistoryStore(StoreSettings.from_env(env=store_env))
        expected = {v: sent[v] + more[v] for v in sent}
        stored = events_by_vendor(store)
        for vendor, want in expected.items():
            got = stored[vendor]
            assert not (want - got) and not (got - want), (
                f"{vendor}: lost {dict(want - got)}, extra {dict(got - want)}"
            )
        duplicates = store.query(
            "SELECT count(*) - count(DISTINCT (vendor, stream, event_id)) AS n FROM events"
        )["n"].iloc[0]
        assert duplicates == 0
        assert not list(storage.pending()), "objects left in the landing area"
        dma: Any = sandbox.apps["dma"]
        dma_ids = {str(s.id) for s in list(dma.subscriptions.values())}
        refreshed = store.query(
            "SELECT DISTINCT subscription_id FROM subscriptions WHERE vendor = 'dma' AND change = 'refreshed' "
            "AND flow_run_id = ?",
            [str(refreshed_run.id)],
        )["subscription_id"]
        assert dma_ids and set(refreshed) == dma_ids

        # -- the reports answer from every host, the same --------------------------------------------------
        answers = {
            host: procs.run(
                host,
                [
                    sys.executable,
                    "-m",
                    "streamkeeper.cli",
                    "report",
                    "current_subscriptions",
                    "--format",
                    "csv",
                ],
                host_env,
            )
            for host in ("core", "w1", "w2", "rx")
        }
        assert len(set(answers.values())) == 1, answers
        assert len(answers["w2"].strip().splitlines()) > 10
        timings["reports from every host"] = time.monotonic() - t0
        total = sum(sum(c.values()) for c in expected.values())
        print(
            f"multi-host: {total} events stored once; timings (s since start): "
            + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
        )
    finally:
        procs.stop_all()
        if sandbox is not None:
            sandbox.stop()
        if s3 is not None:
            s3.stop()
        pg.stop()
