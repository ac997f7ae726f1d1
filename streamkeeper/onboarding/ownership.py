"""What onboarding owns at Stream: the feature-flag and segment targeting it gave the organisation.

Onboarding puts the org's context in the spec's flags and segments. provision-subscriptions and
audit-subscriptions see those contexts too (a Stream connection reads every context of the partner), and
would list them as "not in the spec", report them as drift and delete them with ``prune``. So each one is
recorded in the history's ``subscriptions`` under the provisioning adapter's own id, with ``owner``
``onboard-organization``: the planner leaves what another flow owns alone (`Plan.owned_elsewhere`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from streamkeeper.provision.adapters.stream import targeting_id
from streamkeeper.store.records import SubscriptionVersion

OWNER = "onboard-organization"
"""The ``owner`` of what onboarding made (the flow's name)."""


def targeting_versions(
    account: str,
    org_key: str,
    org_id: str,
    kind: str,
    targets: Sequence[tuple[str, str]],
    added: Collection[tuple[str, str]],
    recorded: Collection[str],
) -> list[SubscriptionVersion]:
    """History rows for the org's targeting that the history does not hold yet.

    Args:
        account: the Stream credentials block (the history's ``account``, as provisioning names it).
        org_key: the organisation's provider id; org_id: its Stream id (the context key).
        kind: the context kind.
        targets: ``(where, key)`` pairs the org is now in: ``("flag", "new-menu-sync")``,
            ``("segment", "beta-merchants")``.
        added: the pairs this run added (``created``; the others were there already: ``adopted``).
        recorded: the ids the history holds as current for the account (whoever owns them: a spec entry
            that names one keeps it).
    """
    out = []
    for where, key in targets:
        subscription_id = targeting_id(kind, org_id, where, key)
        if subscription_id in recorded:
            continue
        out.append(
            SubscriptionVersion(
                vendor="stream",
                account=account,
                subscription_id=subscription_id,
                name=f"onboarding:{org_key}:{where}:{key}",
                kind=where,
                observed={"target": key, "context": {"key": org_id, "kind": kind}},
                status="active",
                change="created" if (where, key) in added else "adopted",
                owner=OWNER,
                detail=f"onboarding of {org_key} put the org in {where} {key}",
            )
        )
    return out


__all__ = ["OWNER", "targeting_versions"]
