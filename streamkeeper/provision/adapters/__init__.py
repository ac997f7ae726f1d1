"""One adapter per vendor: what the vendor holds as resources keyed by the stable name, and the writes."""

from __future__ import annotations

from typing import Any

from streamkeeper.provision.adapters.base import Adapter, SecretSource
from streamkeeper.provision.adapters.dma import DMAAdapter
from streamkeeper.provision.adapters.equinix import EquinixAdapter
from streamkeeper.provision.adapters.plt import PLTAdapter
from streamkeeper.provision.adapters.stream import StreamAdapter
from streamkeeper.provision.adapters.thingspace import ThingSpaceAdapter

ADAPTERS: dict[str, type[Adapter]] = {
    "plt": PLTAdapter,
    "dma": DMAAdapter,
    "stream": StreamAdapter,
    "thingspace": ThingSpaceAdapter,
    "equinix": EquinixAdapter,
}


def make_adapter(vendor: str, connection: Any, client: Any, secrets: SecretSource | None = None) -> Adapter:
    """The adapter of `vendor` for one spec connection, with a client built from its block."""
    return ADAPTERS[vendor](connection, client, secrets=secrets)


__all__ = [
    "ADAPTERS",
    "Adapter",
    "DMAAdapter",
    "EquinixAdapter",
    "PLTAdapter",
    "SecretSource",
    "StreamAdapter",
    "ThingSpaceAdapter",
    "make_adapter",
]
