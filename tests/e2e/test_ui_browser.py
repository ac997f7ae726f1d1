"""The Prefect UI as an operator meets it, in a real browser: headless Chromium (Debian's package, driven by
playwright) against a real Prefect server, a process worker, ``prefect deploy --all`` from prefect.yaml,
and ``streamkeeper sandbox --port P --save-blocks demo`` (the blocks prefect.yaml names).

Checked through the UI: each deployment's run form has help on every parameter and no
``Property is type "None"`` field; a dry-run plan submitted from the form publishes its table, which
fits the page at 1440 px (as the drift table does); an onboarding resumed through the paused run's form
with a wrong code is asked again with Stream's reason, then completes with the right ones; one made to
fail at a pause is retried with the UI's Retry button and completes where it stopped; a mistyped spec path
is one log line naming the deployment's working directory; the blocks show no dead "View Docs" link, a
``media_format`` choice and masked JSON secrets; and the deployments keep working after the sandbox
restarts. Every request the browser makes to anything but 127.0.0.1 is blocked. Screenshots are saved
under the directory the test prints (``.test-artifacts/ui-browser/`` in the project).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import yaml
from e2ekit import ROOT, Processes, api, free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
POOL = "streamkeeper-process"
WIDTH = 1440
SHOTS = ROOT / ".test-artifacts" / "ui-browser" / time.strftime("%Y%m%d-%H%M%S")
SECOND_ORG = (
    (ROOT / "data" / "specs" / "onboarding-example.yaml")
    .read_text()
    .replace("provider_id: luigis-trattoria", "provider_id: e2e-retried")
)


def consecutive_free_ports(count: int) -> int:
    """A first port with `count` free ones from it (the sandbox takes consecutive ports)."""
    import socket

    for _ in range(50):
        base = free_port()
        if base + count > 65535:
            continue
        try:
            socks = []
            for port in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no run of free ports")


@dataclass
class Stack:
    ui: str
    api_url: str
    env: dict[str, str]
    processes: Processes
    sandbox: Any
    sandbox_port: int
    deployments: dict[str, Any]
    tmp: Path
    browser: Any
    blocked: list[str]
    failed: list[str]

    def call(self, action: Any) -> Any:
        """A call to the server's API, in a thread of its own (playwright's sync API holds this thread's
        event loop)."""
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(api, self.api_url, action).result()

    def page(self) -> Any:
        context = self.browser.new_context(viewport={"width": WIDTH, "height": 1000})

        def only_loopback(route: Any) -> None:
            url = route.request.url
            if url.startswith(("http://127.0.0.1", "https://127.0.0.1", "data:", "blob:")):
                route.continue_()
            else:
                self.blocked.append(url)
                route.abort()

        context.route("**/*", only_loopback)
        page = context.new_page()
        page.on(
            "response",
            lambda r: (
                self.failed.append(f"{r.status} {r.request.method} {r.url}") if r.status >= 400 else None
            ),
        )
        return page

    def run(self, flow_run_id: Any) -> Any:
        return self.call(lambda c: c.read_flow_run(flow_run_id))

    def wait_state(self, flow_run_id: Any, want: str, deadline: float = 240) -> Any:
        def reached() -> Any:
            run = self.run(flow_run_id)
            state = run.state
            if state is None:
                return None
            if state.is_final() and want != state.type.value:
                raise AssertionError(f"run ended {state.type.value}: {state.message}\n{self.worker_log()}")
            return run if state.type.value == want else None

        return wait_for(reached, deadline, f"flow run {flow_run_id} to be {want}", every=1.0)

    def worker_log(self) -> str:
        return self.processes.log("worker")

    def latest_run(self, deployment: str, after: set[Any]) -> Any:
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

        dep_id = self.deployments[deployment].id

        def new_one() -> Any:
            runs = self.call(
                lambda c: c.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep_id]))
                )
            )
            fresh = [r for r in runs if r.id not in after]
            return fresh[0] if fresh else None

        return wait_for(new_one, 60, f"a new {deployment} run")

    def run_ids(self, deployment: str) -> set[Any]:
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

        dep_id = self.deployments[deployment].id
        runs = self.call(
            lambda c: c.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep_id]))
            )
        )
        return {r.id for r in runs}

    def start_sandbox(self) -> Any:
        log = f"sandbox-{len(self.processes.started)}"
        proc = self.processes.start(
            log,
            [sys.executable, "-m", "streamkeeper.cli", "sandbox", "--port", str(self.sandbox_port)]
            + ["--save-blocks", "demo"],
            self.env,
        )
        wait_for(lambda: "sandbox running" in self.processes.log(log), 180, "the sandbox to start")
        assert proc.poll() is None, self.processes.log(log)
        return proc


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from playwright.sync_api import sync_playwright
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: apt-get install -y chromium (.ci/run does)"
    tmp = tmp_path_factory.mktemp("ui")
    processes = Processes(tmp)
    print(f"\nscreenshots: {SHOTS}")
    try:
        port = free_port()
        api_url = f"http://127.0.0.1:{port}/api"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "STREAMKEEPER_"))}
        env |= {
            "PREFECT_HOME": str(tmp / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_API_URL": api_url,  # the UI calls the API here (else its default port 4200)
            "STREAMKEEPER_HOME": str(tmp / "home"),
            "STREAMKEEPER_DB": str(tmp / "history.duckdb"),
            "STREAMKEEPER_LANDING": str(tmp / "landing"),
        }
        server = processes.start(
            "server",
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env,
        )
        env["PREFECT_API_URL"] = api_url

        def healthy() -> bool:
            assert server.poll() is None, processes.log("server")
            try:
                return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 240, "the Prefect server")
        api(api_url, lambda c: c.create_work_pool(WorkPoolCreate(name=POOL, type="process")))
        stack = Stack(
            ui=f"http://127.0.0.1:{port}",
            api_url=api_url,
            env=env,
            processes=processes,
            sandbox=None,
            sandbox_port=consecutive_free_ports(6),
            deployments={},
            tmp=tmp,
            browser=None,
            blocked=[],
            failed=[],
        )
        stack.sandbox = stack.start_sandbox()
        processes.start(
            "worker",
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--limit", "4"],
            env | {"PREFECT_WORKER_QUERY_SECONDS": "2"},
        )
        config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
        for deployment in config["deployments"]:
            for schedule in deployment.get("schedules") or []:
                schedule["active"] = False  # nothing fires by itself during the test
        prefect_file = tmp / "prefect.yaml"
        prefect_file.write_text(yaml.safe_dump(config, sort_keys=False))
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
        assert deploy.wait(timeout=600) == 0, processes.log("deploy")
        names = [d["name"] for d in config["deployments"]]
        found = api(
            api_url,
            lambda c: c.read_deployments(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=names))
            ),
        )
        stack.deployments = {d.name: d for d in found}
        with sync_playwright() as playwright:
            stack.browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            yield stack
            stack.browser.close()
        # blocked: the consent page's redirect to the partner's return URL, and the UI's own logo images
        print(f"requests blocked (not to 127.0.0.1): {sorted(set(stack.blocked))}")
    finally:
        processes.stop_all()


def form_text(page: Any) -> str:
    return " ".join(page.locator("main").inner_text().split()) if page.locator("main").count() else ""


def plain(markdown: str) -> str:
    """Text as the UI shows it: no markdown backticks, one space between words, plain quotes."""
    return " ".join(
        markdown.replace("`", "").replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"').split()
    )


def test_every_deployment_form_has_help_on_every_parameter(stack: Stack) -> None:
    page = stack.page()
    for name, deployment in sorted(stack.deployments.items()):
        page.goto(f"{stack.ui}/deployments/deployment/{deployment.id}/run")
        page.get_by_text("Parameters", exact=True).first.wait_for()
        page.wait_for_load_state("networkidle")
        text = plain(page.inner_text("body"))
        shot(page, f"form-{name}")
        properties = deployment.parameter_openapi_schema["properties"]
        assert properties
        for parameter, prop in properties.items():
            help_text = plain(prop.get("description") or "")
            assert help_text, f"{name}.{parameter} has no help"
            assert help_text[:60] in text, f"{name}.{parameter}: help not shown"
        assert 'Property is type "None"' not in text, name
        assert "None is not of type" not in text, name


def test_a_dry_run_plan_from_the_form_publishes_a_table_that_fits(stack: Stack) -> None:
    page = stack.page()
    run = submit_form(stack, page, "provision-subscriptions")
    stack.wait_state(run.id, "COMPLETED")
    assert run.parameters["dry_run"] is True
    artifact = artifact_of(stack, run.id, "provision-plan")
    page.goto(f"{stack.ui}/artifacts/artifact/{artifact.id}")
    page.locator("table").first.wait_for()
    shot(page, "plan-artifact")
    rows = page.locator("table tbody tr")
    assert rows.count() == len(artifact.data)
    cells = [c.inner_text() for c in rows.first.locator("td").all()]
    assert cells[0] == "create" and cells[1] == "plt/demo-plt"
    assert fits(page), "the plan table is wider than the page at 1440 px"
    # the table's rows are the plan of the whole spec: 13 subscriptions and targets to create
    assert "13 to create" in (artifact.description or "")


def submit_form(stack: Stack, page: Any, deployment: str) -> Any:
    """Open the deployment's custom-run form, submit it as it is (the deployment's defaults); the new run."""
    before = stack.run_ids(deployment)
    page.goto(f"{stack.ui}/deployments/deployment/{stack.deployments[deployment].id}/run")
    page.get_by_text("Parameters", exact=True).first.wait_for()
    page.wait_for_load_state("networkidle")
    click_until_accepted(page, page.get_by_role("button", name="Submit"), "/create_flow_run")
    try:
        page.wait_for_url(re.compile(r".*/deployments/deployment/[^/]+(\?.*)?$"), timeout=60_000)
    except Exception:
        shot(page, f"submit-failed-{deployment}")
        raise AssertionError(
            f"the {deployment} form did not submit: {stack.failed[-5:]}\n{stack.processes.log('server')}"
        ) from None
    return stack.latest_run(deployment, before)


def artifact_of(stack: Stack, flow_run_id: UUID, key: str) -> Any:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    def found() -> Any:
        artifacts = stack.call(
            lambda c: c.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), key=ArtifactFilterKey(any_=[key])
                )
            )
        )
        return sorted(artifacts, key=lambda a: a.created)[-1] if artifacts else None

    artifact = wait_for(found, 30, f"the {key} artifact")
    if isinstance(artifact.data, str) and artifact.type == "table":
        artifact.data = json.loads(artifact.data)
    return artifact


def fits(page: Any) -> bool:
    """The artifact's table is no wider than the box the UI gives it (no column pushed out of sight)."""
    widths = page.evaluate(
        "() => { const t = document.querySelector('table'); return [t.scrollWidth, t.parentElement.clientWidth]; }"
    )
    return bool(widths[0] <= widths[1])


def merchant_code(stack: Stack, entry_url: str) -> str:
    """The merchant approves on Stream's consent page (in the browser): the code rides the redirect back."""
    page = stack.page()
    page.goto(entry_url)
    with page.expect_response(lambda r: "/approve" in r.url) as approved:
        page.get_by_role("link", name="Approve").click()
    location = approved.value.headers["location"]
    page.context.close()
    match = re.search(r"[?&]code=([^&]+)", location)
    assert match, location
    return match.group(1)


def paused_form(stack: Stack, page: Any, flow_run_id: Any, pause_key: str | None = None) -> tuple[str, Any]:
    """Wait for the run to pause (a new pause when `pause_key` is the last one), open its Resume form."""

    def paused() -> Any:
        run = stack.run(flow_run_id)
        state = run.state
        assert state is not None and not state.is_final(), f"{state}\n{stack.worker_log()}"
        if state.is_paused() and state.state_details.pause_key != pause_key:
            return run
        return None

    run = wait_for(paused, 240, "the run to pause for a code", every=1.0)
    page.goto(f"{stack.ui}/runs/flow-run/{flow_run_id}")
    page.get_by_role("button", name="Resume").click()
    modal = page.locator(".p-modal").first
    modal.get_by_role("heading", name=re.compile("^OAuth code for")).wait_for()
    return run.state.state_details.pause_key, modal


SUBMIT_TRIES = 4
"""The server on SQLite, on a loaded 2-core machine, sometimes answers 503 (its database busy): the UI
shows an error and the operator submits again, as the test does."""


def click_until_accepted(page: Any, button: Any, answers: str) -> Any:
    """Click `button` until the request it makes (URL ending in `answers`) is not refused with a 503."""
    for _ in range(SUBMIT_TRIES):
        with page.expect_response(lambda r: r.url.endswith(answers), timeout=90_000) as response:
            button.click()
        if response.value.status != 503:
            return response.value
        page.wait_for_timeout(2000)
    return response.value


def answer(stack: Stack, page: Any, modal: Any, code: str) -> None:
    """Type the code into the Resume form and submit it (the run resumes)."""
    modal.locator("textarea, input").last.fill(code)
    resumed = click_until_accepted(page, modal.get_by_role("button", name="Submit"), "/resume")
    try:
        modal.wait_for(state="hidden", timeout=90_000)
    except Exception:
        shot(page, "resume-failed")
        raise AssertionError(
            f"the Resume form stayed open: {plain(modal.inner_text())}; resume answered "
            f"{resumed.status} {resumed.text()[:500]}; failed requests: {stack.failed[-5:]}"
        ) from None


def entry_url(text: str) -> str:
    match = re.search(r"(http://127\.0\.0\.1:\d+/_sandbox/stream/oauth/[0-9a-f]+)", text)
    assert match, text
    return match.group(1)


def test_an_onboarding_resumed_with_a_wrong_then_a_right_code_completes(stack: Stack) -> None:
    page = stack.page()
    run = submit_form(stack, page, "onboard-organization")

    key, modal = paused_form(stack, page, run.id)
    text = modal.inner_text()
    assert "OAuth code for square (pos)" in text and "Stream rejected" not in text
    shot(page, "onboarding-form-first")
    answer(stack, page, modal, "a-mistyped-code")

    key, modal = paused_form(stack, page, run.id, key)
    text = " ".join(modal.inner_text().split())
    shot(page, "onboarding-form-asked-again")
    assert "Stream rejected the last code: invalid_code:" in text, text
    assert "Code 2 of 3" in text
    codes = [merchant_code(stack, entry_url(text))]
    answer(stack, page, modal, codes[-1])

    for source in ("doordash", "ubereats"):
        key, modal = paused_form(stack, page, run.id, key)
        text = modal.inner_text()
        assert f"OAuth code for {source} (dsp)" in text
        codes.append(merchant_code(stack, entry_url(text)))
        answer(stack, page, modal, codes[-1])
    done = stack.wait_state(run.id, "COMPLETED")
    kept = json.dumps(done.parameters) + json.dumps(
        [i.value for i in stack.call(lambda c: c.filter_flow_run_input(run.id, "", 100, set()))]
    )
    assert not [c for c in codes if c in kept]  # no code in the run's parameters or its inputs

    report = artifact_of(stack, run.id, "onboarding-luigis-trattoria")
    page.goto(f"{stack.ui}/artifacts/artifact/{report.id}")
    page.get_by_text("Onboarding luigis-trattoria").first.wait_for()
    shot(page, "onboarding-report")
    body = page.inner_text("body")
    assert "waiting" not in body and "Failed:" not in body


def test_an_onboarding_failed_at_a_pause_is_retried_from_the_ui_and_completes(stack: Stack) -> None:
    deployment = stack.deployments["onboard-organization"]
    run = stack.call(
        lambda c: c.create_flow_run_from_deployment(
            deployment.id,
            parameters={"spec_path": "", "spec_yaml": SECOND_ORG, "code_timeout_seconds": 45},
        )
    )
    page = stack.page()
    key, modal = paused_form(stack, page, run.id)  # the POS: answered
    answer(stack, page, modal, merchant_code(stack, entry_url(modal.inner_text())))
    key, modal = paused_form(stack, page, run.id, key)  # doordash: nobody answers, on purpose
    assert "OAuth code for doordash (dsp)" in modal.inner_text()
    page.reload()
    stack.wait_state(run.id, "FAILED", deadline=180)

    page.goto(f"{stack.ui}/runs/flow-run/{run.id}")
    page.get_by_role("button", name="Retry").first.click()
    retried = click_until_accepted(
        page, page.locator(".p-modal").get_by_role("button", name="Retry"), "/set_state"
    )
    assert retried.status == 201, retried.text()
    shot(page, "onboarding-retried")
    for source in ("doordash", "ubereats"):  # where it stopped: the POS is not asked again
        key, modal = paused_form(stack, page, run.id, key)
        text = modal.inner_text()
        assert f"OAuth code for {source} (dsp)" in text
        answer(stack, page, modal, merchant_code(stack, entry_url(text)))
    stack.wait_state(run.id, "COMPLETED")
    states = stack.call(lambda c: c.read_flow_run_states(run.id))
    assert [s.message for s in states if s.name == "AwaitingRetry"] == ["Retry from the UI"]
    assert "409 Conflict" not in stack.worker_log()


def test_a_mistyped_spec_path_is_one_log_line_naming_the_working_directory(stack: Stack) -> None:
    deployment = stack.deployments["provision-subscriptions"]
    run = stack.call(
        lambda c: c.create_flow_run_from_deployment(
            deployment.id, parameters={"spec_path": "data/specs/exmaple.yaml"}
        )
    )
    stack.wait_state(run.id, "FAILED")
    page = stack.page()
    page.goto(f"{stack.ui}/runs/flow-run/{run.id}")
    expected = (
        "ConfigError: spec file not found: data/specs/exmaple.yaml (relative paths are taken from the "
        f"deployment's working directory, {ROOT})"
    )
    page.get_by_text(expected).first.wait_for(timeout=60_000)
    shot(page, "mistake-logs")
    body = page.inner_text("body")
    assert "Traceback" not in body and "Engine execution exited" not in body
    assert body.count("ERROR") == 1, body


def test_the_drift_table_fits_at_1440_px(stack: Stack) -> None:
    run = stack.call(
        lambda c: c.create_flow_run_from_deployment(
            stack.deployments["audit-subscriptions"].id, parameters={}
        )
    )
    stack.wait_state(run.id, "COMPLETED")
    artifact = artifact_of(stack, run.id, "drift")
    page = stack.page()
    page.goto(f"{stack.ui}/artifacts/artifact/{artifact.id}")
    page.locator("table").first.wait_for()
    shot(page, "drift-artifact")
    assert len(artifact.data) == 13  # nothing applied yet: every spec entry is missing
    assert fits(page), "the drift table is wider than the page at 1440 px"


def test_the_blocks_show_no_dead_docs_link_a_format_choice_and_masked_secrets(stack: Stack) -> None:
    documents = {d.name: d for d in stack.call(lambda c: c.read_block_documents())}
    page = stack.page()
    page.goto(f"{stack.ui}/blocks/block/{documents['demo-dma'].id}")
    page.get_by_text("Polycom DMA Credentials").first.wait_for()
    shot(page, "block-dma")
    assert page.get_by_text("View Docs").count() == 0
    page.goto(f"{stack.ui}/blocks/block/{documents['demo-dma'].id}/edit")
    media_format = page.locator(".schema-form-property", has_text="Media Format")
    media_format.locator(".p-select").wait_for()  # a choice of json or xml, not free text
    shot(page, "block-dma-edit")
    assert media_format.locator("textarea, input[type=text]").count() == 0
    page.goto(f"{stack.ui}/blocks/block/{documents['demo-dma-notify'].id}")
    page.get_by_text("Value").first.wait_for()
    shot(page, "block-secret")
    text = page.inner_text("body")
    assert "********" in text and "demo-dma-notify-password" not in text
    assert not re.search(r"Value\s+None", text)


def test_the_deployments_keep_working_after_the_sandbox_restarts(stack: Stack) -> None:
    ca = (stack.tmp / "home" / "sandbox" / "tls" / "dma-sandbox.crt").read_text()
    stack.processes.stop(stack.sandbox, signal.SIGTERM)  # a stop however it comes (SIGINT may be ignored)
    stack.sandbox = stack.start_sandbox()  # same port, same CA, blocks saved again with the same values
    assert (stack.tmp / "home" / "sandbox" / "tls" / "dma-sandbox.crt").read_text() == ca
    run = stack.call(
        lambda c: c.create_flow_run_from_deployment(
            stack.deployments["provision-subscriptions"].id, parameters={}
        )
    )
    stack.wait_state(run.id, "COMPLETED")  # plan errors (an unreachable vendor, a TLS failure) would fail it
