"""Every flow under injected faults: it completes or fails with one clear line; a rerun without faults
completes; nothing is created twice at any vendor and every event lands exactly once.

Each scenario starts the whole sandbox (five vendor emulators and PubNub), the push receiver and the demo's
blocks (``faults-<scenario>-*``), then injects one kind of fault (or a mix) on a share of the requests to
every emulator, token endpoints included, and runs the demo's flows in its order: onboard-organization,
provision-subscriptions (apply), refresh-subscriptions, the vendors send events, ingest-events,
audit-subscriptions. A flow either completes or raises a `StreamkeeperError` whose message is one line naming
the vendor and what failed; anything else fails the test. Then the faults stop, the flows that failed run
again and must complete, the vendors send a second batch of events and ingest-events runs again. Finally:

- every emulator holds exactly the spec's resources, each once (one organisation, one integration per
  source, one DMA subscription per name, ...);
- every event the vendors sent and the receiver acknowledged is in ``events`` exactly once.

The flows build their clients from the blocks, with the default retry policy; 429s carry
``Retry-After: 0``. Where the point is a timeout, the blocks' timeout is shorter than the slow answer (and
back to the default for the rerun). The scenarios run side by side, one thread each, to share the wait.

The figures for the README's "Reliability" table:
``.venv/bin/python -m pytest tests/reliability/test_faults.py -s`` (each scenario prints its row).
"""

from __future__ import annotations

import contextvars
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from faultkit import (
    Outcome,
    Run,
    assert_each_event_once,
    assert_vendors_hold_exactly_the_spec,
    attempt,
    clear_faults,
    run_flows,
    set_faults,
    stage,
)
from prefect.blocks.system import Secret
from prefect.settings import (
    PREFECT_CLIENT_MAX_RETRIES,
    PREFECT_LOGGING_TO_API_ENABLED,
    temporary_settings,
)

from blocks import ALL_BLOCK_TYPES
from blocks.registry import block_class
from flows import demo
from flows.demo import Credentials, Stage

# the scenarios run in the first test's setup: the timeout covers them all
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.usefixtures("prefect_api")]

RATE = 0.2
SLOW_SECONDS = 1.5
SHORT_TIMEOUT = 1.0
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    kinds: tuple[str, ...]
    rate: float = RATE
    seed: int = 1

    @property
    def timeout_seconds(self) -> float:
        """The blocks' HTTP timeout under faults: shorter than a slow answer, where there are slow ones."""
        return SHORT_TIMEOUT if "slow" in self.kinds else DEFAULT_TIMEOUT


SCENARIOS = [
    Scenario("429", "429 with `Retry-After: 0`", ("429",)),
    Scenario("5xx", "502, 503 or 504", ("5xx",)),
    Scenario("slow", f"slow answer ({SLOW_SECONDS} s; client timeout {SHORT_TIMEOUT} s)", ("slow",)),
    Scenario("drop", "connection dropped before the request is handled", ("drop",)),
    Scenario("drop_after", "connection dropped after the request is handled (answer lost)", ("drop_after",)),
    Scenario(
        "token_expiry", "every token the vendor issued revoked, then the request handled", ("token_expiry",)
    ),
    Scenario("mix", "all six kinds, mixed", ("429", "5xx", "slow", "drop", "drop_after", "token_expiry")),
]


@dataclass
class Result:
    faulty: Run
    injected: Counter[str]
    reruns: list[Outcome]
    events: int
    seconds: float

    def row(self, scenario: Scenario) -> str:
        completed = len(self.faulty.outcomes) - len(self.faulty.failed)
        failed = "; ".join(f"{o.flow}: `{o.error}`" for o in self.faulty.failed)
        outcome = f"{completed} of {len(self.faulty.outcomes)} flows completed" + (
            f"; failed clearly, then completed on the rerun: {failed}" if failed else ""
        )
        return (
            f"| {scenario.title} | {scenario.rate:.0%} of requests ({sum(self.injected.values())} faults) "
            f"| {outcome}; no twins; {self.events} events, each stored once |"
        )


def set_timeout(stage: Stage, seconds: float) -> None:
    """Change the HTTP timeout of the stage's vendor blocks, keeping what the flows wrote back to them."""
    for vendor in ("dma", "plt", "stream", "thingspace", "equinix"):
        name = stage.block(vendor)
        block: Any = block_class(vendor).load(name)
        block.timeout_seconds = seconds
        block.save(name, overwrite=True)


def play(scenario: Scenario, tmp_path: Path) -> Result:
    started = time.monotonic()
    credentials = Credentials(timeout_seconds=scenario.timeout_seconds)
    with stage(tmp_path, f"faults-{scenario.id}".replace("_", "-"), credentials) as opened:
        set_faults(
            opened.sandbox,
            scenario.seed,
            rate=scenario.rate,
            kinds=list(scenario.kinds),
            retry_after="0",
            slow_seconds=SLOW_SECONDS,
        )
        faulty = run_flows(opened)
        injected = clear_faults(opened.sandbox)
        assert sum(injected.values()) > 0, "no fault was injected"

        # without faults, what failed runs again and completes; a second batch of events, loaded once more
        if scenario.timeout_seconds != DEFAULT_TIMEOUT:
            set_timeout(opened, DEFAULT_TIMEOUT)
        steps = {
            "onboard-organization": lambda: demo.onboard(opened, print),
            "provision-subscriptions apply": lambda: demo.apply(opened, print),
            "refresh-subscriptions": lambda: demo.refresh(opened, print),
            "audit-subscriptions": lambda: demo.audit(opened, print),
        }
        reruns = [attempt(o.flow, steps[o.flow]) for o in faulty.failed if o.flow in steps]
        sent = demo.send_events(opened, print)
        reruns.append(attempt("ingest-events", lambda: demo.ingest(opened, print)))
        assert all(o.ok for o in reruns), [(o.flow, o.error) for o in reruns if not o.ok]

        assert_vendors_hold_exactly_the_spec(opened)
        assert faulty.sent is not None
        events = assert_each_event_once(opened, [faulty.sent, sent])
    return Result(faulty, injected, reruns, events, time.monotonic() - started)


WORKERS = 3
"""Scenarios at a time: more only queue on the test API's SQLite (it answers 503 when too busy)."""
FIRST = ("mix", "slow", "5xx")
"""The longest scenarios start first."""


@pytest.fixture(scope="module")
def results(
    request: pytest.FixtureRequest, prefect_api: None, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Result | BaseException]:
    """The selected scenarios, a few side by side (each thread with a copy of the Prefect test harness's
    context).

    Flow logs stay on the console: this test reads none from the API, and shipping them only loads it.
    The test API's SQLite answers 503 while busy: the client retries those more often than by default.
    """
    selected = {
        cast(Scenario, item.callspec.params["scenario"]).id
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.module is request.module and hasattr(item, "callspec")
    }
    block_types: list[Any] = [*ALL_BLOCK_TYPES, Secret]
    for block_type in block_types:  # once, before the threads save blocks of each type
        block_type.register_type_and_schema()
    order = sorted(
        (s for s in SCENARIOS if s.id in selected),
        key=lambda s: FIRST.index(s.id) if s.id in FIRST else len(FIRST),
    )
    with (
        temporary_settings(updates={PREFECT_LOGGING_TO_API_ENABLED: False, PREFECT_CLIENT_MAX_RETRIES: 12}),
        ThreadPoolExecutor(max_workers=WORKERS) as pool,
    ):
        futures = {
            s.id: pool.submit(contextvars.copy_context().run, play, s, tmp_path_factory.mktemp(s.id))
            for s in order
        }
        out: dict[str, Result | BaseException] = {}
        for scenario_id, future in futures.items():
            try:
                out[scenario_id] = future.result()
            except Exception as exc:  # re-raised by the scenario's own test
                out[scenario_id] = exc
    return out


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_flows_under_faults_complete_or_fail_clearly_and_a_rerun_completes(
    scenario: Scenario, results: dict[str, Result | BaseException]
) -> None:
    result = results[scenario.id]
    if isinstance(result, BaseException):
        raise result
    print(f"\n{result.row(scenario)}")
    print(f"({result.seconds:.0f} s; injected {dict(result.injected)})")
