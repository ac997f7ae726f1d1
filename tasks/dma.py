"""Tasks over a Polycom DMA."""

from __future__ import annotations

from datetime import timedelta

from prefect import task

from blocks.dma import DMACredentials
from streamkeeper.keepalive import RefreshOutcome, refresh_dma
from streamkeeper.vendors.http import CallRecorder
from tasks.retry import transient_only
from tasks.store import flush_calls, history_store


@task(name="refresh-dma-subscriptions", retries=2, retry_delay_seconds=5, retry_condition_fn=transient_only)
def refresh_dma_subscriptions(
    credentials: DMACredentials,
    account: str,
    within_seconds: int,
    time_to_live: int | None = None,
    db_path: str | None = None,
) -> list[RefreshOutcome]:
    """Refresh the DMA subscriptions of one DMA that expire within `within_seconds`, soonest first."""
    store = history_store(db_path)
    recorder = CallRecorder()
    with credentials.get_client(recorder=recorder) as client:
        try:
            return refresh_dma(
                client, store, account, within=timedelta(seconds=within_seconds), time_to_live=time_to_live
            )
        finally:
            flush_calls(store, recorder)
