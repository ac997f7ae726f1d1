"""Tasks of provision-subscriptions: coarse, one per vendor connection (never one per subscription)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import task
from prefect.blocks.system import Secret
from prefect.cache_policies import NO_CACHE

from blocks.registry import block_class
from streamkeeper.errors import ConfigError, StreamkeeperError
from streamkeeper.provision import (
    Adapter,
    Known,
    Outcome,
    Plan,
    apply_plan,
    known_from_store,
    make_adapter,
    plan_connection,
    versions,
)
from streamkeeper.spec import Connection
from streamkeeper.vendors.http import CallRecorder
from streamkeeper.vendors.http.redact import redact
from tasks.store import flush_calls, history_store


def load_secret(name: str) -> Any:
    """The value of a Prefect ``Secret`` block: a string, or an object such as ``{username, password}``
    (saved as an object, or as its JSON text: `save_secret`)."""
    try:
        block: Any = Secret.load(name)
        return block.get()
    except ValueError as exc:
        raise ConfigError(f"Secret block {name!r} not found ({exc}); create it in the Prefect UI") from None


def save_secret(name: str, value: str | dict[str, str]) -> None:
    """Save a Prefect ``Secret`` block; an object is saved as its JSON text.

    Prefect 3.8.8 masks a text secret (``********`` in the UI and in the API's answers) but not an object
    one: the UI shows ``Value None`` and the API returns the object in clear. `Secret.get` (and so
    `load_secret`) turns the JSON text back into the object.
    """
    text = value if isinstance(value, str) else json.dumps(value)
    Secret(value=text).save(name, overwrite=True)


@contextmanager
def open_adapter(
    vendor: str, connection: Connection, recorder: CallRecorder, with_secrets: bool = False
) -> Iterator[Adapter]:
    """The adapter of one connection, with a client built from its credentials block."""
    cls = block_class(vendor)
    try:
        block: Any = cls.load(connection.connection)
    except ValueError:
        raise ConfigError(
            f"{vendor} block {connection.connection!r} not found: create it with "
            f"`streamkeeper connect {vendor} --name {connection.connection}`"
        ) from None
    if vendor == "stream":
        client = block.get_client(recorder=recorder, on_token=lambda info: _save_refresh_token(block, info))
    else:
        client = block.get_client(recorder=recorder)
    with client:
        yield make_adapter(vendor, connection, client, secrets=load_secret if with_secrets else None)


def _save_refresh_token(block: Any, info: Any) -> None:
    """Stream refresh tokens are single-use: write the new one back to the block before it is used."""
    block.refresh_token = info.refresh_token
    block.save(block._block_document_name, overwrite=True)


@task(name="read-provisioned", cache_policy=NO_CACHE)
def read_known(db_path: str | None = None) -> Known:
    """What the history store says streamkeeper manages (ids, names, last applied spec)."""
    return known_from_store(history_store(db_path))


@task(name="plan-connection", task_run_name="plan-{vendor}-{connection.connection}", cache_policy=NO_CACHE)
def plan_connection_task(
    vendor: str, connection: Connection, known: Known, prune: bool, db_path: str | None = None
) -> Plan:
    """Read one vendor connection and plan its changes; a vendor that cannot be read is a plan error."""
    recorder = CallRecorder()
    try:
        with open_adapter(vendor, connection, recorder) as adapter:
            return plan_connection(adapter, known, prune)
    except StreamkeeperError as exc:
        return Plan(errors=[f"{vendor}/{connection.connection}: {redact(str(exc))}"], prune=prune)
    finally:
        flush_calls(history_store(db_path), recorder)


@task(name="apply-connection", task_run_name="apply-{vendor}-{connection.connection}", cache_policy=NO_CACHE)
def apply_connection_task(
    vendor: str, connection: Connection, plan: Plan, db_path: str | None = None, workers: int = 16
) -> list[Outcome]:
    """Apply one connection's changes and record every change and adoption in ``subscriptions``."""
    store = history_store(db_path)
    recorder = CallRecorder()
    try:
        with open_adapter(vendor, connection, recorder, with_secrets=True) as adapter:
            outcomes = apply_plan(adapter, plan, workers=workers)
    except StreamkeeperError as exc:  # the block or client could not be set up: every change failed
        detail = redact(str(exc))
        outcomes = [
            Outcome(
                action=c.action,
                vendor=c.vendor,
                account=c.account,
                type=c.type,
                name=c.name,
                subscription_id=c.subscription_id,
                result="failed",
                detail=detail,
            )
            for c in plan.pending()
        ]
    finally:
        flush_calls(store, recorder)
    store.record_versions(versions(outcomes))
    return outcomes
