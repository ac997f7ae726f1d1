"""``refresh-subscriptions``: keep DMA subscriptions alive before they expire."""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, Field

from blocks.dma import DMACredentials
from streamkeeper.errors import StreamkeeperError
from streamkeeper.keepalive import RefreshOutcome
from tasks.dma import refresh_dma_subscriptions


class RefreshSummary(BaseModel):
    """What a refresh run did."""

    refreshed: int = 0
    expired: int = 0
    failed: int = 0
    outcomes: list[RefreshOutcome] = Field(default_factory=list)


@flow(name="refresh-subscriptions", log_prints=True)
def refresh_subscriptions(
    dma_blocks: Annotated[list[str], Field(description="Names of DMA credentials blocks to refresh.")] = [
        "dma"
    ],  # noqa: B006
    refresh_within_seconds: Annotated[
        int, Field(ge=0, description="Refresh subscriptions that expire sooner than this (seconds).")
    ] = 7200,
    time_to_live: Annotated[
        int | None,
        Field(
            ge=0, le=93600, description="Time-to-live to set (0 = 26 h maximum); empty keeps each one's own."
        ),
    ] = None,
    db_path: Annotated[str | None, Field(description="History store file; default $STREAMKEEPER_DB.")] = None,
) -> RefreshSummary:
    """Refresh every DMA subscription that expires within the horizon, soonest first, and record it."""
    logger = get_run_logger()
    summary = RefreshSummary()
    for block_name in dma_blocks:
        credentials = DMACredentials.load(block_name)
        outcomes = refresh_dma_subscriptions(
            credentials, block_name, refresh_within_seconds, time_to_live, db_path
        )
        summary.outcomes.extend(outcomes)
    for outcome in summary.outcomes:
        if outcome.outcome == "refreshed":
            summary.refreshed += 1
        elif outcome.outcome == "expired":
            summary.expired += 1
        elif outcome.outcome == "failed":
            summary.failed += 1
    create_table_artifact(
        key="refresh-subscriptions",
        table=[o.model_dump(mode="json") for o in summary.outcomes],
        description=f"{summary.refreshed} refreshed, {summary.expired} expired, {summary.failed} failed",
    )
    logger.info("refreshed %d, expired %d, failed %d", summary.refreshed, summary.expired, summary.failed)
    if summary.failed:
        first = next(o for o in summary.outcomes if o.outcome == "failed")
        raise StreamkeeperError(
            f"{summary.failed} subscription(s) could not be refreshed; first: {first.subscription_id}: {first.detail}"
        )
    return summary
