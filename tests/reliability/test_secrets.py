"""No secret leaks: sentinel credentials everywhere, the demo's flows under a light fault mix, then a scan.

Every credential the demo hands out is a distinctive sentinel: the DMA password, the PLT partner id (the
vendor puts it in its PubNub channel names; the ingest layer must never store those), the Stream client
secret, the ThingSpace application secret and password, the Equinix client secret, the two Secret blocks the
spec names (what the DMA and ThingSpace send to the receiver) and the receiver's Stream webhook secret. The
emulators learn them (their ready-made credentials for the same users are replaced), and whatever they issue
in return is a secret too: Stream access, refresh and SSO tokens and the partner token, ThingSpace bearers
and sessions, Equinix tokens. So are the Basic ``user:password`` headers built from the sentinels.

The demo's steps run with faults injected on a share of every emulator's requests (429, 5xx, dropped
connections, lost answers, revoked tokens); what fails runs again without faults. Then none of those values
may appear in:

- any table of the DuckDB history store (every column cast to text), nor in the file's bytes;
- the Prefect logs, artifacts, flow run parameters and flow and task run state messages, read back through
  Prefect's API;
- what the test process wrote to stdout and stderr;
- the text of any exception a flow raised (with its chain);
- any file of the landing area, the receiver's state directory included;
- the task results Prefect persisted meanwhile (its local result storage).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from faultkit import attempt, clear_faults, set_faults, stage
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterStartTime,
    LogFilter,
    LogFilterTimestamp,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH
from prefect.types import DateTime
from pydantic import SecretStr

from flows import demo
from flows.demo import Credentials, Stage
from streamkeeper.store import HistoryStore
from tasks.onboard import SecretBlockVault, slug

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

TAG = secrets.token_hex(4)
PREFIX = "secrets"
FAULTS: dict[str, Any] = {
    "rate": 0.1,
    "kinds": ["429", "5xx", "drop", "drop_after", "token_expiry"],
    "retry_after": "0",
}


def sentinel(what: str) -> str:
    """A value that cannot occur by chance (letters and digits only: no encoding changes it)."""
    return f"SNTL{what}{TAG}"


SENTINELS = {
    "DMA password": sentinel("dmapassword"),
    "PLT partner id": sentinel("pltpartner"),
    "Stream client secret": sentinel("streamclientsecret"),
    "ThingSpace app secret": sentinel("tsappsecret"),
    "ThingSpace password": sentinel("tspassword"),
    "Equinix client secret": sentinel("equinixsecret"),
    "DMA notification password (Secret block)": sentinel("dmanotify"),
    "ThingSpace receiver password (Secret block)": sentinel("tsreceiver"),
    "Stream webhook secret (receiver)": sentinel("webhook"),
}


def credentials() -> Credentials:
    s = SENTINELS
    return Credentials(
        dma_password=SecretStr(s["DMA password"]),
        plt_partner_id=SecretStr(s["PLT partner id"]),
        stream_client_secret=SecretStr(s["Stream client secret"]),
        thingspace_app_secret=SecretStr(s["ThingSpace app secret"]),
        thingspace_password=SecretStr(s["ThingSpace password"]),
        equinix_client_secret=SecretStr(s["Equinix client secret"]),
        dma_notify_password=SecretStr(s["DMA notification password (Secret block)"]),
        thingspace_receiver_password=SecretStr(s["ThingSpace receiver password (Secret block)"]),
        webhook_secret=SecretStr(s["Stream webhook secret (receiver)"]),
    )


def basic(user: str, password: SecretStr) -> str:
    return base64.b64encode(f"{user}:{password.get_secret_value()}".encode()).decode()


def basic_headers(opened: Stage) -> dict[str, str]:
    """The Basic credentials built from the sentinels, as they travel (base64 of ``user:password``)."""
    c = opened.credentials
    receiver = opened.receiver.config
    out = {
        "DMA Basic header": basic(c.dma_username, c.dma_password),
        "ThingSpace app Basic header": basic(c.thingspace_app_key, c.thingspace_app_secret),
    }
    for name, consumer in receiver.dma.items():
        out[f"receiver DMA {name} Basic header"] = basic(consumer.username, consumer.password)
    for name, target in receiver.thingspace.items():
        assert target.username and target.password
        out[f"receiver ThingSpace {name} Basic header"] = basic(target.username, target.password)
    return out


def issued(opened: Stage) -> dict[str, str]:
    """The tokens the emulators issued and still hold (revoked ones are gone: collect after every step)."""
    apps: Any = opened.sandbox.apps
    stream, thingspace, equinix = apps["stream"], apps["thingspace"], apps["equinix"]
    found: dict[str, str] = {}
    for kind, values in (
        ("Stream access token", stream.access_tokens),
        ("Stream refresh token", stream.refresh_tokens),
        ("Stream SSO login token", stream.sso_tokens),
        ("ThingSpace bearer", thingspace.bearers),
        ("ThingSpace session", thingspace.sessions),
        ("Equinix token", equinix.tokens),
    ):
        found.update({value: kind for value in list(values)})
    return found


# -- where to look -----------------------------------------------------------------------------------------
def duckdb_texts(db: Path) -> Iterator[tuple[str, str]]:
    """Every value of every table, as text, then the file's own bytes."""
    store = HistoryStore(db)
    tables = store.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
        "AND table_type = 'BASE TABLE' ORDER BY 1"
    )["table_name"].tolist()
    assert {"events", "subscriptions", "api_calls", "token_events", "onboarding_steps"} <= set(tables)
    for table in tables:
        frame = store.query(f'SELECT CAST(COLUMNS(*) AS VARCHAR) FROM "{table}"')
        for column in frame.columns:
            for n, value in enumerate(frame[column].tolist()):
                if isinstance(value, str):  # NULL comes back as None or NaN
                    yield f"duckdb {table}.{column} row {n}", value
    for path in sorted(db.parent.glob(db.name + "*")):
        yield f"file {path.name}", path.read_bytes().decode("latin-1")


def file_texts(root: Path, since: float = 0.0) -> Iterator[tuple[str, str]]:
    """Every file under `root` (hidden ones too) changed since `since` (epoch seconds), as text."""
    files = [p for p in sorted(root.rglob("*")) if p.is_file() and p.stat().st_mtime >= since]
    for path in files:
        yield f"file {path.relative_to(root.parent)}", path.read_bytes().decode("latin-1")


async def prefect_texts(since: DateTime) -> list[tuple[str, str]]:
    """Logs, artifacts, flow run parameters and states, task run states: all through Prefect's API."""
    out: list[tuple[str, str]] = []
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since))
        )
        # the demo's flow runs: onboard, plan, apply, plan again, refresh, ingest, two audits (and any rerun)
        assert len(runs) >= 8, [r.name for r in runs]
        ids = [r.id for r in runs]
        for run in runs:
            out.append((f"flow run {run.name} parameters", repr(run.parameters)))
            out.append(
                (f"flow run {run.name} state", f"{run.state_name}: {run.state.message if run.state else ''}")
            )
        tasks = await client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=ids))
        )
        out += [(f"task run {t.name} state", t.state.message or "") for t in tasks if t.state]
        logs: list[Any] = []
        while batch := await client.read_logs(
            log_filter=LogFilter(timestamp=LogFilterTimestamp(after_=since)), offset=len(logs), limit=200
        ):
            logs += batch
        assert logs, "no logs reached the API"
        out += [(f"log of {log.name} at {log.timestamp}", log.message) for log in logs]
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids))
        )
        assert artifacts, "no artifacts"
        out += [(f"artifact {a.key}", f"{a.description} {a.data!r}") for a in artifacts]
    return out


def leaks(secrets_: dict[str, str], places: Iterable[tuple[str, str]]) -> list[str]:
    found = []
    for where, text in places:
        for value, what in secrets_.items():
            if value in text:
                at = text.index(value)
                found.append(f"{what} in {where}: ...{text[max(0, at - 80) : at + len(value) + 40]!r}...")
    return found


def test_no_secret_reaches_the_store_prefect_the_console_exceptions_or_the_landing_area(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    since = DateTime.now("UTC")
    raised: list[BaseException] = []
    with stage(tmp_path, PREFIX, credentials()) as opened:
        secrets_ = {value: what for what, value in SENTINELS.items()}
        secrets_ |= {value: what for what, value in basic_headers(opened).items()}
        set_faults(opened.sandbox, seed=7, **FAULTS)
        failed = []
        for name, step in demo.steps(opened, print):
            outcome = attempt(name, step)
            secrets_ |= issued(opened)
            if outcome.exception is not None:
                raised.append(outcome.exception)
                failed.append((name, step))
        injected = clear_faults(opened.sandbox)
        assert sum(injected.values()) > 0, "no fault was injected"
        for name, step in failed:  # without faults, what failed completes
            rerun = attempt(name, step)
            assert rerun.exception is None, f"{name} failed again without faults: {rerun.error}"
            secrets_ |= issued(opened)
        vault = SecretBlockVault(f"{slug(opened.block('stream'))}-{slug('luigis-trattoria')}-partner-token")
        if vault.holds():  # unless its answer was lost (then the onboarding said it needs a human)
            token: Any = Secret.load(vault.name)
            secrets_[str(token.get())] = "Stream partner token"
        db = Path(opened.db_path or "")
        landing = opened.landing
    APILogWorker.drain_all(timeout=30)  # every log the flows wrote is at the API
    exceptions = [(f"exception {type(e).__name__}", "".join(traceback.format_exception(e))) for e in raised]
    captured = capfd.readouterr()
    with capfd.disabled():
        reruns = [name for name, _ in failed]
        print(f"\n{len(secrets_)} secret values; faults injected: {dict(injected)}; rerun: {reruns}")

    places = [
        *duckdb_texts(db),
        *asyncio.run(prefect_texts(since)),
        ("stdout", captured.out),
        ("stderr", captured.err),
        *exceptions,
        *file_texts(landing),
        *file_texts(Path(PREFECT_LOCAL_STORAGE_PATH.value()), since.timestamp()),  # persisted task results
    ]
    assert (landing / ".receiver").is_dir(), "the receiver kept no state: nothing to scan there"
    seen = sorted({where.split(" ")[0] for where, _ in places})
    # the scan reads what it should: each place holds text the run is known to have written there
    for marker, kind in (
        ("luigis-trattoria", "log"),  # onboard-organization's log line
        ("paris-power", "artifact"),  # the provisioning plan's table
        ("order.created", "duckdb events.event_type"),  # a Stream webhook, through the landing area
        ("events sent: PLT", "stdout"),
    ):
        assert any(where.startswith(kind) and marker in text for where, text in places), (marker, kind, seen)
    found = leaks(secrets_, places)
    assert not found, "secrets leaked:\n" + "\n".join(found[:30])
