"""Carry out a plan: stage by stage in dependency order, with bounded concurrency, one outcome per change.

Within a connection the adapter says each change's stage (deletes first; ThingSpace targets before the
subscriptions on them, and old targets last); changes of one stage run in a thread pool with the
connection's sync client. A failed change does not stop the others: it is an outcome with
``result="failed"``, and the next plan sees what the vendor really holds. Re-applying is safe: creates
are found again by their name (a lost answer), updates set values, deletes of what is gone succeed.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from streamkeeper.errors import StreamkeeperError
from streamkeeper.provision.adapters.base import Adapter
from streamkeeper.provision.model import Change, Outcome, Plan
from streamkeeper.store.records import SubscriptionVersion
from streamkeeper.vendors.http.redact import redact

DEFAULT_WORKERS = 16


def apply_plan(adapter: Adapter, plan: Plan, workers: int = DEFAULT_WORKERS) -> list[Outcome]:
    """Apply the changes of `plan` that belong to the adapter's connection; returns their outcomes.

    Raises:
        StreamkeeperError: the plan has errors (nothing is applied).
    """
    if plan.errors:
        raise StreamkeeperError(f"the plan has errors, nothing applied: {plan.errors[0]}")
    mine = [c for c in plan.changes if c.vendor == adapter.vendor and c.account == adapter.account]
    adapter.prepare(mine)
    pending = [c for c in mine if c.action != "noop"]
    # first: what vanished is recorded as deleted (a recreate may bring back the same id, e.g. PLT's)
    outcomes: list[Outcome] = _vanished(adapter, plan)
    for stage in sorted({adapter.stage(c) for c in pending}):
        batch = [c for c in pending if adapter.stage(c) == stage]
        if len(batch) == 1 or workers <= 1:
            outcomes.extend(_run(adapter, c) for c in batch)
            continue
        with ThreadPoolExecutor(max_workers=min(workers, len(batch))) as pool:
            outcomes.extend(pool.map(lambda c: _run(adapter, c), batch))
    outcomes.extend(adapter.after(outcomes))
    return outcomes


def apply_all(
    adapters: Sequence[Adapter], plan: Plan, workers: int = DEFAULT_WORKERS, connections: int = 4
) -> list[Outcome]:
    """Apply a plan over several connections, `connections` at a time, each with `workers` threads."""
    if plan.errors:
        raise StreamkeeperError(f"the plan has errors, nothing applied: {plan.errors[0]}")
    parts = plan.split()
    busy = [
        (a, parts[(a.vendor, a.account)])
        for a in adapters
        if (a.vendor, a.account) in parts
        and (parts[(a.vendor, a.account)].pending() or parts[(a.vendor, a.account)].vanished)
    ]
    if not busy:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(connections, len(busy)))) as pool:
        results = list(pool.map(lambda job: apply_plan(job[0], job[1], workers), busy))
    return [o for outcomes in results for o in outcomes]


def versions(outcomes: Sequence[Outcome]) -> list[SubscriptionVersion]:
    """Every history row the outcomes produced, in order (write them with `HistoryStore.record_versions`)."""
    return [v for o in outcomes for v in o.versions]


def _vanished(adapter: Adapter, plan: Plan) -> list[Outcome]:
    """History rows for what the vendor no longer holds (deleted or expired behind our back)."""
    out = []
    for r in plan.vanished:
        if r.vendor != adapter.vendor or r.account != adapter.account or r.id is None:
            continue
        change = Change(
            action="delete",
            vendor=r.vendor,
            account=r.account,
            type=r.type,
            name=r.name,
            subscription_id=r.id,
            kind=r.kind,
            actual=r,
        )
        row = adapter.version("deleted", change, r.id, None, kind=r.kind, detail="gone at the vendor")
        out.append(adapter.outcome(change, "deleted", row, detail="gone at the vendor: history updated"))
    return out


def _run(adapter: Adapter, change: Change) -> Outcome:
    try:
        return adapter.execute(change)
    except StreamkeeperError as exc:
        detail = redact(str(exc))
    except Exception as exc:  # a bug must not lose the outcomes (and history) of the other changes
        detail = redact(f"{type(exc).__name__}: {exc}")
    return adapter.outcome(change, "failed", detail=detail)


__all__ = ["DEFAULT_WORKERS", "apply_all", "apply_plan", "versions"]
