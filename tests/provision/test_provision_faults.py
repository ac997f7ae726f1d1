"""500 subscriptions over the five vendors with 20 % of requests failing (429, 5xx, dropped connections,
answers lost after the vendor acted): one apply ends with exactly those 500 and a history that matches."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import SECRETS, fast_retry  # tests/provision/conftest.py
from pydantic import SecretStr

from streamkeeper.provision import Adapter, apply_all, known_from_store, make_adapter, plan_all, versions
from streamkeeper.sandbox.base import SandboxServer, VendorSandbox
from streamkeeper.sandbox.dma import DMASandbox
from streamkeeper.sandbox.equinix import DEFAULT_CLIENT_ID as EQX_ID
from streamkeeper.sandbox.equinix import DEFAULT_CLIENT_SECRET as EQX_SECRET
from streamkeeper.sandbox.equinix import EquinixSandbox
from streamkeeper.sandbox.plt import DEFAULT_PARTNER_ID, PLTSandbox
from streamkeeper.sandbox.stream import DEFAULT_CLIENT_ID as STREAM_ID
from streamkeeper.sandbox.stream import DEFAULT_CLIENT_SECRET as STREAM_SECRET
from streamkeeper.sandbox.stream import DEFAULT_PARTNER_ID as STREAM_PARTNER
from streamkeeper.sandbox.stream import StreamSandbox
from streamkeeper.sandbox.thingspace import (
    DEFAULT_APP_KEY,
    DEFAULT_APP_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    ThingSpaceSandbox,
)
from streamkeeper.sandbox.tls import TLSFiles
from streamkeeper.spec import load_spec_text
from streamkeeper.store import HistoryStore
from streamkeeper.vendors.dma import DMAClient
from streamkeeper.vendors.equinix import EquinixClient
from streamkeeper.vendors.http import tls_verify
from streamkeeper.vendors.plt import PLTClient
from streamkeeper.vendors.stream import StreamClient
from streamkeeper.vendors.thingspace import STREAM_KINDS, ThingSpaceClient

COUNTS = {"dma": 240, "equinix": 160, "plt": 50, "stream": 30, "thingspace": 20}
TS_ACCOUNTS = [f"0000000009-{i:05d}" for i in range(COUNTS["thingspace"] // 4)]
FAULTS: dict[str, Any] = {"rate": 0.2, "kinds": ["429", "5xx", "drop", "drop_after"], "retry_after": "0"}


def build_spec(plt_streams: list[str]) -> dict[str, Any]:
    return {
        "dma": [
            {
                "connection": "dma-load",
                "subscriptions": [
                    {
                        "name": f"dma-{i:04d}",
                        "subject": ["all_conferences", "conference", "participants"][i % 3],
                        **({"conference": str(1 + i % 3)} if i % 3 else {}),
                        "consumer_url": f"http://127.0.0.1:9/dma/{i}",
                        "time_to_live": 3600 + i,
                    }
                    for i in range(COUNTS["dma"])
                ],
            }
        ],
        "equinix": [
            {
                "connection": "eqx-load",
                "api": "streaming",
                "subscriptions": [
                    {
                        "name": f"eqx-{i:04d}",
                        "families": {"power": [{"account": str(100000 + i), "ibx": ["PA4", f"X{i % 7}"]}]},
                        "channel": {"url": "https://hooks.example/eq"},
                    }
                    for i in range(COUNTS["equinix"])
                ],
            }
        ],
        "plt": [
            {
                "connection": "plt-load",
                "streams": [
                    {"name": f"plt-{i:04d}", "stream": s, "tenant": "Load Tenant"}
                    for i, s in enumerate(plt_streams)
                ],
            }
        ],
        "stream": [
            {
                "connection": "stream-load",
                "targeting": [
                    {"name": f"ctx-{i:04d}", "context": f"merchant-{i:04d}", "segment": "beta-merchants"}
                    for i in range(COUNTS["stream"])
                ],
            }
        ],
        "thingspace": [
            {
                "connection": "ts-load",
                "account": account,
                "targets": [
                    {
                        "name": f"receiver-{a}",
                        "address": f"10.0.0.{a}:8443",
                        "credentials": {"username": "sk", "password_block": "ts-receiver"},
                        "subscriptions": [
                            {"name": f"ts-{a}-{k}", "streamkind": kind} for k, kind in enumerate(STREAM_KINDS)
                        ],
                    }
                ],
            }
            for a, account in enumerate(TS_ACCOUNTS)
        ],
    }


@pytest.mark.slow
def test_500_subscriptions_with_20_percent_faults(
    serve: Callable[..., SandboxServer], tls_files: TLSFiles, db_path: Path
) -> None:
    retry = fast_retry(attempts=10)
    dma, eqx, plt, stream, ts = (
        DMASandbox(validate_consumer_url=False),
        EquinixSandbox(),
        PLTSandbox(),
        StreamSandbox(),
        ThingSpaceSandbox(),
    )
    servers = {
        "dma": serve(dma, tls=tls_files),
        "equinix": serve(eqx),
        "plt": serve(plt),
        "stream": serve(stream),
        "thingspace": serve(ts),
    }
    tenant = plt.add_tenant(DEFAULT_PARTNER_ID, name="Load Tenant")
    plt_streams = [
        plt.add_stream(DEFAULT_PARTNER_ID, tenant.tenant_id, f"LOAD_{i:03d}").stream_type.name
        for i in range(COUNTS["plt"])
    ]
    ts.add_user(DEFAULT_USERNAME, DEFAULT_PASSWORD, TS_ACCOUNTS)

    clients: dict[str, Any] = {
        "dma": DMAClient(
            servers["dma"].url + "/api/rest",
            username="provisioner",
            password=SecretStr("provisioner-pass"),
            verify=tls_verify(tls_files.cert_pem),
            retry=retry,
        ),
        "equinix": EquinixClient(
            servers["equinix"].url, client_id=EQX_ID, client_secret=SecretStr(EQX_SECRET), retry=retry
        ),
        "plt": PLTClient(servers["plt"].url, partner_id=SecretStr(DEFAULT_PARTNER_ID), retry=retry),
        "stream": StreamClient(
            servers["stream"].url,
            client_id=STREAM_ID,
            client_secret=SecretStr(STREAM_SECRET),
            partner_id=STREAM_PARTNER,
            retry=retry,
        ),
        "thingspace": ThingSpaceClient(
            servers["thingspace"].url,
            app_key=DEFAULT_APP_KEY,
            app_secret=SecretStr(DEFAULT_APP_SECRET),
            username=DEFAULT_USERNAME,
            password=SecretStr(DEFAULT_PASSWORD),
            account_name=TS_ACCOUNTS[0],
            retry=retry,
        ),
    }
    spec = load_spec_text(yaml.safe_dump(build_spec(plt_streams)))
    adapters: list[Adapter] = [
        make_adapter(v, c, clients[v], secrets=SECRETS.__getitem__) for v, c in spec.connections()
    ]
    store = HistoryStore(db_path)
    sandboxes: list[VendorSandbox] = [dma, eqx, plt, stream, ts]
    for i, sandbox in enumerate(sandboxes):
        sandbox.faults.set(**FAULTS, seed=i)

    plan = plan_all(adapters, known_from_store(store))
    assert plan.errors == [] and Counter(c.action for c in plan.changes) == {"create": 500 + len(TS_ACCOUNTS)}
    outcomes = apply_all(adapters, plan, workers=16)
    store.record_versions(versions(outcomes))
    assert [o.detail for o in outcomes if not o.ok] == []
    injected = Counter(k for s in sandboxes for k, n in s.faults.injected.items() for _ in range(n))
    assert set(injected) == {"429", "5xx", "drop", "drop_after"}, injected  # every kind really happened

    for sandbox in sandboxes:
        sandbox.faults.clear()
    # exactly the 500 at the vendors, each name once
    held = {
        "dma": sorted(s.passback or "" for s in dma.subscriptions.values()),
        "equinix": len(eqx.subscriptions()),
        "plt": sum(s.started for p in plt.partners.values() for s in p.streams.values()),
        "stream": sum(len(s.contexts) for s in stream.segments.values()),
        "thingspace": sorted(s["name"] for s in ts.subscriptions.values()),
    }
    assert held["dma"] == [f"dma-{i:04d}" for i in range(COUNTS["dma"])]
    assert held["equinix"] == COUNTS["equinix"]
    assert held["plt"] == COUNTS["plt"]
    assert held["stream"] == COUNTS["stream"] + 0  # the seeded segments hold no context of this partner
    assert len(held["thingspace"]) == len(set(held["thingspace"])) == COUNTS["thingspace"]
    assert len(ts.targets) == len(TS_ACCOUNTS)

    # the history matches: one current row per subscription (and target), all created
    current = store.query(
        "SELECT vendor, count(*) AS n FROM current_subscriptions WHERE kind IS DISTINCT FROM 'ts.target' GROUP BY vendor"
    )
    assert dict(zip(current["vendor"], current["n"], strict=True)) == COUNTS
    ids = store.query("SELECT subscription_id FROM current_subscriptions WHERE vendor = 'dma'")[
        "subscription_id"
    ]
    assert sorted(ids, key=int) == sorted(dma.subscriptions, key=int)
    eqx_ids = store.query("SELECT subscription_id FROM current_subscriptions WHERE vendor = 'equinix'")[
        "subscription_id"
    ]
    assert set(eqx_ids) == {s["id"] for s in eqx.subscriptions()}

    # and a new plan (faults back on) finds nothing to do
    for i, sandbox in enumerate(sandboxes):
        sandbox.faults.set(**FAULTS, seed=100 + i)
    again = plan_all(adapters, known_from_store(store))
    assert again.errors == [] and again.exit_code == 0, again.render(limit=5)
    for client in clients.values():
        client.close()
