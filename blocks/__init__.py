"""Prefect Block types of streamkeeper: one credentials block per vendor, and the history store's settings.

Register them all with ``prefect block register -m blocks``; ``streamkeeper connect`` registers the one it
saves.
"""

from blocks.dma import DMACredentials
from blocks.equinix import EquinixCredentials
from blocks.plt import PLTCredentials
from blocks.store import HistoryStoreSettings
from blocks.stream import StreamCredentials
from blocks.thingspace import ThingSpaceCredentials

ALL_BLOCK_TYPES = [
    DMACredentials,
    PLTCredentials,
    StreamCredentials,
    ThingSpaceCredentials,
    EquinixCredentials,
    HistoryStoreSettings,
]

__all__ = [
    "ALL_BLOCK_TYPES",
    "DMACredentials",
    "EquinixCredentials",
    "HistoryStoreSettings",
    "PLTCredentials",
    "StreamCredentials",
    "ThingSpaceCredentials",
]
