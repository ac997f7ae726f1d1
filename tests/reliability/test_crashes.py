"""Crashes: provisioning, onboarding and ingest processes killed with SIGKILL at random points, then rerun.

The emulators run in processes of their own (`sandbox_process.py`, one per seed), so they outlive the
killed process and hold whatever it managed to do. Each `streamkeeper` process uses the test session's
Prefect API and is killed with SIGKILL at a point measured in progress and drawn from its seed: after the
Nth write request the emulators have seen, or (ingest) right after the Nth commit of a source, before that
source is acknowledged. The seeds run side by side. Then the same flow runs again to the end, and:

- the vendors hold exactly what the spec says (no twin of anything made before the kill);
- onboarding made exactly one organisation, integration per source, location and binding;
- every emitted event is in ``events`` exactly once;
- the history store opens cleanly after the kill, with its whole schema.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_LOGGING_TO_API_ENABLED, temporary_settings
from pydantic import SecretStr
from relkit import CliRun, Processes, PyCache, SandboxProcess, cli_env, sandbox_processes

from streamkeeper.store import HistoryStore
from streamkeeper.store.schema import LATEST_VERSION

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

SEEDS = (11, 22, 33)
POLL = 0.02  # seconds between two looks at the kill points
SPECS = Path(__file__).resolve().parents[2] / "data" / "specs"
TABLES = {
    "subscriptions",
    "subscription_snapshots",
    "events",
    "onboarding_steps",
    "api_calls",
    "token_events",
    "http_cache",
    "cursors",
    "event_gaps",
    "schema_migrations",
}


@dataclass
class Seeded:
    """One seed's world: its own emulators (and blocks ``crash<seed>-*`` pointing at them), db and files."""

    seed: int
    sandbox: SandboxProcess
    home: Path
    pycache: Path

    @property
    def prefix(self) -> str:
        return f"crash{self.seed}"

    def db(self, name: str) -> Path:
        return self.home / f"{name}.duckdb"


@pytest.fixture(scope="module")
def worlds(
    shared_pycache: PyCache, prefect_api: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Seeded]]:
    from blocks.plt import PLTCredentials
    from flows.provision import save_sandbox_connections
    from streamkeeper.sandbox import plt

    homes = [tmp_path_factory.mktemp(f"seed{seed}") for seed in SEEDS]
    cache = shared_pycache.ready()
    with sandbox_processes([home / "sandbox" for home in homes], cache) as sandboxes:
        out = []
        for seed, sandbox, home in zip(SEEDS, sandboxes, homes, strict=True):
            world = Seeded(seed, sandbox, home, cache)
            save_sandbox_connections(sandbox.urls, sandbox.ca_pem, prefix=world.prefix)
            PLTCredentials(
                base_url=sandbox.urls["plt"],
                partner_id=SecretStr(plt.DEFAULT_PARTNER_ID),
                pubnub_origin=sandbox.urls["pubnub"],
            ).save(f"{world.prefix}-plt", overwrite=True)
            out.append(world)
        yield out


@dataclass
class Crash:
    """A command to kill once `reached()` holds, and the same work to run again to the end (`again`)."""

    world: Seeded
    args: list[str]
    db: Path
    reached: Callable[[], bool]
    again: Callable[[], Any]
    env: dict[str, str] = field(default_factory=dict)
    killed: CliRun | None = None
    result: Any = None


def kill_then_rerun(crashes: list[Crash], spawned: Processes, logs: Path, what: str) -> None:
    """Start every command at once, SIGKILL each at its kill point, check each store opens, run each again.

    The killed runs are `streamkeeper` processes; the reruns are the same flows with the same parameters run
    here, in the test process, one thread each (another Python start would cost seconds and prove nothing).
    """
    started = time.monotonic()
    for c in crashes:
        env = cli_env(c.world.home, c.db, c.world.pycache) | c.env
        c.killed = spawned.start(c.args, env, logs, f"{c.world.seed}-killed")
    deadline = time.monotonic() + 150
    alive = list(crashes)
    while alive:
        for c in list(alive):
            assert c.killed is not None
            if c.killed.process.poll() is not None:
                raise AssertionError(
                    f"seed {c.world.seed}: streamkeeper {' '.join(c.args)} ended (exit "
                    f"{c.killed.process.returncode}) before its kill point:\n{c.killed.output[-3000:]}"
                )
            if c.reached():
                c.killed.kill()
                alive.remove(c)
        if time.monotonic() > deadline:
            raise AssertionError(
                f"kill points not reached within 150 s: seeds {[c.world.seed for c in alive]}"
            )
        time.sleep(POLL)  # an interval between looks, not synchronisation: the kill points are measured
    killed_at = time.monotonic()
    for c in crashes:
        assert c.killed is not None and c.killed.process.returncode == -signal.SIGKILL
        assert "Could not set lock" not in c.killed.output
        assert_store_opens(c.db)
    with (
        temporary_settings({PREFECT_LOGGING_TO_API_ENABLED: False}),  # spare the API's CPU
        ThreadPoolExecutor(len(crashes)) as pool,  # the seeds' reruns side by side, like their kills
    ):
        for c, result in zip(crashes, pool.map(lambda c: c.again(), crashes), strict=True):
            c.result = result
            assert_store_opens(c.db)
    print(
        f"\n{what}: killed {len(crashes)} processes after {killed_at - started:.1f} s, "
        f"reran them in {time.monotonic() - killed_at:.1f} s"
    )


def assert_store_opens(db: Path) -> None:
    """The file opens after the kill (DuckDB replays or drops its WAL), with every table of the schema."""
    if not db.exists():
        return  # killed before its first write: nothing to open yet
    store = HistoryStore(db)
    assert store.query("SELECT 1 AS one")["one"].tolist() == [1]
    assert store.schema_version() == LATEST_VERSION
    tables = set(store.query("SELECT table_name FROM information_schema.tables")["table_name"])
    assert tables >= TABLES, TABLES - tables


def writes_reached(sandbox: SandboxProcess, vendors: tuple[str, ...], n: int) -> bool:
    return sandbox.writes(vendors) >= n


# -- provisioning ------------------------------------------------------------------------------------------
APPLY_WRITES = 13  # write requests of an uninterrupted apply of the example spec on empty vendors
VENDORS = ("dma", "plt", "stream", "thingspace", "equinix")


def test_apply_killed_at_random_writes_then_rerun_leaves_exactly_the_spec(
    worlds: list[Seeded], spawned: Processes, tmp_path: Path
) -> None:
    from flows.provision import provision_subscriptions

    crashes = []
    for world in worlds:
        world.sandbox.call("reset")
        spec = world.home / "spec.yaml"
        text = (SPECS / "example.yaml").read_text().replace("demo-", f"{world.prefix}-")
        spec.write_text(text.replace("${STREAMKEEPER_RECEIVER_URL}", "http://127.0.0.1:9"))
        kill_after = random.Random(world.seed).randint(1, APPLY_WRITES)
        print(f"seed {world.seed}: apply killed after {kill_after} writes")
        db = world.db("apply")
        crashes.append(
            Crash(
                world,
                ["apply", str(spec), "--db", str(db)],
                db,
                partial(writes_reached, world.sandbox, VENDORS, kill_after),
                partial(provision_subscriptions, spec_path=str(spec), dry_run=False, db_path=str(db)),
            )
        )
    kill_then_rerun(crashes, spawned, tmp_path, "apply")
    for c in crashes:
        state = c.world.sandbox.call("state")
        seed = f"seed {c.world.seed}"
        assert c.result.failed == [], (seed, c.result.summary())
        assert state["dma"] == ["all-conferences", "board-meeting", "town-hall-participants"], (seed, state)
        assert state["thingspace_targets"] == ["receiver"], (seed, state)
        assert state["thingspace_subscriptions"] == ["device-diagnostics", "device-events"], (seed, state)
        assert len(state["equinix"]) == len(set(state["equinix"])) == 2, (seed, state)
        assert len(state["plt"]) == len(set(state["plt"])) == 3, (seed, state)
        assert state["stream_flags"] == {"new-menu-sync": ["user:merchant-acme"]}, (seed, state)
        assert state["stream_segments"] == {"beta-merchants": ["user:merchant-acme"]}, (seed, state)
        current = HistoryStore(c.db).query(
            "SELECT vendor, name, count(*) AS n FROM current_subscriptions GROUP BY ALL ORDER BY ALL"
        )
        assert len(current) == 13 and set(current["n"]) == {1}, (seed, current.to_string())


# -- onboarding --------------------------------------------------------------------------------------------
ONBOARD_WRITES = 14  # write requests of an uninterrupted onboarding of the example spec


def test_onboard_killed_at_random_writes_then_rerun_makes_everything_once(
    worlds: list[Seeded], spawned: Processes, tmp_path: Path
) -> None:
    from flows.onboard import onboard_organization

    spec = SPECS / "onboarding-example.yaml"
    crashes = []
    for world in worlds:
        world.sandbox.call("reset")
        kill_after = random.Random(world.seed).randint(1, ONBOARD_WRITES)
        print(f"seed {world.seed}: onboard killed after {kill_after} writes")
        db, block = world.db("onboard"), f"{world.prefix}-stream"
        crashes.append(
            Crash(
                world,
                ["onboard", str(spec), "--block", block, "--db", str(db)],
                db,
                partial(writes_reached, world.sandbox, ("stream",), kill_after),
                partial(onboard_organization, spec_path=str(spec), block_name=block, db_path=str(db)),
            )
        )
    kill_then_rerun(crashes, spawned, tmp_path, "onboard")
    org = "luigis-trattoria"
    for c in crashes:
        state: dict[str, Any] = c.world.sandbox.call("state")
        seed = f"seed {c.world.seed}"
        assert state["orgs"] == [org], (seed, state)
        assert state["partner_tokens"] == [f"{org}/streamkeeper"], (seed, state)
        assert state["integrations"] == [
            f"{org}/dsp/doordash/active",
            f"{org}/dsp/ubereats/active",
            f"{org}/pos/square/active",
        ], (seed, state)
        assert state["locations"] == [f"{org}/sq-loc-001", f"{org}/sq-loc-002"], (seed, state)
        assert state["bindings"] == [
            f"{org}/sq-loc-001/doordash/dd-store-001",
            f"{org}/sq-loc-001/ubereats/ue-store-001",
            f"{org}/sq-loc-002/doordash/dd-store-002",
        ], (seed, state)
        assert state["menus"] == [
            f"{org}/dd-store-001/menu-dinner,menu-lunch",
            f"{org}/dd-store-002/menu-breakfast,menu-dinner,menu-lunch",
            f"{org}/ue-store-001/",
        ], (seed, state)
        assert state["stream_flags"] == {
            "new-menu-sync": [f"organization:{org}"],
            "sso-login": [f"organization:{org}"],
        }, (seed, state)
        assert state["stream_segments"] == {"beta-merchants": [f"organization:{org}"]}, (seed, state)
        if c.result.status != "live":  # what a crash may leave to a human: a partner token whose value
            # (shown once, in the create answer) was never kept; nothing else
            humans = c.result.needs_human
            assert humans and all("partner token" in item for item in humans), (seed, humans)


# -- ingest ------------------------------------------------------------------------------------------------
PLT_EVENTS = 20  # per PLT stream (four of them)
EQUINIX_EVENTS = 600  # three pages of 250: three commits, the cursor moving in each
LANDING_EVENTS = 30  # in 40 files (10 are a sender's retries): one commit, then the files are deleted
# where each seed's run is killed: right after the Nth commit of a source (N drawn from the seed), before that
# source is acknowledged; the seeds take the sources in turn, so every run covers each source's window
KILL_SOURCES = (("landing", 1), ("equinix:", 3), ("plt:", 1))  # (source, how many commits it makes)


def test_ingest_killed_after_random_commits_then_rerun_lands_each_event_once(
    worlds: list[Seeded], spawned: Processes, tmp_path: Path
) -> None:
    from blocks.equinix import EquinixCredentials
    from flows.ingest import ingest_events
    from streamkeeper.ingest import write_landing_file
    from streamkeeper.ingest.base import PAUSE_AT_ENV, PAUSE_ENV, PAUSE_SOURCE_ENV

    crashes = []
    emitted: dict[int, list[int]] = {}
    for world, (source, commits) in zip(worlds, KILL_SOURCES, strict=True):
        world.sandbox.call("reset")
        block: Any = EquinixCredentials.load(f"{world.prefix}-equinix")
        with block.get_client() as client:
            subscription = client.create_streaming_subscription(
                {
                    "messageType": {
                        "environmental": [{"accountNumber": "116710", "ibx": ["LD9"], "level": ["CAGE"]}]
                    },
                    "channel": {
                        "channelType": "WEBHOOK",
                        "webhookChannelConfiguration": {"url": "https://hooks.example/eq"},
                    },
                }
            )
        sent = world.sandbox.call(
            "emit", plt=PLT_EVENTS, equinix_subscription=subscription.id, equinix=EQUINIX_EVENTS
        )
        assert len(sent["plt"]) == 4 * PLT_EVENTS and sent["equinix"] == EQUINIX_EVENTS
        emitted[world.seed] = sent["plt"]
        landing = world.home / "landing"
        for n in [*range(LANDING_EVENTS), *range(10)]:
            event = {
                "vendor": "dma",
                "stream": "conferences",
                "event_id": f"sub-1:e:{n}",
                "payload": {"n": n},
            }
            write_landing_file(landing, event)
        db = world.db("ingest")
        fifo = world.home / "pause.fifo"
        os.mkfifo(fifo)
        at = random.Random(world.seed).randint(1, commits)
        print(f"seed {world.seed}: ingest killed after commit {at} of {source}")
        args = [
            *("ingest", "--plt", f"{world.prefix}-plt", "--equinix", f"{world.prefix}-equinix"),
            *("--landing", str(landing), "--idle", "0.5", "--db", str(db)),
        ]

        def again(w: Seeded = world, db: Path = db, landing: Path = landing) -> Any:
            return ingest_events(
                plt_blocks=[f"{w.prefix}-plt"],
                equinix_blocks=[f"{w.prefix}-equinix"],
                landing_dir=str(landing),
                pubnub_idle_seconds=0.5,
                db_path=str(db),
            )

        marker = Path(f"{fifo}.committed")
        crash = Crash(world, args, db, marker.exists, again)
        crash.env = {PAUSE_ENV: str(fifo), PAUSE_SOURCE_ENV: source, PAUSE_AT_ENV: str(at)}
        crashes.append(crash)
    kill_then_rerun(crashes, spawned, tmp_path, "ingest")
    for c in crashes:
        seed = f"seed {c.world.seed}"
        summary = c.result
        assert not summary.failed, (seed, summary.failed)
        store = HistoryStore(c.db)
        twice = store.query(
            "SELECT vendor, stream, event_id, count(*) AS n FROM events GROUP BY ALL HAVING count(*) > 1"
        )
        assert twice.empty, (seed, twice.to_string())
        counts = store.query("SELECT vendor, count(*) AS n FROM events GROUP BY 1 ORDER BY 1")
        assert dict(zip(counts["vendor"], counts["n"], strict=True)) == {
            "dma": LANDING_EVENTS,
            "equinix": EQUINIX_EVENTS,
            "plt": 4 * PLT_EVENTS,
        }, (seed, counts.to_string())
        plt_ids = store.query("SELECT event_id FROM events WHERE vendor = 'plt'")["event_id"]
        assert sorted(int(e.rsplit(":", 1)[1]) for e in plt_ids) == sorted(emitted[c.world.seed]), seed
        landing_ids = set(store.query("SELECT event_id FROM events WHERE vendor = 'dma'")["event_id"])
        assert landing_ids == {f"sub-1:e:{n}" for n in range(LANDING_EVENTS)}, seed
        assert not list((c.world.home / "landing").rglob("*.json")), f"{seed}: landing files left behind"
