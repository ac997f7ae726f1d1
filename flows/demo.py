"""``streamkeeper demo``: the sandbox, blocks that point at it, every flow end to end, and a report.

Not a flow itself: it sets the stage (emulators of the five vendors, the push receiver on the port the
example spec names, credentials blocks) and then runs the flows as a user would:

1. onboard-organization: a Stream partner organisation from token to live locations;
2. provision-subscriptions: plan, apply and plan again ``data/specs/example.yaml`` across all five vendors;
3. refresh-subscriptions: extend the DMA subscriptions and renew the vendor tokens;
4. the vendors send events (PubNub, DMA notifications, ThingSpace streamrest, Stream webhooks, Equinix
   webhooks over mutual TLS and its pull feed), and ingest-events loads them, each delivery once;
5. audit-subscriptions, twice: the second audit of unchanged subscriptions costs 304s, and writes the
   dashboard (``.streamkeeper/dashboard.html``, linked from the run's artifacts);
6. a summary read back from DuckDB, ending with each stream's health (`stream_health`).

The steps are functions of a `Stage` (the running emulators, the credentials they accept, the receiver, the
spec, the landing area and the history store), so tests run the same steps with other credentials, block
names, ports and files (``tests/reliability/``).
"""

from __future__ import annotations

import hashlib
import secrets
import ssl
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from flows.audit import AuditSummary, audit_subscriptions
from flows.ingest import IngestSummary, ingest_events
from flows.onboard import OnboardingResult, onboard_organization
from flows.provision import ProvisionResult, provision_subscriptions
from flows.refresh import RefreshSummary, refresh_subscriptions
from streamkeeper.environment import streamkeeper_home
from streamkeeper.receiver import Receiver, ReceiverConfig, StreamWebhook, create_app
from streamkeeper.receiver.config import EquinixPush, config_from_spec
from streamkeeper.receiver.server import ReceiverServer
from streamkeeper.sandbox import equinix as equinix_sandbox
from streamkeeper.sandbox import plt as plt_sandbox
from streamkeeper.sandbox import stream as stream_sandbox
from streamkeeper.sandbox import thingspace as thingspace_sandbox
from streamkeeper.sandbox.runner import Sandbox
from streamkeeper.sandbox.tls import TLSFiles
from streamkeeper.spec import ProvisioningSpec, load_spec_text
from streamkeeper.store import HistoryStore
from streamkeeper.yamlspec import setting
from tasks.provision import load_secret, save_secret

SPECS = Path(__file__).resolve().parents[1] / "data" / "specs"
EXAMPLE_SPEC = SPECS / "example.yaml"
ONBOARDING_SPEC = SPECS / "onboarding-example.yaml"
RECEIVER_PORT = 8099  # the port of the example spec's ${STREAMKEEPER_RECEIVER_URL} when the setting is unset
RECEIVER_TLS_PORT = 8098  # the port of its ${STREAMKEEPER_RECEIVER_TLS_URL} (Equinix webhooks, mutual TLS)
RECEIVER_SETTING = "${STREAMKEEPER_RECEIVER_URL}"
RECEIVER_TLS_SETTING = "${STREAMKEEPER_RECEIVER_TLS_URL}"
PREFIX = "demo"  # the example spec's block names start with it
Echo = Callable[[str], None]


@dataclass(frozen=True)
class Credentials:
    """Every credential the demo hands out: the vendor blocks', the spec's Secret blocks' and the receiver's.

    The defaults are the emulators' ready-made credentials (and a fresh Stream webhook secret);
    `register` teaches running emulators other values.
    """

    dma_username: str = "provisioner"
    dma_password: SecretStr = field(default_factory=lambda: SecretStr("provisioner-pass"))
    plt_partner_id: SecretStr = field(default_factory=lambda: SecretStr(plt_sandbox.DEFAULT_PARTNER_ID))
    stream_client_id: str = stream_sandbox.DEFAULT_CLIENT_ID
    stream_client_secret: SecretStr = field(
        default_factory=lambda: SecretStr(stream_sandbox.DEFAULT_CLIENT_SECRET)
    )
    stream_partner_id: str = stream_sandbox.DEFAULT_PARTNER_ID
    thingspace_app_key: str = thingspace_sandbox.DEFAULT_APP_KEY
    thingspace_app_secret: SecretStr = field(
        default_factory=lambda: SecretStr(thingspace_sandbox.DEFAULT_APP_SECRET)
    )
    thingspace_username: str = thingspace_sandbox.DEFAULT_USERNAME
    thingspace_password: SecretStr = field(
        default_factory=lambda: SecretStr(thingspace_sandbox.DEFAULT_PASSWORD)
    )
    thingspace_account: str = thingspace_sandbox.DEFAULT_ACCOUNT
    equinix_client_id: str = equinix_sandbox.DEFAULT_CLIENT_ID
    equinix_client_secret: SecretStr = field(
        default_factory=lambda: SecretStr(equinix_sandbox.DEFAULT_CLIENT_SECRET)
    )
    dma_notify_password: SecretStr = field(default_factory=lambda: SecretStr(f"{PREFIX}-dma-notify-password"))
    """What the DMA sends to the receiver (the spec's ``password_block``)."""
    thingspace_receiver_password: SecretStr = field(
        default_factory=lambda: SecretStr(f"{PREFIX}-thingspace-receiver-password")
    )
    """What ThingSpace sends to the receiver (the spec's ``password_block``)."""
    webhook_secret: SecretStr = field(default_factory=lambda: SecretStr(secrets.token_urlsafe(18)))
    """The key Stream signs its webhooks with (demo-only; never printed)."""
    timeout_seconds: float = 30.0
    """The blocks' HTTP timeout."""

    def register(self, sandbox: Sandbox) -> None:
        """Make the running emulators accept these credentials, besides their ready-made ones."""
        dma: Any = sandbox.apps["dma"]
        dma.users[self.dma_username] = (self.dma_password.get_secret_value(), {"Provisioner"})
        plt: Any = sandbox.apps["plt"]
        partner_id = self.plt_partner_id.get_secret_value()
        if partner_id not in plt.partners:  # the ready-made partner's tenants and streams, under this id
            default = plt.partners[plt_sandbox.DEFAULT_PARTNER_ID]
            plt.add_partner(partner_id, default.name)
            for tenant in default.tenants.values():
                plt.add_tenant(partner_id, tenant.tenant_id, tenant.name)
            for stream in default.streams.values():
                plt.add_stream(
                    partner_id, stream.tenant_id, stream.stream_type.name, channels=len(stream.sub_channels)
                )
        stream_app: Any = sandbox.apps["stream"]
        stream_app.add_client(
            self.stream_client_id, self.stream_client_secret.get_secret_value(), self.stream_partner_id
        )
        thingspace: Any = sandbox.apps["thingspace"]
        thingspace.add_app(self.thingspace_app_key, self.thingspace_app_secret.get_secret_value())
        thingspace.add_user(
            self.thingspace_username, self.thingspace_password.get_secret_value(), [self.thingspace_account]
        )
        equinix: Any = sandbox.apps["equinix"]
        equinix.add_client(
            self.equinix_client_id, self.equinix_client_secret.get_secret_value(), equinix_sandbox.DEFAULT_ORG
        )

    def save_blocks(self, sandbox: Sandbox, prefix: str = PREFIX) -> list[str]:
        """Save the blocks the example spec names (``<prefix>-plt`` ... ``<prefix>-equinix``, and the two
        Secret blocks it refers to), pointing at the running emulators; returns the block names."""
        assert sandbox.tls is not None
        return self.save_blocks_at(sandbox.urls(), sandbox.tls.cert_pem, prefix)

    def save_blocks_at(self, urls: dict[str, str], dma_ca_pem: str, prefix: str = PREFIX) -> list[str]:
        """`save_blocks` for emulators at `urls` (`Sandbox.urls()`), the DMA's certificate `dma_ca_pem`."""
        from blocks import (
            DMACredentials,
            EquinixCredentials,
            PLTCredentials,
            StreamCredentials,
            ThingSpaceCredentials,
        )

        timeout = self.timeout_seconds
        blocks: dict[str, Any] = {
            f"{prefix}-plt": PLTCredentials(
                base_url=urls["plt"],
                partner_id=self.plt_partner_id,
                pubnub_origin=urls["pubnub"],
                timeout_seconds=timeout,
            ),
            f"{prefix}-dma": DMACredentials(
                base_url=urls["dma"],
                username=self.dma_username,
                password=self.dma_password,
                ca_bundle=dma_ca_pem,
                timeout_seconds=timeout,
            ),
            f"{prefix}-stream": StreamCredentials(
                base_url=urls["stream"],
                client_id=self.stream_client_id,
                client_secret=self.stream_client_secret,
                partner_id=self.stream_partner_id,
                timeout_seconds=timeout,
            ),
            f"{prefix}-thingspace": ThingSpaceCredentials(
                base_url=urls["thingspace"],
                app_key=self.thingspace_app_key,
                app_secret=self.thingspace_app_secret,
                username=self.thingspace_username,
                password=self.thingspace_password,
                account_name=self.thingspace_account,
                timeout_seconds=timeout,
            ),
            f"{prefix}-equinix": EquinixCredentials(
                base_url=urls["equinix"],
                client_id=self.equinix_client_id,
                client_secret=self.equinix_client_secret,
                api_generation="streaming",
                timeout_seconds=timeout,
            ),
        }
        for name, block in blocks.items():
            block.save(name, overwrite=True)
        # the secrets the spec's *_block fields name: what the vendors send to our receiver
        notify = {
            f"{prefix}-dma-notify": self.dma_notify_password,
            f"{prefix}-thingspace-receiver": self.thingspace_receiver_password,
        }
        for name, password in notify.items():
            save_secret(name, {"password": password.get_secret_value()})
        return [*blocks, *notify]


@dataclass
class Stage:
    """Where the demo's steps run: emulators, the credentials they accept, the receiver, spec and files."""

    sandbox: Sandbox
    credentials: Credentials
    prefix: str
    spec: Path
    """The provisioning spec, naming ``<prefix>-*`` blocks and this receiver."""
    onboarding_spec: Path
    landing: Path
    receiver: Receiver
    receiver_url: str
    db_path: str | None = None
    """The history store; None: ``$STREAMKEEPER_DB`` or the default."""
    dashboard_path: str | None = None
    """Where the last audit writes the dashboard; None: no dashboard."""

    def block(self, vendor: str) -> str:
        """The name of a vendor's credentials block on this stage."""
        return f"{self.prefix}-{vendor}"


@contextmanager
def open_stage(
    sandbox: Sandbox,
    credentials: Credentials,
    landing: Path,
    echo: Echo,
    *,
    prefix: str = PREFIX,
    receiver_port: int = RECEIVER_PORT,
    db_path: str | None = None,
    work_dir: Path | None = None,
    dashboard_path: str | None = None,
) -> Iterator[Stage]:
    """Teach the emulators the credentials, save the blocks, start the receiver; stop it on the way out.

    The receiver listens twice: on `receiver_port` over HTTP (the DMA, ThingSpace, Stream) and over HTTPS
    asking for client certificates (Equinix's webhooks, mutual TLS: the sandbox's certificate serves, the
    Equinix emulator's webhook certificate is pinned), on 8098 beside the demo's port, else a free one.
    With the demo's prefix and receiver ports (and the receiver settings unset) the spec is
    ``data/specs/example.yaml`` itself; otherwise a copy naming ``<prefix>-*`` blocks and this receiver's
    URLs is written to `work_dir`.
    """
    credentials.register(sandbox)
    names = credentials.save_blocks(sandbox, prefix)
    echo(f"saved blocks {', '.join(names[:5])} (+ {len(names) - 5} Secret blocks)")

    template = EXAMPLE_SPEC.read_text()
    if prefix != PREFIX:
        template = template.replace(f"{PREFIX}-", f"{prefix}-")
    equinix: Any = sandbox.apps["equinix"]
    assert sandbox.tls is not None
    equinix.webhook_verify = sandbox.tls.cert_pem  # the certificate the receiver's HTTPS listener serves
    receiver_app = create_app(
        _receiver_config(
            load_spec_text(template), credentials.webhook_secret, prefix, equinix.webhook_certificate
        ),
        landing=landing,
    )
    receiver = ReceiverServer(receiver_app, port=receiver_port).start()
    tls_port = RECEIVER_TLS_PORT if receiver_port == RECEIVER_PORT else 0
    try:
        secure = ReceiverServer(
            receiver_app,
            port=tls_port,
            certfile=sandbox.tls.certfile,
            keyfile=sandbox.tls.keyfile,
            client_ca=equinix.webhook_certificate.certfile,
        ).start()
    except BaseException:
        receiver.stop()
        receiver_app.state.receiver.close()
        raise
    try:
        if (
            prefix == PREFIX
            and receiver.url == setting("STREAMKEEPER_RECEIVER_URL")
            and secure.url == setting("STREAMKEEPER_RECEIVER_TLS_URL")
        ):
            spec = EXAMPLE_SPEC
        else:
            folder = work_dir or Path(tempfile.mkdtemp(prefix="streamkeeper-demo-"))
            spec = folder / f"{prefix}-spec.yaml"
            text = template.replace(RECEIVER_SETTING, receiver.url)
            spec.write_text(text.replace(RECEIVER_TLS_SETTING, secure.url))
        echo(f"receiver  {receiver.url} and {secure.url} (mutual TLS) (landing area {landing})")
        yield Stage(
            sandbox=sandbox,
            credentials=credentials,
            prefix=prefix,
            spec=spec,
            onboarding_spec=ONBOARDING_SPEC,
            landing=landing,
            receiver=receiver_app.state.receiver,
            receiver_url=receiver.url,
            db_path=db_path,
            dashboard_path=dashboard_path,
        )
    finally:
        secure.stop()
        receiver.stop()
        receiver_app.state.receiver.close()


def run_demo(echo: Echo = print) -> None:
    """Run the demo, printing progress and a summary read back from DuckDB."""
    store = HistoryStore()
    landing = streamkeeper_home() / "landing"
    echo(f"history store: {store.location}")
    with Sandbox.start(state_dir=streamkeeper_home() / "sandbox", stream={"auto_authorize": True}) as sandbox:
        for vendor, url in sandbox.urls().items():
            echo(f"sandbox   {vendor:<11} {url}")
        dashboard = str(streamkeeper_home() / "dashboard.html")
        with open_stage(sandbox, Credentials(), landing, echo, dashboard_path=dashboard) as stage:
            run_steps(stage, echo)
    _report(store, echo)


def run_steps(stage: Stage, echo: Echo) -> None:
    """Every step of the demo, in order."""
    for _, step in steps(stage, echo):
        step()


def steps(stage: Stage, echo: Echo) -> list[tuple[str, Callable[[], object]]]:
    """The demo's steps, named: onboard, plan/apply/plan, refresh, events and ingest, audit twice."""
    return [
        ("onboard-organization", lambda: onboard(stage, echo)),
        ("provision-subscriptions (plan)", lambda: plan(stage, echo)),
        ("provision-subscriptions (apply)", lambda: apply(stage, echo)),
        ("provision-subscriptions (plan again)", lambda: plan(stage, echo, again=True)),
        ("refresh-subscriptions", lambda: refresh(stage, echo)),
        ("vendors send events", lambda: send_events(stage, echo)),
        ("ingest-events", lambda: ingest(stage, echo)),
        ("audit-subscriptions (first)", lambda: audit(stage, echo, "first")),
        ("audit-subscriptions (second)", lambda: audit(stage, echo, "second")),
    ]


def _receiver_config(
    spec: ProvisioningSpec, webhook_secret: SecretStr, prefix: str, equinix_certificate: TLSFiles
) -> ReceiverConfig:
    """Routes for what the spec points at the receiver (passwords from its Secret blocks), plus a Stream
    webhook and the Equinix webhooks' route, pinning the Equinix emulator's client certificate."""

    def password(block: str) -> str:
        value: Any = load_secret(block)
        return str(value["password"] if isinstance(value, dict) else value)

    pinned = hashlib.sha256(ssl.PEM_cert_to_DER_cert(equinix_certificate.cert_pem)).hexdigest()
    base = ReceiverConfig(
        stream={PREFIX: StreamWebhook(account=f"{PREFIX}-org", secret=webhook_secret)},
        equinix={PREFIX: EquinixPush(account=f"{prefix}-equinix", client_certificate_sha256=[pinned])},
    )
    return config_from_spec(spec, password, base)


def onboard(stage: Stage, echo: Echo) -> OnboardingResult:
    result = onboard_organization(
        spec_path=str(stage.onboarding_spec),
        block_name=stage.block("stream"),
        reissue_sso_links=True,
        db_path=stage.db_path,
    )
    echo(
        f"onboard-organization: {result.org_key} is {result.status}: "
        f"{len(result.created)} created, {len(result.skipped)} already done"
    )
    for link in result.sso_links:  # single-use: opening it here uses it up
        try:
            opened = f"HTTP {httpx.get(link.url.get_secret_value()).status_code}"
        except httpx.HTTPError as exc:  # the page, not a flow: say so and go on
            opened = f"not opened ({type(exc).__name__})"
        echo(f"  SSO login link for {link.email}: {opened} (links are single-use)")
    return result


def plan(stage: Stage, echo: Echo, again: bool = False) -> ProvisionResult:
    planned = provision_subscriptions(spec_path=str(stage.spec), db_path=stage.db_path)
    if again:
        echo(f"provision-subscriptions (plan again): {planned.plan.summary()}")
    else:
        echo("provision-subscriptions (plan):")
        echo(planned.plan.render())
    return planned


def apply(stage: Stage, echo: Echo) -> ProvisionResult:
    applied = provision_subscriptions(spec_path=str(stage.spec), dry_run=False, db_path=stage.db_path)
    echo(f"provision-subscriptions (apply): {applied.summary()}")
    return applied


def refresh(stage: Stage, echo: Echo) -> RefreshSummary:
    summary = refresh_subscriptions(
        spec_path=str(stage.spec), refresh_within_seconds=93600, db_path=stage.db_path
    )
    echo(
        f"refresh-subscriptions: {summary.refreshed} DMA subscriptions refreshed, "
        f"{len(summary.tokens) - summary.tokens_failed} vendor tokens renewed"
    )
    return summary


@dataclass
class SentEvents:
    """What the vendors sent in one `send_events`: the ids each should land in ``events`` under."""

    plt: list[int] = field(default_factory=list)
    """PubNub timetokens."""
    dma: list[Any] = field(default_factory=list)
    """`streamkeeper.sandbox.dma.Delivery` records (subscription id, sequence number, receiver status)."""
    thingspace: list[Any] = field(default_factory=list)
    """`streamkeeper.sandbox.thingspace.Delivery` records (event ids, ok)."""
    stream: dict[str, int] = field(default_factory=dict)
    """Webhook event id -> the receiver's status."""
    equinix: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Messages by subscription id (pushed to the receiver's webhook route and in the pull feed)."""


def send_events(stage: Stage, echo: Echo) -> SentEvents:
    """Each vendor sends some events: PLT into PubNub, the others to the receiver or the pull feed."""
    sandbox, sent = stage.sandbox, SentEvents()
    plt_app: Any = sandbox.apps["plt"]
    for partner in list(plt_app.partners.values()):
        for stream in [s for s in partner.streams.values() if s.started]:
            sent.plt += plt_app.emit(stream.stream_id, stream.tenant_id, 50)
    dma: Any = sandbox.apps["dma"]
    sent.dma = dma.emit("1") + dma.emit("2")
    thingspace: Any = sandbox.apps["thingspace"]
    accepted = stage.receiver.counts.get("thingspace.accepted", 0)
    sent.thingspace = thingspace.emit(stage.credentials.thingspace_account, 5)
    stream_app: Any = sandbox.apps["stream"]
    for n in range(3):
        event = stream_app.webhook_event("order.created", {"order_id": f"demo-{n}"})
        url = f"{stage.receiver_url}/stream/{PREFIX}"
        sent.stream[event["id"]] = stream_app.send_webhook(url, stage.credentials.webhook_secret, event)
    equinix: Any = sandbox.apps["equinix"]
    pushed = len(equinix.deliveries)
    for subscription_id in list(equinix.streaming):
        sent.equinix[subscription_id] = equinix.emit(subscription_id, 20)  # webhooks delivered on return
    pulled = sum(len(m) for m in sent.equinix.values())
    webhooks = [d for d in equinix.deliveries[pushed:] if d.channel == "WEBHOOK"]
    delivered = accepted + sum(1 for d in sent.thingspace if d.ok)
    deadline = time.monotonic() + 10  # ThingSpace delivers in the background: wait until it has
    while stage.receiver.counts.get("thingspace.accepted", 0) < delivered and time.monotonic() < deadline:
        time.sleep(0.05)
    echo(
        f"events sent: PLT {len(sent.plt)} (PubNub), DMA {len(sent.dma)} notifications, "
        f"ThingSpace {len(sent.thingspace)}, Stream {len(sent.stream)} webhooks, Equinix {pulled} "
        f"(in {sum(d.ok for d in webhooks)} of {len(webhooks)} webhook deliveries over mutual TLS, and pull)"
    )
    return sent


def ingest(stage: Stage, echo: Echo) -> IngestSummary:
    summary = ingest_events(
        plt_blocks=[stage.block("plt")],
        equinix_blocks=[stage.block("equinix")],
        landing_dir=str(stage.landing),
        pubnub_idle_seconds=0.5,
        db_path=stage.db_path,
    )
    echo(f"ingest-events: loaded {summary.loaded} events, dropped {summary.duplicates} duplicates")
    return summary


def audit(stage: Stage, echo: Echo, round_: str = "first") -> AuditSummary:
    """An audit; the second (last step of the demo) also writes the dashboard, when the stage has one."""
    dashboard = stage.dashboard_path if round_ == "second" else None
    summary = audit_subscriptions(spec_path=str(stage.spec), db_path=stage.db_path, dashboard_path=dashboard)
    echo(f"audit-subscriptions ({round_}): {summary.line()}")
    if summary.dashboard is not None:
        page = summary.dashboard
        echo(f"dashboard: {page.path} ({page.drawn} of {page.charts} charts with data; open it in a browser)")
    return summary


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
        "stream health (streamkeeper report stream_health)": """
            SELECT vendor, connection, coalesce(name, stream) AS stream, status, events_24h,
                   lag_p50_s, lag_p95_s, coalesce(lag_note, '') AS lag_note
            FROM stream_health""",
    }
    for title, sql in sections.items():
        frame = store.query(sql)
        echo(f"-- {title}")
        echo(frame.to_string(index=False) if not frame.empty else "(none)")
