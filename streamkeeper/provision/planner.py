"""The generic planner: compare what the spec wants with what the vendor holds, field by field.

Planning only reads (each adapter's `read` lists what the vendor holds); it never writes. For each pair:

- in the spec only: ``create``;
- at the vendor only: ``delete`` with prune, otherwise reported in `Plan.unmanaged` and left alone;
  unless the history records another flow as its owner: then it is that flow's (`Plan.owned_elsewhere`),
  never deleted and never "not in the spec";
- both, with differences: ``update``, or ``replace`` where the vendor cannot change a field in place;
- both, the same: ``noop``, or ``adopt`` when the history does not know the vendor's resource yet (a
  differing one is adopted and updated: `Change.adopt`).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from streamkeeper.errors import StreamkeeperError
from streamkeeper.provision.adapters.base import Adapter
from streamkeeper.provision.model import Change, Plan, Resource
from streamkeeper.provision.state import Known
from streamkeeper.vendors.http.redact import redact


def plan_connection(adapter: Adapter, known: Known | None = None, prune: bool = False) -> Plan:
    """Plan one connection.

    Args:
        adapter: the connection's adapter.
        known: what the history store holds (`known_from_store`); None treats every match as managed.
        prune: delete what the vendor holds and the spec does not name.

    Raises:
        VendorError: the vendor could not be read.
    """
    known = known.of(adapter.vendor, adapter.account) if known is not None else None
    actual = adapter.read()
    desired, errors = adapter.desired(actual)
    changes: list[Change] = []
    unmanaged: list[Resource] = []
    owned_elsewhere: list[Resource] = []
    for d, a in adapter.match(desired, actual, known):
        if d is not None and a is not None:
            changes.append(_compare(adapter, d, a, known))
        elif d is not None:
            changes.append(_change("create", adapter, d, None))
        elif a is not None:
            entry = known.by_id(adapter.vendor, adapter.account, a.id) if known is not None else None
            if entry is not None and entry.owner is not None:
                owned_elsewhere.append(a.model_copy(update={"owner": entry.owner}))
            elif prune:
                changes.append(_change("delete", adapter, None, a, reason="not in the spec"))
            else:
                unmanaged.append(a)
    errors += adapter.finalize(changes, unmanaged, prune)
    vanished = adapter.vanished(known, actual) if known is not None else []
    prefix = f"{adapter.vendor}/{adapter.account}: "
    return Plan(
        changes=changes,
        unmanaged=unmanaged,
        owned_elsewhere=owned_elsewhere,
        vanished=vanished,
        errors=[e if e.startswith(prefix) else prefix + e for e in errors],
        prune=prune,
    )


def plan_all(
    adapters: Sequence[Adapter], known: Known | None = None, prune: bool = False, workers: int = 8
) -> Plan:
    """Plan several connections at once (their reads run in parallel); a read that fails is a plan error."""

    def one(adapter: Adapter) -> Plan:
        try:
            return plan_connection(adapter, known, prune)
        except StreamkeeperError as exc:
            return Plan(errors=[f"{adapter.vendor}/{adapter.account}: {redact(str(exc))}"], prune=prune)

    if not adapters:
        return Plan(prune=prune)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(adapters)))) as pool:
        return Plan.merge(list(pool.map(one, adapters)))


def _compare(adapter: Adapter, d: Resource, a: Resource, known: Known | None) -> Change:
    diffs = adapter.compare(d, a, known)
    # adopted: the history does not know it yet, or knows it under another name (a rename)
    entry = known.by_id(adapter.vendor, adapter.account, a.id) if known is not None else None
    adopt = known is not None and (entry is None or (d.name is not None and entry.name != d.name))
    if diffs:
        action = "replace" if adapter.needs_replace(d, diffs) else "update"
    else:
        action = "adopt" if adopt else "noop"
    change = _change(action, adapter, d, a)
    change.diffs = diffs
    change.adopt = adopt
    return change


def _change(
    action: str, adapter: Adapter, d: Resource | None, a: Resource | None, reason: str | None = None
) -> Change:
    source = d or a
    assert source is not None
    return Change(
        action=action,  # type: ignore[arg-type]
        vendor=adapter.vendor,
        account=adapter.account,
        type=source.type,
        name=d.name if d is not None else a.name if a is not None else None,
        subscription_id=a.id if a is not None else None,
        kind=source.kind,
        scope=source.scope,
        reason=reason,
        desired=d,
        actual=a,
    )


__all__ = ["plan_all", "plan_connection"]
