"""``refresh-subscriptions``: refresh everything that expires, before it does.

DMA subscriptions (PUT time-to-live with the ETag, soonest expiry first; an expired one the spec still
wants is created again) and vendor tokens (Stream refresh tokens rotated and saved back to their block;
ThingSpace session and Equinix token renewed), each recorded in the history store.
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, Field, WithJsonSchema

from blocks.dma import DMACredentials
from flows.parameters import Text, existing_file, given
from streamkeeper.errors import ConfigError, StreamkeeperError
from streamkeeper.keepalive import RefreshOutcome
from streamkeeper.spec import load_spec
from streamkeeper.store import TokenEvent
from tasks.refresh import load_block, refresh_dma_subscriptions, refresh_tokens

KEEP_TTL = -1
"""``time_to_live`` as the run form gives it for "keep each subscription's own" (Python callers pass None)."""

ARTIFACT_ROWS = 200
"""Outcome rows shown in the artifact; beyond that only what went wrong (and the counts) is shown."""


class RefreshSummary(BaseModel):
    """What a refresh run did.

    `outcomes` holds every subscription's outcome when the run acted on at most `ARTIFACT_ROWS` of them;
    beyond that, only those that were not a plain refresh (each refresh is in the history, see the
    ``refresh_history`` report), so that the result of a 10,000-subscription run stays small.
    """

    refreshed: int = 0
    expired: int = 0
    recreated: int = 0
    failed: int = 0
    outcomes: list[RefreshOutcome] = Field(default_factory=list)
    tokens: list[TokenEvent] = Field(default_factory=list)

    @property
    def acted_on(self) -> int:
        return self.refreshed + self.expired + self.recreated + self.failed

    @property
    def tokens_failed(self) -> int:
        return sum(1 for t in self.tokens if t.event == "failed")


def _merge(*groups: list[str]) -> list[str]:
    return list(dict.fromkeys(name for group in groups for name in group))


@flow(name="refresh-subscriptions", log_prints=True)
def refresh_subscriptions(
    spec_path: Text = None,
    dma_blocks: list[str] = [],  # noqa: B006
    stream_blocks: list[str] = [],  # noqa: B006
    thingspace_blocks: list[str] = [],  # noqa: B006
    equinix_blocks: list[str] = [],  # noqa: B006
    refresh_within_seconds: Annotated[int, Field(ge=0)] = 7200,
    time_to_live: Annotated[
        int | None,
        WithJsonSchema({"type": "integer", "minimum": KEEP_TTL, "maximum": 93600}),
        Field(json_schema_extra={"default": KEEP_TTL}),
    ] = None,
    db_path: Text = None,
) -> RefreshSummary:
    """Refresh every DMA subscription that expires within the horizon (soonest first) and every vendor token.

    Args:
        spec_path: Spec file (YAML) whose connections are refreshed; its DMA subscriptions that expired are
            created again. A relative path is taken from the deployment's working directory.
        dma_blocks: DMA credentials blocks to refresh, besides the spec's.
        stream_blocks: Stream credentials blocks whose refresh token to rotate, besides the spec's.
        thingspace_blocks: ThingSpace credentials blocks whose session to renew, besides the spec's.
        equinix_blocks: Equinix credentials blocks whose token to renew, besides the spec's.
        refresh_within_seconds: Refresh DMA subscriptions that expire sooner than this (seconds); keep it
            above the schedule's interval so nothing expires between two runs.
        time_to_live: Time-to-live to set, in seconds (0: the 26 h maximum); -1 (or empty) keeps each
            subscription's own.
        db_path: History store file; empty: $STREAMKEEPER_DB, else data/streamkeeper.duckdb.
    """
    logger = get_run_logger()
    spec_path, db_path = given(spec_path), given(db_path)
    if time_to_live == KEEP_TTL:
        time_to_live = None
    if time_to_live is not None and not 0 <= time_to_live <= 93600:
        raise ConfigError(
            f"time_to_live {time_to_live}: 0 (the 26 h maximum), 1..93600 s, or -1 to keep each one's own"
        )
    spec_blocks: dict[str, list[str]] = {"dma": [], "stream": [], "thingspace": [], "equinix": []}
    if spec_path:
        spec_path = str(existing_file(spec_path))
        spec = load_spec(spec_path)
        for vendor in spec_blocks:
            spec_blocks[vendor] = [c.connection for c in getattr(spec, vendor)]
    dma = _merge(spec_blocks["dma"], dma_blocks)
    stream = _merge(spec_blocks["stream"], stream_blocks)
    thingspace = _merge(spec_blocks["thingspace"], thingspace_blocks)
    equinix = _merge(spec_blocks["equinix"], equinix_blocks)
    if not (dma or stream or thingspace or equinix):
        raise ConfigError("nothing to refresh: give a spec_path or credentials block names")

    # one task per DMA, and one for all tokens, running side by side
    dma_runs = [
        refresh_dma_subscriptions.submit(
            load_block(DMACredentials, name),
            name,
            refresh_within_seconds,
            time_to_live,
            db_path,
            spec_path if name in spec_blocks["dma"] else None,
            ARTIFACT_ROWS,
        )
        for name in dma
    ]
    tokens_run = (
        refresh_tokens.submit(stream, thingspace, equinix, db_path)
        if stream or thingspace or equinix
        else None
    )

    summary = RefreshSummary()
    for run in dma_runs:
        result = run.result()
        summary.outcomes.extend(result.outcomes)
        for outcome in ("refreshed", "expired", "recreated", "failed"):
            setattr(summary, outcome, getattr(summary, outcome) + result.counts.get(outcome, 0))
    if tokens_run is not None:
        summary.tokens = tokens_run.result()
    if summary.acted_on > ARTIFACT_ROWS:  # Prefect walks a flow's result: keep it small
        summary.outcomes = [o for o in summary.outcomes if o.outcome != "refreshed"]
    _publish(summary)
    logger.info(
        "refreshed %d, expired %d, recreated %d, failed %d; tokens renewed %d, failed %d",
        summary.refreshed,
        summary.expired,
        summary.recreated,
        summary.failed,
        len(summary.tokens) - summary.tokens_failed,
        summary.tokens_failed,
    )
    problems = [o for o in summary.outcomes if o.outcome == "failed"]
    token_problems = [t for t in summary.tokens if t.event == "failed"]
    if problems or token_problems:
        first = (
            f"{problems[0].account} {problems[0].subscription_id}: {problems[0].detail}"
            if problems
            else f"{token_problems[0].vendor} {token_problems[0].account}: {token_problems[0].detail}"
        )
        raise StreamkeeperError(
            f"{len(problems)} subscription(s) and {len(token_problems)} token(s) could not be refreshed; "
            f"first: {first}"
        )
    return summary


def _publish(summary: RefreshSummary) -> None:
    outcomes = summary.outcomes[:ARTIFACT_ROWS]
    rows = [
        {
            "vendor": o.vendor,
            "account": o.account,
            "what": f"subscription {o.subscription_id}",
            "name": o.name,
            "outcome": o.outcome,
            "old_expiry": o.old_expires_at.isoformat() if o.old_expires_at else None,
            "new_expiry": o.new_expires_at.isoformat() if o.new_expires_at else None,
            "detail": o.detail,
        }
        for o in outcomes
    ]
    rows += [
        {
            "vendor": t.vendor,
            "account": t.account,
            "what": "token",
            "name": None,
            "outcome": t.event,
            "old_expiry": None,
            "new_expiry": t.expires_at.isoformat() if t.expires_at else None,
            "detail": t.detail,
        }
        for t in summary.tokens
    ]
    create_table_artifact(
        key="refresh-subscriptions",
        table=rows,
        description=(
            f"{summary.refreshed} refreshed, {summary.expired} expired, {summary.recreated} recreated, "
            f"{summary.failed} failed; {len(summary.tokens)} token(s), {summary.tokens_failed} failed"
            + (
                f" (refreshed rows beyond {ARTIFACT_ROWS} left out)"
                if summary.acted_on > ARTIFACT_ROWS
                else ""
            )
        ),
    )
