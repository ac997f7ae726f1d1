"""The sandbox as `streamkeeper sandbox` runs it: the credentials it prints connect to every emulator, and
the DMA's CA certificate stays the same across restarts (a block holding it keeps working)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from blocks.registry import block_class, build_block_values
from streamkeeper.sandbox.runner import CERT_KEPT_WHILE_VALID_FOR, Sandbox, dma_certificate
from streamkeeper.sandbox.tls import self_signed


def connect(vendor: str, fields: list[Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """What the printed `streamkeeper connect` command does: secrets from the environment, the rest --set."""
    for c in fields:
        if c.secret:
            monkeypatch.setenv(f"STREAMKEEPER_{vendor.upper()}_{c.field.upper()}", c.value)
    cls = block_class(vendor)
    settings = [f"{c.field}={c.value}" for c in fields if not c.secret]
    return cls(**build_block_values(vendor, cls, settings, interactive=False))


def test_the_printed_credentials_connect_to_every_emulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Sandbox.start(state_dir=tmp_path) as sandbox:
        credentials = sandbox.credentials()
        assert set(credentials) == {"dma", "plt", "stream", "thingspace", "equinix"}
        for vendor, fields in credentials.items():
            block = connect(vendor, fields, monkeypatch)
            with block.get_client() as client:
                if vendor == "dma":
                    assert client.list_subscriptions() is not None  # over TLS, trusting the printed CA
                elif vendor == "plt":
                    assert client.list_streams() is not None
                elif vendor == "stream":
                    assert client.refresh_tokens().access_token
                elif vendor == "equinix":
                    assert client.list_streaming_subscriptions() == []
                else:
                    assert client.query_targets() == []


def test_the_dma_certificate_is_kept_across_restarts_until_it_nears_expiry(tmp_path: Path) -> None:
    with Sandbox.start(state_dir=tmp_path) as first:
        assert first.tls is not None
        pem = first.tls.cert_pem
    with Sandbox.start(state_dir=tmp_path) as second:
        assert second.tls is not None and second.tls.cert_pem == pem  # a block holding it still works
    # whichever valid certificate is there is used; an unreadable one is made anew
    other = self_signed(tmp_path / "tls", common_name="dma-sandbox")
    expires = x509.load_pem_x509_certificate(other.cert_pem.encode()).not_valid_after_utc
    assert expires - dt.datetime.now(dt.UTC) > CERT_KEPT_WHILE_VALID_FOR
    assert dma_certificate(tmp_path / "tls").cert_pem == other.cert_pem != pem
    (tmp_path / "tls" / "dma-sandbox.crt").write_text("not a certificate")
    fresh = dma_certificate(tmp_path / "tls").cert_pem
    assert fresh.startswith("-----BEGIN CERTIFICATE-----") and fresh != other.cert_pem


def test_a_kept_dma_certificate_serves_another_address_only_when_it_names_it(tmp_path: Path) -> None:
    loopback = dma_certificate(tmp_path / "tls")
    # the emulators on a test host's address (a network namespace): the kept one does not name it
    bridged = dma_certificate(tmp_path / "tls", addresses=("10.77.0.1",))
    names = x509.load_pem_x509_certificate(bridged.cert_pem.encode()).extensions
    addresses = names.get_extension_for_class(x509.SubjectAlternativeName).value
    assert bridged.cert_pem != loopback.cert_pem
    assert {str(a) for a in addresses.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.77.0.1"}
    # kept from then on, on that address and on loopback (it names both)
    assert dma_certificate(tmp_path / "tls", addresses=("10.77.0.1",)).cert_pem == bridged.cert_pem
    assert dma_certificate(tmp_path / "tls").cert_pem == bridged.cert_pem


def test_one_clock_moves_every_vendor_and_only_forward(tmp_path: Path) -> None:
    from streamkeeper.sandbox import equinix

    with Sandbox.start(state_dir=tmp_path) as sandbox:
        urls = sandbox.urls()
        token = httpx.post(
            f"{urls['equinix']}/oauth2/v1/token",
            json={
                "grant_type": "client_credentials",
                "client_id": equinix.DEFAULT_CLIENT_ID,
                "client_secret": equinix.DEFAULT_CLIENT_SECRET,
            },
        ).json()["access_token"]
        listing = f"{urls['equinix']}/smartview/v2/streaming/subscriptions"
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(listing, headers=headers).status_code == 200
        # moved through another vendor's admin route: Equinix's token (an hour) dies with it
        moved = httpx.post(f"{sandbox.servers['thingspace'].url}/_sandbox/clock", json={"advance": 3600})
        assert moved.json() == {"offset": 3600.0}
        assert httpx.get(listing, headers=headers).status_code == 401
        assert {vendor: app.clock.offset for vendor, app in sandbox.apps.items()} == dict.fromkeys(
            sandbox.apps, 3600.0
        )
        back = httpx.post(f"{sandbox.servers['stream'].url}/_sandbox/clock", json={"advance": -5})
        assert back.status_code == 400 and "only moves forward" in back.json()["error"]
        assert sandbox.clock.offset == 3600.0
