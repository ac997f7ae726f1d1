"""The history store as seen from a flow run: rows are stamped with the run's id."""

from __future__ import annotations

from prefect.runtime import flow_run

from streamkeeper.store import HistoryStore
from streamkeeper.vendors.http import CallRecorder


def history_store(db_path: str | None = None) -> HistoryStore:
    """The history store (``db_path``, else ``$STREAMKEEPER_DB``, else the default), for this flow run."""
    run_id = flow_run.get_id()
    return HistoryStore(db_path, flow_run_id=str(run_id) if run_id else None)


def flush_calls(store: HistoryStore, recorder: CallRecorder) -> int:
    """Write the recorded vendor calls to ``api_calls`` in one batch."""
    return store.record_api_calls(recorder.drain())
