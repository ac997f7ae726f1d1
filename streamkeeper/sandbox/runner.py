"""Start every emulator together on loopback: what `streamkeeper sandbox` and the demo run.

The DMA serves HTTPS with a self-signed certificate generated into the state directory (its PEM is the CA
bundle to trust); the others serve HTTP. PLT streams publish their events into the PubNub emulator.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamkeeper.sandbox.base import SandboxServer, VendorSandbox
from streamkeeper.sandbox.tls import TLSFiles, self_signed

ORDER = ("dma", "pubnub", "plt", "stream", "thingspace", "equinix")


@dataclass
class Sandbox:
    """The running emulators: ``sandbox.apps["dma"]`` is the `DMASandbox`, ``servers["dma"]`` its server."""

    apps: dict[str, VendorSandbox] = field(default_factory=dict)
    servers: dict[str, SandboxServer] = field(default_factory=dict)
    tls: TLSFiles | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def start(cls, base_port: int = 0, state_dir: Path | None = None, **options: Any) -> Sandbox:
        """Start all emulators; ports are consecutive from `base_port`, or free ones when it is 0.

        Args:
            options: per-vendor constructor keyword arguments, e.g. ``dma={"validate_consumer_url": False}``.
        """
        import tempfile

        state = state_dir or Path(tempfile.mkdtemp(prefix="streamkeeper-sandbox-"))
        sandbox = cls(tls=self_signed(state / "tls", common_name="dma-sandbox"))
        try:
            for offset, vendor in enumerate(ORDER):
                app = _build(vendor, sandbox.apps, options.get(vendor, {}))
                port = base_port + offset if base_port else 0
                tls = sandbox.tls if vendor == "dma" else None
                sandbox.servers[vendor] = SandboxServer(app, port=port, tls=tls).start()
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


def _build(vendor: str, started: dict[str, VendorSandbox], options: dict[str, Any]) -> VendorSandbox:
    if vendor == "pubnub":
        from streamkeeper.sandbox.pubnub import PubNubEmulator

        return PubNubEmulator(**options)
    if vendor == "plt":
        from streamkeeper.sandbox.plt import PLTSandbox

        return PLTSandbox(pubnub=started["pubnub"], **options)  # type: ignore[arg-type]
    from streamkeeper.sandbox import emulator_class

    return emulator_class(vendor)(**options)
