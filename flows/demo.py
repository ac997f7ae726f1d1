"""``streamkeeper demo``: the sandbox, blocks that point at it, every flow end to end, and a report.

Not a flow itself: it sets the stage (emulators of the five vendors, the push receiver on the port the
example spec names, credentials blocks) and then runs the flows as a user would:

1. onboard-organization: a Stream partner organisation from token to live locations;
2. provision-subscriptions: plan, apply and plan again ``data/specs/example.yaml`` across all five vendors;
3. refresh-subscriptions: extend the DMA subscriptions and renew the vendor tokens;
4. the vendors send events (PubNub, DMA notifications, ThingSpace streamrest, Stream webhooks, Equinix
   pull data), and ingest-events loads them, each delivery once;
5. audit-subscriptions, twice: the second audit of unchanged subscriptions costs 304s;
6. a summary read back from DuckDB.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from blocks.plt import PLTCredentials
from flows.audit import audit_subscriptions
from flows.ingest import ingest_events
from flows.onboard import onboard_organization
from flows.provision import provision_subscriptions, save_sandbox_connections
from flows.refresh import refresh_subscriptions
from streamkeeper.environment import streamkeeper_home
from streamkeeper.receiver import ReceiverConfig, StreamWebhook, create_app
from streamkeeper.receiver.config import config_from_spec
from streamkeeper.sandbox import plt as plt_sandbox
from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.runner import Sandbox
from streamkeeper.sandbox.thingspace import DEFAULT_ACCOUNT
from streamkeeper.spec import load_spec
from streamkeeper.store import HistoryStore
from tasks.provision import load_secret

SPECS = Path(__file__).resolve().parents[1] / "data" / "specs"
EXAMPLE_SPEC = SPECS / "example.yaml"
ONBOARDING_SPEC = SPECS / "onboarding-example.yaml"
RECEIVER_PORT = 8099  # the port the example spec's consumer URLs and ThingSpace target name
Echo = Callable[[str], None]


def run_demo(echo: Echo = print) -> None:
    """Run the demo, printing progress and a summary read back from DuckDB."""
    store = HistoryStore()
    landing = streamkeeper_home() / "landing"
    echo(f"history store: {store.path}")
    with Sandbox.start(state_dir=streamkeeper_home() / "sandbox", stream={"auto_authorize": True}) as sandbox:
        urls = sandbox.urls()
        for vendor, url in urls.items():
            echo(f"sandbox   {vendor:<11} {url}")
        assert sandbox.tls is not None
        save_sandbox_connections(urls, sandbox.tls.cert_pem)
        PLTCredentials(
            base_url=urls["plt"],
            partner_id=SecretStr(plt_sandbox.DEFAULT_PARTNER_ID),
            pubnub_origin=urls["pubnub"],
        ).save("demo-plt", overwrite=True)
        echo(
            "saved blocks demo-plt, demo-dma, demo-stream, demo-thingspace, demo-equinix (+ 2 Secret blocks)"
        )

        webhook_secret = SecretStr(secrets.token_urlsafe(18))  # demo-only; never printed
        receiver_app = create_app(_receiver_config(webhook_secret), landing=landing)
        receiver = SandboxServer(receiver_app, port=RECEIVER_PORT).start()
        echo(f"receiver  {receiver.url} (landing area {landing})")
        try:
            _onboard(echo)
            _provision(echo)
            _refresh(echo)
            _send_events(sandbox, receiver.url, webhook_secret, receiver_app, echo)
            summary = ingest_events(
                plt_blocks=["demo-plt"],
                equinix_blocks=["demo-equinix"],
                landing_dir=str(landing),
                pubnub_idle_seconds=0.5,
            )
            echo(f"ingest-events: loaded {summary.loaded} events, dropped {summary.duplicates} duplicates")
            for round_ in ("first", "second"):
                audit = audit_subscriptions(spec_path=str(EXAMPLE_SPEC))
                echo(f"audit-subscriptions ({round_}): {audit.line()}")
        finally:
            receiver.stop()
            receiver_app.state.receiver.close()
    _report(store, echo)


def _receiver_config(webhook_secret: SecretStr) -> ReceiverConfig:
    """Routes for what the example spec points at the receiver, plus a Stream webhook."""

    def password(block: str) -> str:
        value: Any = load_secret(block)
        return str(value["password"] if isinstance(value, dict) else value)

    base = ReceiverConfig(stream={"demo": StreamWebhook(account="demo-org", secret=webhook_secret)})
    return config_from_spec(load_spec(EXAMPLE_SPEC), password, base)


def _onboard(echo: Echo) -> None:
    result = onboard_organization(
        spec_path=str(ONBOARDING_SPEC), block_name="demo-stream", reissue_sso_links=True
    )
    echo(
        f"onboard-organization: {result.org_key} is {result.status}: "
        f"{len(result.created)} created, {len(result.skipped)} already done"
    )
    for link in result.sso_links:  # single-use: opening it here uses it up
        page = httpx.get(link.url.get_secret_value())
        echo(f"  SSO login link for {link.email}: HTTP {page.status_code} (links are single-use)")


def _provision(echo: Echo) -> None:
    planned = provision_subscriptions(spec_path=str(EXAMPLE_SPEC))
    echo("provision-subscriptions (plan):")
    echo(planned.plan.render())
    applied = provision_subscriptions(spec_path=str(EXAMPLE_SPEC), dry_run=False)
    echo(f"provision-subscriptions (apply): {applied.summary()}")
    again = provision_subscriptions(spec_path=str(EXAMPLE_SPEC))
    echo(f"provision-subscriptions (plan again): {again.plan.summary()}")


def _refresh(echo: Echo) -> None:
    summary = refresh_subscriptions(spec_path=str(EXAMPLE_SPEC), refresh_within_seconds=93600)
    echo(
        f"refresh-subscriptions: {summary.refreshed} DMA subscriptions refreshed, "
        f"{len(summary.tokens) - summary.tokens_failed} vendor tokens renewed"
    )


def _send_events(
    sandbox: Sandbox, receiver_url: str, webhook_secret: SecretStr, receiver_app: Any, echo: Echo
) -> None:
    """Each vendor sends some events: PLT into PubNub, the others to the receiver or the pull feed."""
    plt_app: Any = sandbox.apps["plt"]
    published = 0
    for partner in list(plt_app.partners.values()):
        for stream in [s for s in partner.streams.values() if s.started]:
            published += len(plt_app.emit(stream.stream_id, stream.tenant_id, 50))
    dma: Any = sandbox.apps["dma"]
    notified = len(dma.emit("1")) + len(dma.emit("2"))
    thingspace: Any = sandbox.apps["thingspace"]
    thingspace.emit(DEFAULT_ACCOUNT, 5)
    stream: Any = sandbox.apps["stream"]
    for n in range(3):
        event = stream.webhook_event("order.created", {"order_id": f"demo-{n}"})
        stream.send_webhook(f"{receiver_url}/stream/demo", webhook_secret, event)
    equinix: Any = sandbox.apps["equinix"]
    pulled = 0
    for subscription_id in list(equinix.streaming):
        equinix.emit(subscription_id, 20)
        pulled += 20
    deadline = time.monotonic() + 10  # ThingSpace delivers in the background: wait until it has
    while (
        receiver_app.state.receiver.counts.get("thingspace.accepted", 0) < 5 and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    echo(
        f"events sent: PLT {published} (PubNub), DMA {notified} notifications, ThingSpace 5, Stream 3 webhooks, "
        f"Equinix {pulled} (pull)"
    )


def _report(store: HistoryStore, echo: Echo) -> None:
    echo("")
    echo("== from DuckDB ==")
    sections = {
        "current subscriptions per vendor": "SELECT vendor, count(*) AS subscriptions FROM current_subscriptions GROUP BY 1 ORDER BY 1",
        "DMA subscriptions refreshed (latest run)": """
            SELECT name, previous_expires_at AS old_expiry, expires_at AS new_expiry FROM subscriptions
            WHERE vendor = 'dma' AND change = 'refreshed'
            QUALIFY row_number() OVER (PARTITION BY subscription_id ORDER BY valid_from DESC) = 1
            ORDER BY name""",
        "events per vendor and stream": "SELECT vendor, stream, count(*) AS events FROM events GROUP BY ALL ORDER BY ALL",
        "onboarding steps": "SELECT status, count(*) AS steps FROM onboarding_steps GROUP BY 1 ORDER BY 1",
        "token events": "SELECT vendor, event, count(*) AS n FROM token_events GROUP BY ALL ORDER BY ALL",
    }
    for title, sql in sections.items():
        frame = store.query(sql)
        echo(f"-- {title}")
        echo(frame.to_string(index=False) if not frame.empty else "(none)")
