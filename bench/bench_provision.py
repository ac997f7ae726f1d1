"""Benchmark: plan and apply 10,000 subscriptions over the five vendors' emulators.

    .venv/bin/python bench/bench_provision.py [--total 10000] [--workers 16]

Phases, all in one process against in-process emulators (loopback HTTP, the DMA over TLS):

1. plan on empty vendors (reads only), 2. apply (creates, history rows in DuckDB), 3. plan again (must
find nothing to do), then 4. a bare loop: the emulators are reset and the same vendor calls (the same
reads, the same creates through the same client methods and clients, with the same thread-pool width) are
made directly, with no planning, no matching and no history. Prints the time and the number of HTTP
requests (counted by the emulators) of each phase, and plan + apply over the bare loop.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamkeeper.provision import apply_all, known_from_store, make_adapter, plan_all, versions  # noqa: E402
from streamkeeper.sandbox.base import SandboxServer, VendorSandbox  # noqa: E402
from streamkeeper.sandbox.dma import DMASandbox  # noqa: E402
from streamkeeper.sandbox.equinix import DEFAULT_CLIENT_ID as EQX_ID  # noqa: E402
from streamkeeper.sandbox.equinix import DEFAULT_CLIENT_SECRET as EQX_SECRET  # noqa: E402
from streamkeeper.sandbox.equinix import EquinixSandbox  # noqa: E402
from streamkeeper.sandbox.plt import DEFAULT_PARTNER_ID, PLTSandbox  # noqa: E402
from streamkeeper.sandbox.stream import DEFAULT_CLIENT_ID as STREAM_ID  # noqa: E402
from streamkeeper.sandbox.stream import DEFAULT_CLIENT_SECRET as STREAM_SECRET  # noqa: E402
from streamkeeper.sandbox.stream import DEFAULT_PARTNER_ID as STREAM_PARTNER  # noqa: E402
from streamkeeper.sandbox.stream import StreamSandbox  # noqa: E402
from streamkeeper.sandbox.thingspace import (  # noqa: E402
    DEFAULT_APP_KEY,
    DEFAULT_APP_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    ThingSpaceSandbox,
)
from streamkeeper.sandbox.tls import self_signed  # noqa: E402
from streamkeeper.spec import ProvisioningSpec, equinix_body, load_spec_text  # noqa: E402
from streamkeeper.store import HistoryStore  # noqa: E402
from streamkeeper.vendors.dma import DMAClient  # noqa: E402
from streamkeeper.vendors.equinix import EquinixClient  # noqa: E402
from streamkeeper.vendors.http import tls_verify  # noqa: E402
from streamkeeper.vendors.plt import PLTClient  # noqa: E402
from streamkeeper.vendors.stream import StreamClient  # noqa: E402
from streamkeeper.vendors.thingspace import STREAM_KINDS, ThingSpaceClient  # noqa: E402

SHARE = {"dma": 0.40, "equinix": 0.35, "plt": 0.15, "thingspace": 0.096}  # stream: the rest (< 50: one read)
SECRETS = {"ts-receiver": "bench-receiver-password"}


def split(total: int) -> dict[str, int]:
    counts = {v: int(total * s) for v, s in SHARE.items()}
    counts["thingspace"] -= counts["thingspace"] % 4  # four streamkinds per account
    counts["stream"] = total - sum(counts.values())
    if counts["stream"] >= 50:
        counts["dma"] += counts["stream"] - 40
        counts["stream"] = 40
    return counts


class Sandboxes:
    def __init__(self, counts: dict[str, int], state: Path) -> None:
        self.counts = counts
        self.tls = self_signed(state / "tls")
        self.apps: dict[str, VendorSandbox] = {
            "dma": DMASandbox(validate_consumer_url=False),
            "equinix": EquinixSandbox(),
            "plt": PLTSandbox(),
            "stream": StreamSandbox(),
            "thingspace": ThingSpaceSandbox(),
        }
        self.servers = {
            v: SandboxServer(app, tls=self.tls if v == "dma" else None).start()
            for v, app in self.apps.items()
        }
        self.accounts = [f"0000000007-{i:05d}" for i in range(counts["thingspace"] // 4)]
        self.seed()

    def seed(self) -> None:
        """What the vendors offer before anything is provisioned (PLT streams, ThingSpace accounts)."""
        plt = self.apps["plt"]
        assert isinstance(plt, PLTSandbox)
        self.tenant = plt.add_tenant(DEFAULT_PARTNER_ID, name="Bench Tenant")
        self.plt_streams = [
            plt.add_stream(DEFAULT_PARTNER_ID, self.tenant.tenant_id, f"BENCH_{i:05d}")
            for i in range(self.counts["plt"])
        ]
        ts = self.apps["thingspace"]
        assert isinstance(ts, ThingSpaceSandbox)
        ts.add_user(DEFAULT_USERNAME, DEFAULT_PASSWORD, self.accounts)

    def reset(self) -> None:
        for app in self.apps.values():
            app.reset()
        self.seed()

    def requests(self) -> int:
        return sum(app.requests.total for app in self.apps.values())

    def url(self, vendor: str) -> str:
        return self.servers[vendor].url + ("/api/rest" if vendor == "dma" else "")

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


def build_spec(sb: Sandboxes) -> ProvisioningSpec:
    c = sb.counts
    data: dict[str, Any] = {
        "dma": [
            {
                "connection": "bench-dma",
                "subscriptions": [
                    {
                        "name": f"dma-{i:05d}",
                        "subject": ("all_conferences", "conference", "participants")[i % 3],
                        **({"conference": str(1 + i % 3)} if i % 3 else {}),
                        "consumer_url": f"https://receiver.example.com/dma/{i}",
                        "time_to_live": 3600 + i % 1000,
                    }
                    for i in range(c["dma"])
                ],
            }
        ],
        "equinix": [
            {
                "connection": "bench-equinix",
                "api": "streaming",
                "subscriptions": [
                    {
                        "name": f"eqx-{i:05d}",
                        "families": {
                            "power": [{"account": str(100000 + i), "ibx": ["PA4", "DC2"]}],
                            "environmental": [{"account": str(100000 + i), "ibx": ["PA4"], "level": ["IBX"]}],
                        },
                        "channel": {
                            "url": "https://127.0.0.1:9/equinix/bench"
                        },  # WEBHOOK, the spec's default
                    }
                    for i in range(c["equinix"])
                ],
            }
        ],
        "plt": [
            {
                "connection": "bench-plt",
                "streams": [
                    {"name": f"plt-{i:05d}", "stream": s.stream_id, "tenant": sb.tenant.tenant_id}
                    for i, s in enumerate(sb.plt_streams)
                ],
            }
        ],
        "stream": [
            {
                "connection": "bench-stream",
                "targeting": [
                    {"name": f"ctx-{i:05d}", "context": f"merchant-{i:05d}", "segment": "beta-merchants"}
                    for i in range(c["stream"])
                ],
            }
        ],
        "thingspace": [
            {
                "connection": "bench-thingspace",
                "account": account,
                "targets": [
                    {
                        "name": "receiver",
                        "address": "receiver.example.com:8443",
                        "credentials": {"username": "streamkeeper", "password_block": "ts-receiver"},
                        "subscriptions": [
                            {"name": f"ts-{a:05d}-{k}", "streamkind": kind}
                            for k, kind in enumerate(STREAM_KINDS)
                        ],
                    }
                ],
            }
            for a, account in enumerate(sb.accounts)
        ],
    }
    return load_spec_text(yaml.safe_dump(data), source="bench")


def make_clients(sb: Sandboxes) -> dict[str, Any]:
    return {
        "dma": DMAClient(
            sb.url("dma"),
            username="provisioner",
            password=SecretStr("provisioner-pass"),
            verify=tls_verify(sb.tls.cert_pem),
        ),
        "equinix": EquinixClient(sb.url("equinix"), client_id=EQX_ID, client_secret=SecretStr(EQX_SECRET)),
        "plt": PLTClient(sb.url("plt"), partner_id=SecretStr(DEFAULT_PARTNER_ID)),
        "stream": StreamClient(
            sb.url("stream"),
            client_id=STREAM_ID,
            client_secret=SecretStr(STREAM_SECRET),
            partner_id=STREAM_PARTNER,
        ),
        "thingspace": ThingSpaceClient(
            sb.url("thingspace"),
            app_key=DEFAULT_APP_KEY,
            app_secret=SecretStr(DEFAULT_APP_SECRET),
            username=DEFAULT_USERNAME,
            password=SecretStr(DEFAULT_PASSWORD),
            account_name=sb.accounts[0],
        ),
    }


def bare_loop(sb: Sandboxes, spec: ProvisioningSpec, clients: dict[str, Any], workers: int) -> None:
    """The same reads and creates, straight through the clients: no plan, no matching, no history."""
    dma, eqx, plt, stream, ts = (clients[v] for v in ("dma", "equinix", "plt", "stream", "thingspace"))
    # the reads a plan makes
    dma.list_subscriptions()
    eqx.list_streaming_subscriptions()
    plt.list_streams()
    stream.search_contexts(limit=50)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(
            pool.map(lambda a: (ts.query_targets(account=a), ts.query_subscriptions(account=a)), sb.accounts)
        )

    calls: list[Callable[[], Any]] = []
    for s in spec.dma[0].subscriptions:
        body = {"consumer_url": s.consumer_url, "time_to_live": s.time_to_live, "passback": s.name}
        calls.append(lambda s=s, body=body: dma.create_subscription(s.subject_path, body))
    for s in spec.equinix[0].subscriptions:
        calls.append(lambda s=s: eqx.create_streaming_subscription(equinix_body("streaming", s)))
    for s in sb.plt_streams:
        calls.append(lambda s=s: plt.start_stream(s.stream_id, s.tenant_id))
    for t in spec.stream[0].targeting:
        calls.append(lambda t=t: stream.add_segment_contexts(t.segment, [{"key": t.context, "kind": t.kind}]))
    for entry in spec.thingspace:
        calls.append(lambda entry=entry: _thingspace_account(ts, entry))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda call: call(), calls))


def _thingspace_account(ts: ThingSpaceClient, entry: Any) -> None:
    from streamkeeper.vendors.thingspace import CreateTargetRequest

    for t in entry.targets:
        target = ts.create_target(
            CreateTargetRequest.streamrest(
                t.name, t.address, username="streamkeeper", password=SecretStr(SECRETS["ts-receiver"])
            ),
            account=entry.account,
        )
        for s in t.subscriptions:
            ts.create_subscription(
                {
                    "name": s.name,
                    "streamkind": s.streamkind,
                    "targetid": target.id,
                    "allowaggregation": False,
                    "disabled": False,
                },
                account=entry.account,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total", type=int, default=10_000, help="subscriptions to provision")
    parser.add_argument("--workers", type=int, default=16, help="threads per connection")
    args = parser.parse_args()

    counts = split(args.total)
    state = Path(tempfile.mkdtemp(prefix="bench-provision-"))
    sb = Sandboxes(counts, state)
    try:
        spec = build_spec(sb)
        clients = make_clients(sb)
        adapters = [
            make_adapter(v, c, clients[v], secrets=SECRETS.__getitem__) for v, c in spec.connections()
        ]
        store = HistoryStore(state / "history.duckdb")
        known_from_store(store)  # create the file outside the timings
        print(
            f"subscriptions: {sum(counts.values())} ({', '.join(f'{v} {n}' for v, n in counts.items())}), "
            f"+{len(sb.accounts)} ThingSpace targets; {len(adapters)} connections; {args.workers} workers"
        )

        rows = []

        def phase(name: str, run: Callable[[], Any]) -> Any:
            before, started = sb.requests(), time.perf_counter()
            result = run()
            rows.append((name, time.perf_counter() - started, sb.requests() - before))
            return result

        plan = phase("plan (empty vendors)", lambda: plan_all(adapters, known_from_store(store)))
        assert not plan.errors, plan.errors[:3]
        assert plan.counts()["create"] == sum(counts.values()) + len(sb.accounts), plan.summary()

        def apply() -> list[Any]:
            outcomes = apply_all(adapters, plan, workers=args.workers)
            store.record_versions(versions(outcomes))
            return outcomes

        outcomes = phase("apply", apply)
        failed = [o for o in outcomes if not o.ok]
        assert not failed, failed[:3]
        again = phase("plan again (no change)", lambda: plan_all(adapters, known_from_store(store)))
        assert again.exit_code == 0, again.summary()

        sb.reset()
        phase("bare loop (same calls)", lambda: bare_loop(sb, spec, clients, args.workers))

        print(f"{'phase':<26}{'seconds':>10}{'HTTP calls':>12}{'calls/s':>10}")
        for name, seconds, calls in rows:
            print(f"{name:<26}{seconds:>10.2f}{calls:>12}{calls / seconds:>10.0f}")
        ours = rows[0][1] + rows[1][1]
        ours_calls = rows[0][2] + rows[1][2]
        bare, bare_calls = rows[3][1], rows[3][2]
        print(
            f"plan + apply: {ours:.2f} s, {ours_calls} calls; bare loop: {bare:.2f} s, {bare_calls} calls; "
            f"ratio {ours / bare:.2f}x time, {ours_calls / bare_calls:.2f}x calls"
        )
        for client in clients.values():
            client.close()
    finally:
        sb.stop()


if __name__ == "__main__":
    main()
