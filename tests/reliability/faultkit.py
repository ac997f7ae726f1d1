"""The demo's steps under injected faults, and what must hold afterwards (for test_faults and test_secrets).

A stage is the demo's (`flows.demo.open_stage`): all emulators, the push receiver on a free port, blocks
named ``<prefix>-*``, its own history store and landing area. `run_flows` runs the flows in the demo's order
and records each one's outcome: it completed, or it raised a `StreamkeeperError` whose message is one clear
line; any other exception fails the test. The checks compare what the emulators hold with the spec, and the
``events`` table with what the vendors sent.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows import demo
from flows.demo import Credentials, SentEvents, Stage
from streamkeeper.errors import StreamkeeperError
from streamkeeper.sandbox.runner import Sandbox
from streamkeeper.spec import load_spec
from streamkeeper.store import HistoryStore

VENDORS = ("dma", "plt", "pubnub", "stream", "thingspace", "equinix")
Echo = Callable[[str], None]


@contextmanager
def stage(
    tmp_path: Path,
    prefix: str,
    credentials: Credentials | None = None,
    echo: Echo = print,
    **sandbox_options: Any,
) -> Iterator[Stage]:
    """Every emulator and the receiver, the demo's blocks named ``<prefix>-*``, files under `tmp_path`."""
    options = {"stream": {"auto_authorize": True}, **sandbox_options}
    with (
        Sandbox.start(state_dir=tmp_path / "sandbox", **options) as sandbox,
        demo.open_stage(
            sandbox,
            credentials or Credentials(),
            tmp_path / "landing",
            echo,
            prefix=prefix,
            receiver_port=0,
            db_path=str(tmp_path / "history.duckdb"),
            work_dir=tmp_path,
        ) as opened,
    ):
        yield opened


def set_faults(sandbox: Sandbox, seed: int, **settings: Any) -> None:
    """The same fault settings on every emulator (each with its own seed, for repeatable runs)."""
    for offset, vendor in enumerate(VENDORS):
        sandbox.apps[vendor].faults.set(seed=seed * 100 + offset, **settings)


def clear_faults(sandbox: Sandbox) -> Counter[str]:
    """No more faults; returns how many of each kind were injected, on all emulators together."""
    injected: Counter[str] = Counter()
    for vendor in VENDORS:
        faults = sandbox.apps[vendor].faults
        faults.clear()
        injected.update(faults.injected)
    return injected


@dataclass
class Outcome:
    flow: str
    error: str | None = None
    seconds: float = 0.0
    exception: BaseException | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None


_NAMES_A_VENDOR_CALL = re.compile(r"\b(dma|plt|pubnub|stream|thingspace|equinix)\b[ /:][\w./-]*")


def assert_clear(message: str) -> None:
    """One line that names the vendor and what failed (operation, step or connection), no traceback."""
    assert message and "\n" not in message, f"not one line: {message!r}"
    assert "Traceback" not in message and len(message) < 1500, message
    assert _NAMES_A_VENDOR_CALL.search(message), f"names no vendor and operation: {message!r}"


def attempt(flow: str, step: Callable[[], object]) -> Outcome:
    """Run one flow: it completes, or fails with a clear `StreamkeeperError` (else the test fails)."""
    started = time.monotonic()
    try:
        step()
    except StreamkeeperError as exc:
        assert_clear(str(exc))
        return Outcome(flow, str(exc), time.monotonic() - started, exc)
    return Outcome(flow, None, time.monotonic() - started)


@dataclass
class Run:
    """The outcome of each flow in one pass, and the events the vendors sent during it."""

    outcomes: list[Outcome] = field(default_factory=list)
    sent: SentEvents | None = None

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]


def run_flows(stage: Stage, echo: Echo = print) -> Run:
    """The demo's flows in its order (apply without the plans around it, one audit), the events in between."""
    run = Run()
    steps: list[tuple[str, Callable[[], object]]] = [
        ("onboard-organization", lambda: demo.onboard(stage, echo)),
        ("provision-subscriptions apply", lambda: demo.apply(stage, echo)),
        ("refresh-subscriptions", lambda: demo.refresh(stage, echo)),
    ]
    for flow, step in steps:
        run.outcomes.append(attempt(flow, step))
    run.sent = demo.send_events(stage, echo)
    run.outcomes.append(attempt("ingest-events", lambda: demo.ingest(stage, echo)))
    run.outcomes.append(attempt("audit-subscriptions", lambda: demo.audit(stage, echo)))
    return run


# -- what must hold ----------------------------------------------------------------------------------------
def vendor_state(stage: Stage) -> dict[str, Any]:
    """What the emulators hold, in terms a spec speaks (names, counts)."""
    apps: Any = stage.sandbox.apps
    partner = apps["plt"].partners[stage.credentials.plt_partner_id.get_secret_value()]
    stream = apps["stream"]
    orgs = list(stream.orgs.values())
    org_ids = {o.id for o in orgs}
    contexts = {
        **{f"flag:{k}": sorted(c[2] for c in f.contexts) for k, f in stream.flags.items() if f.contexts},
        **{
            f"segment:{k}": sorted(c[2] for c in s.contexts) for k, s in stream.segments.items() if s.contexts
        },
    }
    return {
        "dma": Counter(s.passback for s in apps["dma"].subscriptions.values()),
        "plt": Counter(
            (partner.tenants[s.tenant_id].name, s.stream_type.name)
            for s in partner.streams.values()
            if s.started
        ),
        "thingspace targets": Counter(t.public["name"] for t in apps["thingspace"].targets.values()),
        "thingspace subscriptions": Counter(s["name"] for s in apps["thingspace"].subscriptions.values()),
        "equinix": len(apps["equinix"].streaming),
        "stream orgs": Counter(o.provider_id for o in orgs),
        "stream partner tokens": len([t for t in stream.partner_tokens.values() if t["org_id"] in org_ids]),
        "stream integrations": Counter(
            f"{i.type}:{i.source}" for i in stream.integrations.values() if i.org_id in org_ids
        ),
        "stream locations": Counter(loc.provider_id for o in orgs for loc in o.locations),
        "stream bindings": Counter(d.provider_id for o in orgs for loc in o.locations for d in loc.dsps),
        "stream contexts": contexts,
    }


def expected_state(stage: Stage, org_id: str) -> dict[str, Any]:
    """Exactly what the example spec and the onboarding spec ask for, each once."""
    spec = load_spec(stage.spec)
    targeting = [t for c in spec.stream for t in c.targeting]
    contexts: dict[str, set[str]] = {"flag:new-menu-sync": {org_id}, "flag:sso-login": {org_id}}
    contexts["segment:beta-merchants"] = {org_id}  # the onboarding spec's flags and segments
    for t in targeting:
        key = f"flag:{t.flag}" if t.flag else f"segment:{t.segment}"
        contexts.setdefault(key, set()).add(t.context)
    return {
        "dma": Counter(s.name for c in spec.dma for s in c.subscriptions),
        "plt": Counter((s.tenant, s.stream) for c in spec.plt for s in c.streams),
        "thingspace targets": Counter(t.name for c in spec.thingspace for t in c.targets),
        "thingspace subscriptions": Counter(
            s.name for c in spec.thingspace for t in c.targets for s in t.subscriptions
        ),
        "equinix": sum(len(c.subscriptions) for c in spec.equinix),
        "stream orgs": Counter({"luigis-trattoria": 1}),
        "stream partner tokens": 1,
        "stream integrations": Counter({"pos:square": 1, "dsp:doordash": 1, "dsp:ubereats": 1}),
        "stream locations": Counter({"sq-loc-001": 1, "sq-loc-002": 1}),
        "stream bindings": Counter({"dd-store-001": 1, "dd-store-002": 1, "ue-store-001": 1}),
        "stream contexts": {k: sorted(v) for k, v in contexts.items()},
    }


def assert_vendors_hold_exactly_the_spec(stage: Stage) -> None:
    """Nothing created twice, nothing missing: every emulator holds the spec's resources, each once."""
    state = vendor_state(stage)
    org_ids = list(stage.sandbox.apps["stream"].orgs)  # type: ignore[attr-defined]
    assert len(org_ids) == 1, state["stream orgs"]
    expected = expected_state(stage, org_ids[0])
    differences = {k: (state[k], expected[k]) for k in expected if state[k] != expected[k]}
    assert not differences, f"emulator state (held, spec): {differences}"


def events_expected(sent: list[SentEvents]) -> dict[str, Counter[str]]:
    """What each vendor sent that must be in ``events`` once: ids (per-stream counts where ids are ours)."""
    out: dict[str, Counter[str]] = {v: Counter() for v in ("plt", "dma", "thingspace", "stream", "equinix")}
    for batch in sent:
        out["plt"].update(str(tt) for tt in batch.plt)
        out["dma"].update(d.subscription_id for d in batch.dma if d.status == 200)
        out["thingspace"].update(i for d in batch.thingspace if d.ok for i in d.event_ids)
        out["stream"].update(i for i, status in batch.stream.items() if status == 200)
        out["equinix"].update({s: len(m) for s, m in batch.equinix.items()})
    return out


def events_stored(stage: Stage) -> dict[str, Counter[str]]:
    return events_by_vendor(HistoryStore(stage.db_path))


def events_by_vendor(store: HistoryStore) -> dict[str, Counter[str]]:
    """What `store` holds per vendor, by what the sender's id was (as `events_expected` counts it)."""
    frame = store.query("SELECT vendor, stream, event_id, subscription_id FROM events")
    out: dict[str, Counter[str]] = {v: Counter() for v in ("plt", "dma", "thingspace", "stream", "equinix")}
    for row in frame.itertuples(index=False):
        if row.vendor == "plt":
            out["plt"][row.event_id.rsplit(":", 1)[1]] += 1  # <channel alias>:<timetoken>
        elif row.vendor == "dma":
            out["dma"][row.subscription_id] += 1
        elif row.vendor == "equinix":
            out["equinix"][row.stream] += 1
        elif row.vendor == "thingspace":
            out["thingspace"][row.event_id.split(":", 1)[1]] += 1  # <target route name>:<data.id>
        else:
            out[row.vendor][row.event_id] += 1
    return out


def assert_each_event_once(stage: Stage, sent: list[SentEvents]) -> int:
    """Every event the vendors sent (and the receiver acknowledged) is in ``events`` exactly once."""
    expected, stored = events_expected(sent), events_stored(stage)
    for vendor, want in expected.items():
        got = stored[vendor]
        lost, extra = want - got, got - want
        assert not lost and not extra, f"{vendor}: lost {dict(lost)}, extra {dict(extra)}"
    # the receiver acknowledged every delivery it was sent (nothing refused, nothing left in the landing area)
    for batch in sent:
        assert all(d.status == 200 for d in batch.dma), [d.status for d in batch.dma]
        assert all(d.ok for d in batch.thingspace), [d.error for d in batch.thingspace]
        assert set(batch.stream.values()) <= {200}, batch.stream
    assert not list(stage.landing.rglob("*.json")), "files left in the landing area"
    return sum(sum(c.values()) for c in expected.values())
