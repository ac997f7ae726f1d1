"""The history store as seen from a flow run: rows are stamped with the run's id.

Which store: the flow's ``db_path`` parameter when given (a file path or a DuckLake attach string); else the
`blocks.store.HistoryStoreSettings` block named by ``$STREAMKEEPER_STORE_BLOCK`` (deployments: set it in the
work pool's or the worker's environment); else the environment (``STREAMKEEPER_STORE``/``STREAMKEEPER_DB``).
"""

from __future__ import annotations

import os
import threading
from typing import cast

from prefect.runtime import flow_run

from streamkeeper.errors import ConfigError
from streamkeeper.store import HistoryStore, StoreSettings
from streamkeeper.vendors.http import CallRecorder

STORE_BLOCK_ENV = "STREAMKEEPER_STORE_BLOCK"

_from_blocks: dict[str, StoreSettings] = {}
_from_blocks_lock = threading.Lock()


def history_store(db_path: str | None = None) -> HistoryStore:
    """The history store (``db_path``, else the store block, else the environment), for this flow run."""
    run_id = flow_run.get_id()
    target: str | StoreSettings | None = db_path or store_block_settings()
    return HistoryStore(target, flow_run_id=str(run_id) if run_id else None)


def store_block_settings() -> StoreSettings | None:
    """The settings of the block ``$STREAMKEEPER_STORE_BLOCK`` names (loaded once per process), or None."""
    name = os.environ.get(STORE_BLOCK_ENV)
    if not name:
        return None
    with _from_blocks_lock:
        if name not in _from_blocks:
            from blocks.store import HistoryStoreSettings

            try:
                block = cast(HistoryStoreSettings, HistoryStoreSettings.load(name))
            except ValueError:
                raise ConfigError(
                    f"{STORE_BLOCK_ENV}={name}: no streamkeeper-history-store block of that name"
                ) from None
            _from_blocks[name] = block.get_settings()
        return _from_blocks[name]


def flush_calls(store: HistoryStore, recorder: CallRecorder) -> int:
    """Write the recorded vendor calls to ``api_calls`` in one batch."""
    return store.record_api_calls(recorder.drain())
