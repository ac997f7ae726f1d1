"""Subscriptions as code: plan and apply a `ProvisioningSpec` across the five vendors (no Prefect here).

    from streamkeeper.provision import make_adapter, plan_connection, apply_plan, versions, known_from_store
    adapter = make_adapter("dma", spec.dma[0], dma_client, secrets=lambda name: vault[name])
    plan = plan_connection(adapter, known_from_store(store), prune=False)   # reads only
    print(plan.render()); plan.exit_code                                   # 0 nothing, 2 changes, 1 errors
    outcomes = apply_plan(adapter, plan)                                    # writes, stage by stage
    store.record_versions(versions(outcomes))                              # one row per change/adoption

Layout: `model` (Resource, Change, Plan, Outcome), `state` (what the history knows), `planner`,
`applier`, `adapters` (one per vendor).
"""

from streamkeeper.provision.adapters import ADAPTERS, Adapter, SecretSource, make_adapter
from streamkeeper.provision.applier import DEFAULT_WORKERS, apply_all, apply_plan, versions
from streamkeeper.provision.model import ACTIONS, Action, Change, FieldDiff, Outcome, Plan, Resource
from streamkeeper.provision.planner import plan_all, plan_connection
from streamkeeper.provision.state import Known, KnownResource, known_from_store

__all__ = [
    "ACTIONS",
    "ADAPTERS",
    "DEFAULT_WORKERS",
    "Action",
    "Adapter",
    "Change",
    "FieldDiff",
    "Known",
    "KnownResource",
    "Outcome",
    "Plan",
    "Resource",
    "SecretSource",
    "apply_all",
    "apply_plan",
    "known_from_store",
    "make_adapter",
    "plan_all",
    "plan_connection",
    "versions",
]
