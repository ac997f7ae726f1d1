"""Local emulators of the five vendor APIs, PubNub and the AWS stand-in (the sandbox).

Each vendor emulator is a `VendorSandbox` (see `base`); `streamkeeper sandbox` and the demo start them
all with `start_all`. State is in memory; faults are switchable at run time.
"""

from __future__ import annotations

import importlib

from streamkeeper.sandbox.base import SandboxServer, VendorSandbox

# vendor name -> "module:class"; imported lazily so one emulator's import cost is paid only when used.
EMULATORS: dict[str, str] = {
    "dma": "streamkeeper.sandbox.dma:DMASandbox",
    "plt": "streamkeeper.sandbox.plt:PLTSandbox",
    "stream": "streamkeeper.sandbox.stream:StreamSandbox",
    "thingspace": "streamkeeper.sandbox.thingspace:ThingSpaceSandbox",
    "equinix": "streamkeeper.sandbox.equinix:EquinixSandbox",
}


def emulator_class(vendor: str) -> type[VendorSandbox]:
    """The emulator class of a vendor."""
    module, _, name = EMULATORS[vendor].partition(":")
    cls: type[VendorSandbox] = getattr(importlib.import_module(module), name)
    return cls


__all__ = ["EMULATORS", "SandboxServer", "VendorSandbox", "emulator_class"]
