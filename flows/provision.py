"""``provision-subscriptions``: plan (dry run) or apply a subscriptions spec across all five vendors.

Like ``terraform plan`` / ``apply``: read what each vendor holds, compare it with the spec field by field,
and (unless a dry run) make the changes; every change and adoption becomes a row version in
``subscriptions``. Reading is one task per vendor connection, applying one more per connection.
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel, Field

from flows.artifacts import connection, cut
from flows.parameters import Text, existing_file, given
from streamkeeper.errors import ConfigError, StreamkeeperError
from streamkeeper.provision import Outcome, Plan
from streamkeeper.spec import ProvisioningSpec, load_spec, load_spec_text
from tasks.provision import apply_connection_task, plan_connection_task, read_known

ARTIFACT_ROWS = 500  # a plan of 10,000 changes shows its first rows; the summary counts them all


class ProvisionResult(BaseModel):
    """What a run planned and, unless a dry run, what applying did."""

    plan: Plan
    applied: bool = False
    outcomes: list[Outcome] = Field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    def summary(self) -> str:
        if not self.applied:
            return "Plan: " + self.plan.summary()
        counts: dict[str, int] = {}
        for o in self.outcomes:
            counts[o.result] = counts.get(o.result, 0) + 1
        done = ", ".join(f"{n} {result}" for result, n in sorted(counts.items())) or "nothing to do"
        return f"Applied: {done}"


@flow(name="provision-subscriptions", log_prints=True)
def provision_subscriptions(
    spec_path: Text = None,
    spec_yaml: Text = None,
    dry_run: bool = True,
    prune: bool = False,
    db_path: Text = None,
    workers: Annotated[int, Field(ge=1, le=64)] = 16,
) -> ProvisionResult:
    """Plan the spec against every vendor connection; apply it unless `dry_run`.

    Args:
        spec_path: Spec file (YAML), e.g. data/specs/example.yaml; a relative path is taken from the
            deployment's working directory. Or give spec_yaml.
        spec_yaml: The spec itself as YAML text, instead of spec_path.
        dry_run: Only plan: read the vendors and report the changes (the provision-plan artifact), write
            nothing.
        prune: Also delete what the vendors hold and the spec does not name (never what another flow
            owns, such as the feature-flag targeting onboarding made).
        db_path: History store file; empty: $STREAMKEEPER_DB, else data/streamkeeper.duckdb.
        workers: Parallel vendor calls per connection (1 to 64).
    """
    logger = get_run_logger()
    db_path = given(db_path)
    spec = _load(given(spec_path), given(spec_yaml))
    known = read_known(db_path)
    connections = spec.connections()
    futures = [plan_connection_task.submit(v, c, known, prune, db_path) for v, c in connections]
    plans = [f.result() for f in futures]
    plan = Plan.merge(plans)
    _plan_artifact(plan, dry_run)
    logger.info("plan: %s", plan.summary())
    if plan.errors:
        raise ConfigError(f"the plan has {len(plan.errors)} error(s): " + "; ".join(plan.errors))
    result = ProvisionResult(plan=plan)
    if dry_run:
        return result

    todo = [(v, c, p) for (v, c), p in zip(connections, plans, strict=True) if p.pending() or p.vanished]
    applying = [apply_connection_task.submit(v, c, p, db_path, workers) for v, c, p in todo]
    result.outcomes = [o for f in applying for o in f.result()]
    result.applied = True
    _outcome_artifact(result)
    logger.info("%s", result.summary())
    if result.failed:
        first = result.failed[0]
        raise StreamkeeperError(
            f"{len(result.failed)} of {len(result.outcomes)} change(s) failed (recorded; run apply again); "
            f"first: {first.vendor}/{first.account} {first.name or first.subscription_id}: {first.detail}"
        )
    return result


def _load(spec_path: str | None, spec_yaml: str | None) -> ProvisioningSpec:
    if (spec_path is None) == (spec_yaml is None):
        raise ConfigError("give exactly one of spec_path or spec_yaml")
    return load_spec(existing_file(spec_path)) if spec_path is not None else load_spec_text(spec_yaml or "")


def _plan_artifact(plan: Plan, dry_run: bool) -> None:
    """The ``provision-plan`` table (columns that fit the UI, `flows.artifacts`) and, when there are any,
    the notes: errors, what the spec does not name, what another flow owns."""
    rows = [
        {
            "action": row["action"],
            "connection": connection(row["vendor"], row["account"]),
            "what": cut(f"{row['type']} {row['name']}", 26),
            "changes": cut(row["changes"], 30),
        }
        for row in plan.rows()
    ]
    description = ("Dry run. " if dry_run else "") + plan.summary()
    if len(rows) > ARTIFACT_ROWS:
        description += f" (first {ARTIFACT_ROWS} of {len(rows)} changes shown)"
    description += "; each change in full: `streamkeeper plan SPEC`"
    create_table_artifact(
        key="provision-plan", table=rows[:ARTIFACT_ROWS] or [{"action": "none"}], description=description
    )
    if plan.errors or plan.unmanaged or plan.owned_elsewhere:
        lines = ["# Plan notes", ""]
        lines += [f"- **error**: {e}" for e in plan.errors]
        lines += [
            f"- not in the spec (left alone{'' if plan.prune else ', --prune deletes it'}): "
            f"{r.vendor}/{r.account} {r.type} {r.label()}"
            for r in plan.unmanaged[:ARTIFACT_ROWS]
        ]
        lines += [
            f"- owned by {r.owner} (left alone, also with prune): {r.vendor}/{r.account} {r.kind or r.type} "
            f"{r.label()}"
            for r in plan.owned_elsewhere[:ARTIFACT_ROWS]
        ]
        create_markdown_artifact(key="provision-plan-notes", markdown="\n".join(lines))


def _outcome_artifact(result: ProvisionResult) -> None:
    rows = [
        {
            "result": o.result,
            "connection": connection(o.vendor, o.account),
            "what": cut(f"{o.type} {o.name or o.subscription_id or ''}", 26),
            "detail": cut(o.detail, 30),
        }
        for o in result.outcomes
    ]
    create_table_artifact(
        key="provision-apply",
        table=rows[:ARTIFACT_ROWS] or [{"result": "nothing to do"}],
        description=result.summary(),
    )


def save_sandbox_connections(urls: dict[str, str], dma_ca_pem: str, prefix: str = "demo") -> list[str]:
    """Save the blocks the example spec names (``<prefix>-plt`` ... ``<prefix>-equinix`` and the two secret
    blocks it refers to), pointing at running emulators (`Sandbox.urls()`); returns the block names.

    For the demo and tests: the credentials are the emulators' ready-made ones.
    """
    from flows.demo import Credentials

    return Credentials().save_blocks_at(urls, dma_ca_pem, prefix)
