"""Start every emulator together on loopback: what `streamkeeper sandbox` and the demo run.

The DMA serves HTTPS with a self-signed certificate kept in the state directory (its PEM is the CA bundle
to trust): made at the first start, then reused while it is valid for another week, so a DMA block that
holds it keeps working across restarts (with fixed ports, ``base_port``, so do the blocks' URLs). The
others serve HTTP. PLT streams publish their events into the PubNub emulator. `Sandbox.credentials` says
what each emulator accepts, as the fields of its credentials block. All the emulators tell time by one
`SandboxClock` (`Sandbox.clock`): moving it forward moves every vendor at once.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from streamkeeper.sandbox.base import SandboxClock, SandboxServer, VendorSandbox
from streamkeeper.sandbox.tls import TLSFiles, self_signed

ORDER = ("dma", "pubnub", "plt", "stream", "thingspace", "equinix")
DMA_CERT_NAME = "dma-sandbox"
CERT_KEPT_WHILE_VALID_FOR = dt.timedelta(days=7)


@dataclass(frozen=True)
class Credential:
    """One field of a credentials block, with the value an emulator accepts; `secret` ones are read by
    ``streamkeeper connect`` from ``STREAMKEEPER_<VENDOR>_<FIELD>`` (never from the command line)."""

    field: str
    value: str
    secret: bool = False


@dataclass
class Sandbox:
    """The running emulators: ``sandbox.apps["dma"]`` is the `DMASandbox`, ``servers["dma"]`` its server."""

    apps: dict[str, VendorSandbox] = field(default_factory=dict)
    servers: dict[str, SandboxServer] = field(default_factory=dict)
    tls: TLSFiles | None = None
    clock: SandboxClock = field(default_factory=SandboxClock)
    _stop: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def start(
        cls, base_port: int = 0, state_dir: Path | None = None, host: str = "127.0.0.1", **options: Any
    ) -> Sandbox:
        """Start all emulators; ports are consecutive from `base_port`, or free ones when it is 0.

        Args:
            host: the address to listen on (another than loopback: test hosts in network namespaces).
            options: per-vendor constructor keyword arguments, e.g. ``dma={"validate_consumer_url": False}``.
        """
        import tempfile

        state = state_dir or Path(tempfile.mkdtemp(prefix="streamkeeper-sandbox-"))
        extra = () if host in ("127.0.0.1", "localhost") else (host,)
        sandbox = cls(tls=dma_certificate(state / "tls", addresses=extra))
        try:
            for offset, vendor in enumerate(ORDER):
                app = _build(vendor, sandbox.apps, options.get(vendor, {}))
                app.clock = sandbox.clock
                port = base_port + offset if base_port else 0
                tls = sandbox.tls if vendor == "dma" else None
                sandbox.servers[vendor] = SandboxServer(app, host=host, port=port, tls=tls).start()
                sandbox.apps[vendor] = app
        except BaseException:
            sandbox.stop()
            raise
        return sandbox

    def urls(self) -> dict[str, str]:
        """Base URL of each vendor API (the DMA's includes ``/api/rest``)."""
        out = {}
        for vendor, server in self.servers.items():
            out[vendor] = server.url + ("/api/rest" if vendor == "dma" else "")
        return out

    def credentials(self) -> dict[str, list[Credential]]:
        """What each emulator accepts (its ready-made credentials), as the fields of the vendor's block;
        the DMA's ``ca_bundle`` is ``@<certificate file>`` (``streamkeeper connect --set`` reads the file)."""
        from streamkeeper.sandbox import equinix, plt, stream, thingspace

        urls = self.urls()
        certfile = self.tls.certfile if self.tls is not None else None
        return {
            "dma": [
                Credential("base_url", urls["dma"]),
                Credential("username", "provisioner"),  # DMASandbox's ready-made users: <name>-pass
                Credential("password", "provisioner-pass", secret=True),
                Credential("ca_bundle", f"@{certfile}"),
            ],
            "plt": [
                Credential("base_url", urls["plt"]),
                Credential("partner_id", plt.DEFAULT_PARTNER_ID, secret=True),
                Credential("pubnub_origin", urls["pubnub"]),
            ],
            "stream": [
                Credential("base_url", urls["stream"]),
                Credential("client_id", stream.DEFAULT_CLIENT_ID),
                Credential("client_secret", stream.DEFAULT_CLIENT_SECRET, secret=True),
                Credential("partner_id", stream.DEFAULT_PARTNER_ID),
            ],
            "thingspace": [
                Credential("base_url", urls["thingspace"]),
                Credential("app_key", thingspace.DEFAULT_APP_KEY),
                Credential("app_secret", thingspace.DEFAULT_APP_SECRET, secret=True),
                Credential("username", thingspace.DEFAULT_USERNAME),
                Credential("password", thingspace.DEFAULT_PASSWORD, secret=True),
                Credential("account_name", thingspace.DEFAULT_ACCOUNT),
            ],
            "equinix": [
                Credential("base_url", urls["equinix"]),
                Credential("client_id", equinix.DEFAULT_CLIENT_ID),
                Credential("client_secret", equinix.DEFAULT_CLIENT_SECRET, secret=True),
                Credential("api_generation", "streaming"),
            ],
        }

    def wait(self) -> None:
        """Block until `stop()` (or Ctrl-C)."""
        while not self._stop.wait(0.5):
            pass

    def stop(self) -> None:
        self._stop.set()
        for server in reversed(list(self.servers.values())):
            server.stop()
        self.servers.clear()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def dma_certificate(directory: Path, addresses: tuple[str, ...] = ()) -> TLSFiles:
    """The DMA emulator's certificate in `directory` (for loopback and `addresses`): the one kept there
    while it is valid for another `CERT_KEPT_WHILE_VALID_FOR` and names every address, else a new one."""
    certfile, keyfile = directory / f"{DMA_CERT_NAME}.crt", directory / f"{DMA_CERT_NAME}.key"
    try:
        pem = certfile.read_text()
        cert = x509.load_pem_x509_certificate(pem.encode())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        covered = {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
        fresh = cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > CERT_KEPT_WHILE_VALID_FOR
        if keyfile.is_file() and fresh and covered.issuperset(addresses):
            return TLSFiles(certfile=certfile, keyfile=keyfile, cert_pem=pem)
    except (OSError, ValueError, x509.ExtensionNotFound):
        pass  # none yet, unreadable, or not for these addresses: make one
    return self_signed(directory, common_name=DMA_CERT_NAME, addresses=addresses)


def _build(vendor: str, started: dict[str, VendorSandbox], options: dict[str, Any]) -> VendorSandbox:
    if vendor == "pubnub":
        from streamkeeper.sandbox.pubnub import PubNubEmulator

        return PubNubEmulator(**options)
    if vendor == "plt":
        from streamkeeper.sandbox.plt import PLTSandbox

        return PLTSandbox(pubnub=started["pubnub"], **options)  # type: ignore[arg-type]
    from streamkeeper.sandbox import emulator_class

    return emulator_class(vendor)(**options)
