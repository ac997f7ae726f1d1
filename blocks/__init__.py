"""Prefect Block types of streamkeeper: one credentials block per vendor, and the history store.

Register them all with ``streamkeeper connect`` (which registers before it saves) or
``prefect block register -m blocks``.
"""

from blocks.dma import DMACredentials

ALL_BLOCK_TYPES = [DMACredentials]

__all__ = ["ALL_BLOCK_TYPES", "DMACredentials"]
