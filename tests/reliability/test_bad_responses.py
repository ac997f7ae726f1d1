"""Bad vendor responses, for every vendor client: each is a clear error naming vendor and operation.

The emulators inject the bad answers (fault kinds ``malformed``, ``html_error``, ``empty``,
``wrong_shape``, ``huge``) on everything but the token endpoints, so each client gets past its auth and
meets the bad answer on a real read operation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr

from streamkeeper.sandbox.base import SandboxServer, VendorSandbox
from streamkeeper.sandbox.tls import TLSFiles
from streamkeeper.vendors.http import MalformedResponse, RetryPolicy, ServerError, VendorError, tls_verify

FAST = RetryPolicy(backoff_base=0.01, max_attempts=3)
NOT_TOKENS = r"^(?!.*(oauth|session/login)).*"


def dma(serve: Callable[..., SandboxServer], tls: TLSFiles) -> tuple[VendorSandbox, Callable[[], Any], str]:
    from streamkeeper.sandbox.dma import DMASandbox
    from streamkeeper.vendors.dma import DMAClient

    app = DMASandbox(validate_consumer_url=False)
    server = serve(app, tls=tls)
    client = DMAClient(
        server.url + "/api/rest",
        username="admin",
        password=SecretStr("admin-pass"),
        verify=tls_verify(tls.cert_pem),
        retry=FAST,
        max_response_bytes=4 * 1024 * 1024,
    )
    return app, client.list_subscriptions, "dma list_subscriptions"


def plt(serve: Callable[..., SandboxServer], tls: TLSFiles) -> tuple[VendorSandbox, Callable[[], Any], str]:
    from streamkeeper.sandbox.plt import DEFAULT_PARTNER_ID, PLTSandbox
    from streamkeeper.vendors.plt import PLTClient

    app = PLTSandbox()
    server = serve(app)
    client = PLTClient(
        server.url, partner_id=SecretStr(DEFAULT_PARTNER_ID), retry=FAST, max_response_bytes=4 * 1024 * 1024
    )
    return app, client.list_streams, "plt list_streams"


def stream(
    serve: Callable[..., SandboxServer], tls: TLSFiles
) -> tuple[VendorSandbox, Callable[[], Any], str]:
    from streamkeeper.sandbox.stream import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, StreamSandbox
    from streamkeeper.vendors.stream import StreamClient

    app = StreamSandbox()
    server = serve(app)
    client = StreamClient(
        server.url,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=SecretStr(DEFAULT_CLIENT_SECRET),
        retry=FAST,
        max_response_bytes=4 * 1024 * 1024,
    )
    return app, client.list_organizations, "stream list_organizations"


def thingspace(
    serve: Callable[..., SandboxServer], tls: TLSFiles
) -> tuple[VendorSandbox, Callable[[], Any], str]:
    from streamkeeper.sandbox import thingspace as ts
    from streamkeeper.vendors.thingspace import ThingSpaceClient

    app = ts.ThingSpaceSandbox()
    server = serve(app)
    client = ThingSpaceClient(
        server.url,
        app_key=ts.DEFAULT_APP_KEY,
        app_secret=SecretStr(ts.DEFAULT_APP_SECRET),
        username=ts.DEFAULT_USERNAME,
        password=SecretStr(ts.DEFAULT_PASSWORD),
        account_name=ts.DEFAULT_ACCOUNT,
        retry=FAST,
        max_response_bytes=4 * 1024 * 1024,
    )
    return app, client.query_targets, "thingspace query_targets"


def equinix(
    serve: Callable[..., SandboxServer], tls: TLSFiles
) -> tuple[VendorSandbox, Callable[[], Any], str]:
    from streamkeeper.sandbox.equinix import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, EquinixSandbox
    from streamkeeper.vendors.equinix import EquinixClient

    app = EquinixSandbox()
    server = serve(app)
    client = EquinixClient(
        server.url,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=SecretStr(DEFAULT_CLIENT_SECRET),
        retry=FAST,
        max_response_bytes=4 * 1024 * 1024,
    )
    return app, client.list_streaming_subscriptions, "equinix list_streaming_subscriptions"


VENDORS = [dma, plt, stream, thingspace, equinix]
CASES: list[tuple[str, type[VendorError], str]] = [
    ("malformed", MalformedResponse, "not valid"),
    ("html_error", ServerError, "HTTP 500"),
    ("empty", MalformedResponse, ""),
    ("wrong_shape", MalformedResponse, "unexpected response shape"),
    ("huge", MalformedResponse, "byte limit"),
]


@pytest.mark.parametrize("vendor", VENDORS, ids=lambda v: v.__name__)
@pytest.mark.parametrize(("kind", "error", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_answers_are_named_errors(
    vendor: Callable[..., Any],
    kind: str,
    error: type[VendorError],
    words: str,
    serve: Callable[..., SandboxServer],
    tls_files: TLSFiles,
) -> None:
    app, operation, name = vendor(serve, tls_files)
    operation()  # the good path works (and any token is fetched before the faults start)
    app.faults.set(rate=1.0, kinds=[kind], path=NOT_TOKENS, huge_bytes=8 * 1024 * 1024)
    with pytest.raises(error) as info:
        operation()
    message = str(info.value)
    assert message.startswith(name + ":"), message
    assert words in message
    assert "Traceback" not in message and len(message) < 600
    app.faults.clear()
    operation()  # and the client is still usable afterwards
