"""Per-vendor kits for the provisioning tests: a running emulator, a real client, a spec and its variants.

A kit knows how to do things "behind streamkeeper's back" with the vendor client directly (delete one of
the spec's subscriptions, create one the spec does not name), so the tests can check what plan and apply
make of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from streamkeeper.provision import Adapter, Known, Outcome, Plan, apply_plan, known_from_store, make_adapter
from streamkeeper.provision import plan_connection as plan_one
from streamkeeper.provision import versions as history_rows
from streamkeeper.sandbox.base import SandboxServer, VendorSandbox
from streamkeeper.sandbox.dma import DMASandbox
from streamkeeper.sandbox.equinix import DEFAULT_CLIENT_ID as EQX_ID
from streamkeeper.sandbox.equinix import DEFAULT_CLIENT_SECRET as EQX_SECRET
from streamkeeper.sandbox.equinix import EquinixSandbox
from streamkeeper.sandbox.plt import DEFAULT_PARTNER_ID, SECOND_TENANT_ID, PLTSandbox
from streamkeeper.sandbox.stream import DEFAULT_CLIENT_ID as STREAM_ID
from streamkeeper.sandbox.stream import DEFAULT_CLIENT_SECRET as STREAM_SECRET
from streamkeeper.sandbox.stream import DEFAULT_PARTNER_ID as STREAM_PARTNER
from streamkeeper.sandbox.stream import StreamSandbox
from streamkeeper.sandbox.thingspace import (
    DEFAULT_ACCOUNT,
    DEFAULT_APP_KEY,
    DEFAULT_APP_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    ThingSpaceSandbox,
)
from streamkeeper.sandbox.tls import TLSFiles
from streamkeeper.spec import ProvisioningSpec, load_spec_text
from streamkeeper.store import HistoryStore
from streamkeeper.vendors.dma import DMAClient
from streamkeeper.vendors.equinix import EquinixClient
from streamkeeper.vendors.http import RetryPolicy, VendorClient, tls_verify
from streamkeeper.vendors.plt import PLTClient
from streamkeeper.vendors.stream import StreamClient
from streamkeeper.vendors.thingspace import ThingSpaceClient

SECRETS = {
    "dma-notify": {"username": "ignored", "password": "S3NTINEL-dma-notify"},
    "ts-receiver": "S3NTINEL-ts-receiver",
    "eq-token": "S3NTINEL-eq-token",
}


def fast_retry(attempts: int = 6) -> RetryPolicy:
    return RetryPolicy(max_attempts=attempts, backoff_base=0.002, backoff_max=0.02)


@dataclass
class Kit:
    """One vendor under test: emulator, client, spec text, and what to do behind streamkeeper's back."""

    vendor: str
    sandbox: VendorSandbox
    client: VendorClient
    spec_text: str
    change: tuple[str, str]  # (old, new) text in the spec: one field of one subscription
    changed_action: str  # what the vendor allows for that change: update (or replace)
    delete_behind: Callable[[Kit], None]
    create_behind: Callable[[Kit], None]
    store: HistoryStore
    counts: Callable[[Kit], int]  # subscriptions at the vendor
    secrets: dict[str, Any] = field(default_factory=lambda: dict(SECRETS))

    def spec(self, changed: bool = False) -> ProvisioningSpec:
        text = self.spec_text.replace(*self.change) if changed else self.spec_text
        return load_spec_text(text)

    def adapter(self, changed: bool = False) -> Adapter:
        spec = self.spec(changed)
        vendor, connection = spec.connections()[0]
        return make_adapter(vendor, connection, self.client, secrets=self.secrets.__getitem__)

    def known(self) -> Known:
        return known_from_store(self.store)

    def plan(self, changed: bool = False, prune: bool = False) -> Plan:
        return plan_one(self.adapter(changed), self.known(), prune=prune)

    def apply(self, plan: Plan, changed: bool = False, workers: int = 8) -> list[Outcome]:
        outcomes = apply_plan(self.adapter(changed), plan, workers=workers)
        self.store.record_versions(history_rows(outcomes))
        return outcomes

    @property
    def writes(self) -> int:
        return self.sandbox.requests.writes


def _dma(kit: Kit) -> DMAClient:
    assert isinstance(kit.client, DMAClient)
    return kit.client


def _dma_id(kit: Kit, passback: str) -> str:
    listing = _dma(kit).list_subscriptions()
    assert listing is not None
    return next(s.subscription_identifier for s in listing.subscriptions if s.passback == passback)


def _dma_count(kit: Kit) -> int:
    listing = _dma(kit).list_subscriptions()
    assert listing is not None
    return len(listing.subscriptions)


DMA_SPEC = """
dma:
  - connection: dma-test
    subscriptions:
      - name: all-conferences
        consumer_url: http://127.0.0.1:9/dma
        time_to_live: 600
        notification_credentials: {username: sk, password_block: dma-notify}
      - name: board
        subject: conference
        conference: "1"
        consumer_url: http://127.0.0.1:9/dma
        time_to_live: 0
      - name: town-hall
        subject: participants
        conference: "2"
        consumer_url: http://127.0.0.1:9/dma
        time_to_live: 1200
        passthru: th
"""

TS_SPEC = """
thingspace:
  - connection: ts-test
    targets:
      - name: receiver
        address: 127.0.0.1:9443
        credentials: {username: sk, password_block: ts-receiver}
        subscriptions:
          - {name: events, streamkind: ts.event}
          - {name: diagnostics, streamkind: ts.event.diagnostics, disabled: true}
      - name: queue
        address: https://sqs.eu-west-1.amazonaws.com/123/ts
        scheme: streamawssqs
        region: eu-west-1
        subscriptions:
          - {name: config-changes, streamkind: ts.event.configuration, filter: "deviceid eq 1"}
"""

PLT_SPEC = """
plt:
  - connection: plt-test
    streams:
      - {name: contoso-qd, stream: QUICKDISCONNECT, tenant: Contoso Contact Center}
      - {name: contoso-headset, stream: HEADSET_EVENTS, tenant: Contoso Contact Center}
      - {name: fabrikam-calls, stream: CALL_EVENTS, tenant: Fabrikam Support Desk}
"""

STREAM_SPEC = """
stream:
  - connection: stream-test
    targeting:
      - {name: acme-beta, context: merchant-acme, segment: beta-merchants}
      - {name: acme-sync, context: merchant-acme, flag: new-menu-sync}
      - {name: globex-internal, context: merchant-globex, segment: internal}
"""

EQX_SPEC = """
equinix:
  - connection: eqx-test
    api: streaming
    subscriptions:
      - name: paris-environment
        families:
          environmental: [{account: "135888", ibx: [PA4], level: [IBX]}]
        channel: {url: "https://hooks.example/eq"}
      - name: paris-power
        families:
          power: [{account: "135888", ibx: [PA4, PA5]}]
          system_alert: [{account: "135888", ibx: PA5}]
        channel: {url: "https://hooks.example/eq"}
"""


def _kit(vendor: str, serve: Callable[..., SandboxServer], tls: TLSFiles, store: HistoryStore) -> Kit:
    retry = fast_retry()
    if vendor == "dma":
        sandbox: VendorSandbox = DMASandbox(validate_consumer_url=False)
        server = serve(sandbox, tls=tls)
        client: VendorClient = DMAClient(
            server.url + "/api/rest",
            username="provisioner",
            password=SecretStr("provisioner-pass"),
            verify=tls_verify(tls.cert_pem),
            retry=retry,
        )
        return Kit(
            vendor,
            sandbox,
            client,
            DMA_SPEC,
            ("time_to_live: 600", "time_to_live: 900"),
            "update",
            lambda k: _dma(k).delete_subscription(_dma_id(k, "board")),
            lambda k: _dma(k).create_subscription(
                "conferences/3",
                {"consumer_url": "http://127.0.0.1:9/x", "time_to_live": 300, "passback": "rogue"},
            ),
            store,
            _dma_count,
        )
    if vendor == "thingspace":
        sandbox = ThingSpaceSandbox()
        server = serve(sandbox)
        client = ThingSpaceClient(
            server.url,
            app_key=DEFAULT_APP_KEY,
            app_secret=SecretStr(DEFAULT_APP_SECRET),
            username=DEFAULT_USERNAME,
            password=SecretStr(DEFAULT_PASSWORD),
            account_name=DEFAULT_ACCOUNT,
            retry=retry,
        )

        def ts(k: Kit) -> ThingSpaceClient:
            assert isinstance(k.client, ThingSpaceClient)
            return k.client

        def ts_delete(k: Kit) -> None:
            sub = next(s for s in ts(k).query_subscriptions() if s.name == "diagnostics")
            ts(k).delete_subscription(sub.id)

        def ts_create(k: Kit) -> None:
            target = next(t for t in ts(k).query_targets() if t.name == "receiver")
            ts(k).create_subscription(
                {
                    "name": "rogue",
                    "streamkind": "ts.event.security",
                    "targetid": target.id,
                    "allowaggregation": True,
                }
            )

        return Kit(
            vendor,
            sandbox,
            client,
            TS_SPEC,
            (
                "{name: events, streamkind: ts.event}",
                "{name: events, streamkind: ts.event, aggregation: true}",
            ),
            "update",
            ts_delete,
            ts_create,
            store,
            lambda k: len(ts(k).query_subscriptions()),
        )
    if vendor == "plt":
        sandbox = PLTSandbox()
        server = serve(sandbox)
        client = PLTClient(server.url, partner_id=SecretStr(DEFAULT_PARTNER_ID), retry=retry)

        def plt(k: Kit) -> PLTClient:
            assert isinstance(k.client, PLTClient)
            return k.client

        def plt_find(k: Kit, stream: str, tenant: str) -> tuple[str, str]:
            s = next(s for s in plt(k).list_streams() if s.stream_name == stream and s.tenant_name == tenant)
            return s.stream_id, s.tenant_id

        def plt_create(k: Kit) -> None:
            assert isinstance(k.sandbox, PLTSandbox)
            stream = k.sandbox.add_stream(DEFAULT_PARTNER_ID, SECOND_TENANT_ID, "DEVICE_EVENTS")
            plt(k).start_stream(stream.stream_id, SECOND_TENANT_ID)

        return Kit(
            vendor,
            sandbox,
            client,
            PLT_SPEC,
            ("stream: CALL_EVENTS", "stream: QUICKDISCONNECT"),  # another stream: PLT has nothing to update
            "replace",
            lambda k: plt(k).stop_stream(*plt_find(k, "QUICKDISCONNECT", "Fabrikam Support Desk")),
            plt_create,
            store,
            lambda k: sum(s.started for s in plt(k).list_streams()),
        )
    if vendor == "stream":
        sandbox = StreamSandbox()
        server = serve(sandbox)
        client = StreamClient(
            server.url,
            client_id=STREAM_ID,
            client_secret=SecretStr(STREAM_SECRET),
            partner_id=STREAM_PARTNER,
            retry=retry,
        )

        def st(k: Kit) -> StreamClient:
            assert isinstance(k.client, StreamClient)
            return k.client

        def st_count(k: Kit) -> int:
            found = st(k).search_contexts(limit=50)
            return sum(len((c.model_extra or {}).get(x) or []) for c in found for x in ("flags", "segments"))

        return Kit(
            vendor,
            sandbox,
            client,
            STREAM_SPEC,
            (
                "context: merchant-globex, segment: internal",
                "context: merchant-globex, segment: beta-merchants",
            ),
            "replace",  # a context and its segment are the identity
            lambda k: st(k).remove_segment_contexts("beta-merchants", [{"key": "merchant-globex"}]),
            lambda k: st(k).add_flag_contexts("sso-login", [{"key": "rogue"}]),
            store,
            st_count,
        )
    assert vendor == "equinix"
    sandbox = EquinixSandbox()
    server = serve(sandbox)
    client = EquinixClient(
        server.url,
        client_id=EQX_ID,
        client_secret=SecretStr(EQX_SECRET),
        api_generation="streaming",
        retry=retry,
    )

    def eq(k: Kit) -> EquinixClient:
        assert isinstance(k.client, EquinixClient)
        return k.client

    def eq_delete(k: Kit) -> None:
        subs = eq(k).list_streaming_subscriptions()
        victim = next(s for s in subs if s.message_type and s.message_type.environmental)
        eq(k).delete_streaming_subscription(victim.id)

    return Kit(
        vendor,
        sandbox,
        client,
        EQX_SPEC,
        ("ibx: [PA4], level", "ibx: [PA4, PA6], level"),
        "update",
        eq_delete,
        lambda k: eq(k).create_streaming_subscription(
            {
                "message_type": {"asset": [{"account_number": "1", "ibx": ["DC1"]}]},
                "channel": {
                    "channel_type": "WEBHOOK",
                    "webhook_channel_configuration": {"url": "https://hooks.example/eq"},
                },
            }
        ),
        store,
        lambda k: len(eq(k).list_streaming_subscriptions()),
    )


VENDORS = ["plt", "dma", "stream", "thingspace", "equinix"]


@pytest.fixture(params=VENDORS)
def kit(
    request: pytest.FixtureRequest, serve: Callable[..., SandboxServer], tls_files: TLSFiles, db_path: Path
) -> Iterator[Kit]:
    made = _kit(request.param, serve, tls_files, HistoryStore(db_path))
    yield made
    made.client.close()


@pytest.fixture
def make_kit(serve: Callable[..., SandboxServer], tls_files: TLSFiles, db_path: Path) -> Callable[[str], Kit]:
    return lambda vendor: _kit(vendor, serve, tls_files, HistoryStore(db_path))
