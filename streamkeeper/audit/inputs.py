"""What an audit's findings are computed from, as one fingerprint: an audit with the same inputs as the
latest one need not compute them again.

Drift against the spec is the planner's comparison of three things: what the vendor holds, the
connection's spec entries and what the history knows of the account (its current subscriptions and their
last applied spec). Drift against the previous snapshot is empty when the vendor holds what it held. So
when the vendor names what it holds (the DMA list's ETag), the fingerprint is that name, the spec entries,
a mark of the account's history (its row count and latest change) and the streamkeeper version; a vendor
that cannot name what it holds gives no fingerprint, and its audits are always computed in full.

Only the spec's ``expired`` or ``missing`` depends on the time as well (whether a subscription the
history saw live has passed its expiry): a repeated audit classifies those again (`spec_drift`).
"""

from __future__ import annotations

import hashlib
import json

from streamkeeper import __version__
from streamkeeper.provision.adapters.base import Adapter
from streamkeeper.store import HistoryStore


def history_mark(store: HistoryStore, vendor: str, account: str) -> str:
    """Changes whenever a subscription version of this vendor account is written or closed."""
    frame = store.query(
        "SELECT count(*) AS n, max(valid_from) AS since, max(valid_to) AS until FROM subscriptions "
        "WHERE vendor = ? AND account = ?",
        [vendor, account],
    )
    row = frame.iloc[0]
    return f"{row['n']}|{row['since']}|{row['until']}"


def audit_inputs(version: str | None, history: str, adapter: Adapter, check_spec: bool) -> str | None:
    """The fingerprint of an audit's inputs, or None when the vendor did not name what it holds."""
    if version is None:
        return None
    spec = json.dumps(adapter.connection.model_dump(mode="json"), sort_keys=True) if check_spec else "-"
    digest = hashlib.sha256()
    for part in (__version__, version, history, spec):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()
