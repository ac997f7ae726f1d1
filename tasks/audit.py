"""Tasks of audit-subscriptions: one per spec connection (a vendor account), never one per subscription."""

from __future__ import annotations

from typing import Any

from prefect import task

from blocks.registry import block_class
from streamkeeper.audit import AuditResult, audit_connection
from streamkeeper.provision.adapters import make_adapter
from streamkeeper.spec import Vendor, load_spec
from streamkeeper.vendors.http import CallRecorder, VendorClient
from tasks.refresh import load_block, save_refresh_token
from tasks.retry import transient_only
from tasks.store import flush_calls, history_store


def vendor_client(vendor: str, block_name: str, recorder: CallRecorder) -> VendorClient:
    """The client of a credentials block; a Stream client saves each rotated refresh token to its block."""
    block: Any = load_block(block_class(vendor), block_name)
    if vendor == "stream":
        client: VendorClient = block.get_client(recorder=recorder, on_token=save_refresh_token(block_name))
    else:
        client = block.get_client(recorder=recorder)
    return client


@task(
    name="audit-connection",
    task_run_name="audit-{vendor}-{connection_name}",
    retries=1,
    retry_delay_seconds=5,
    retry_condition_fn=transient_only,
)
def audit_vendor_connection(
    vendor: Vendor,
    spec_path: str,
    connection_name: str,
    account: str | None = None,
    db_path: str | None = None,
) -> AuditResult:
    """Snapshot what one spec connection holds at its vendor, and its drift (against the spec and the
    previous snapshot), in the history store. A vendor that cannot be read is an audit with `error` set.

    The connection is named, not passed: the task reads it from the spec (a cached parse), so that a
    10,000-entry connection never goes through Prefect as a task argument.
    """
    connection = load_spec(spec_path).connection(vendor, connection_name, account)
    store = history_store(db_path)
    recorder = CallRecorder()
    with vendor_client(vendor, connection.connection, recorder) as client:
        try:
            return audit_connection(make_adapter(vendor, connection, client), store)
        finally:
            flush_calls(store, recorder)
