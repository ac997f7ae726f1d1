"""Tasks of refresh-subscriptions: one per DMA (a batch of PUTs), one for every vendor token.

Coarse on purpose: a Prefect task run costs 4 to 10 ms in the client and 22 to 30 ms of server CPU here,
so a task per subscription would cap a run at about 40 subscriptions a second.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import TypeVar, cast

from prefect import task
from prefect.blocks.core import Block
from pydantic import BaseModel, Field, SecretStr

from blocks.dma import DMACredentials
from blocks.equinix import EquinixCredentials
from blocks.stream import StreamCredentials
from blocks.thingspace import ThingSpaceCredentials
from streamkeeper.errors import ConfigError
from streamkeeper.keepalive import (
    DesiredDMASubscription,
    RefreshOutcome,
    refresh_dma,
    renew_equinix_token,
    renew_thingspace_session,
    rotate_stream_token,
)
from streamkeeper.spec import DMASubscriptionSpec, load_spec
from streamkeeper.store import TokenEvent
from streamkeeper.vendors.dma import NewSubscription
from streamkeeper.vendors.http import CallRecorder, register_secret
from streamkeeper.vendors.stream import TokenInfo
from tasks.provision import load_secret
from tasks.retry import transient_only
from tasks.store import flush_calls, history_store

B = TypeVar("B", bound=Block)


def load_block(cls: type[B], name: str) -> B:
    """A credentials block by name; a missing one is a one-line `ConfigError` saying how to create it."""
    try:
        return cast(B, cls.load(name))
    except ValueError as exc:
        if "Unable to find block document" not in str(exc):
            raise
        vendor = cls.get_block_type_slug().removeprefix("streamkeeper-").removesuffix("-credentials")
        raise ConfigError(
            f"no {cls.get_block_type_name()} block named {name!r}: create it with "
            f"`streamkeeper connect {vendor} --name {name}`"
        ) from None


class DMARefreshResult(BaseModel):
    """A refresh of one DMA, kept small (Prefect walks every task's result): the count of each outcome,
    and the outcomes themselves when there are at most `keep_outcomes`, else those that were not a plain
    refresh (every refresh is in the history)."""

    counts: dict[str, int] = Field(default_factory=dict)
    outcomes: list[RefreshOutcome] = Field(default_factory=list)


@task(
    name="refresh-dma-subscriptions",
    task_run_name="refresh-dma-{account}",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=transient_only,
)
def refresh_dma_subscriptions(
    credentials: DMACredentials,
    account: str,
    within_seconds: int,
    time_to_live: int | None = None,
    db_path: str | None = None,
    spec_path: str | None = None,
    keep_outcomes: int = 200,
) -> DMARefreshResult:
    """Refresh the subscriptions of one DMA that expire within `within_seconds`, soonest first.

    Subscriptions of the spec's connection named `account` that expired are created again. The task reads
    them from the spec (a cached parse) rather than taking them as an argument, so that a 10,000-entry
    connection never goes through Prefect as a task argument.
    """
    desired: list[DMASubscriptionSpec] = []
    if spec_path is not None:
        spec = load_spec(spec_path)
        desired = next((c.subscriptions for c in spec.dma if c.connection == account), [])
    store = history_store(db_path)
    recorder = CallRecorder()
    with credentials.get_client(recorder=recorder) as client:
        try:
            outcomes = refresh_dma(
                client,
                store,
                account,
                within=timedelta(seconds=within_seconds),
                time_to_live=time_to_live,
                desired={s.name: partial(desired_dma, s) for s in desired},
            )
        finally:
            flush_calls(store, recorder)
    kept = outcomes if len(outcomes) <= keep_outcomes else [o for o in outcomes if o.outcome != "refreshed"]
    return DMARefreshResult(counts=dict(Counter(o.outcome for o in outcomes)), outcomes=kept)


def desired_dma(spec: DMASubscriptionSpec) -> DesiredDMASubscription:
    """A spec entry as the create body the DMA takes, its notification password read from its Secret block.

    Called only when the subscription has to be created again.
    """
    credentials = spec.notification_credentials
    password = None
    if credentials is not None:
        password = notification_password(credentials.password_block)
    return DesiredDMASubscription(
        name=spec.name,
        desired=spec.desired(),
        subject=spec.subject_path,
        subscription=NewSubscription(
            consumer_url=spec.consumer_url,
            time_to_live=spec.time_to_live,
            username=credentials.username if credentials else None,
            password=password,
            send_update_notifications=spec.send_update_notifications,
            passthru=spec.passthru,
        ),
    )


def notification_password(block_name: str) -> SecretStr:
    """The password in a Prefect Secret block, as `apply` reads it: the text, or the object's ``password``."""
    value = load_secret(block_name)
    if isinstance(value, dict):
        value = value.get("password")
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"secret block {block_name!r} holds no password (a text, or an object with 'password')"
        )
    register_secret(value)
    return SecretStr(value)


@task(name="refresh-vendor-tokens")
def refresh_tokens(
    stream_blocks: list[str],
    thingspace_blocks: list[str],
    equinix_blocks: list[str],
    db_path: str | None = None,
) -> list[TokenEvent]:
    """Renew every vendor token and record one ``token_events`` row each (never the token).

    Stream refresh tokens are single-use: each new one is saved to its block before it is ever used.
    """
    store = history_store(db_path)
    recorder = CallRecorder()
    events: list[TokenEvent] = []
    try:
        for name in stream_blocks:
            stream_block = load_block(StreamCredentials, name)
            with stream_block.get_client(recorder=recorder, on_token=save_refresh_token(name)) as client:
                events.append(rotate_stream_token(client, name))
        for name in thingspace_blocks:
            with load_block(ThingSpaceCredentials, name).get_client(recorder=recorder) as client:
                events.append(renew_thingspace_session(client, name))
        for name in equinix_blocks:
            with load_block(EquinixCredentials, name).get_client(recorder=recorder) as client:
                events.append(renew_equinix_token(client, name))
        store.record_token_events(events)
    finally:
        flush_calls(store, recorder)
    return events


def save_refresh_token(block_name: str) -> Callable[[TokenInfo], None]:
    """An ``on_token`` callback writing each new Stream refresh token back to its block, before it is used.

    The block is read again and saved whole in one call, so the stored refresh token is always one the
    vendor issued; if two runs race, the loser's refresh is refused and the client falls back to
    ``client_credentials`` (and saves that token), so a lost race costs one extra token request.
    """

    def on_token(info: TokenInfo) -> None:
        block = load_block(StreamCredentials, block_name)
        block.refresh_token = info.refresh_token
        block.save(block_name, overwrite=True)

    return on_token
