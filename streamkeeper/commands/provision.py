"""``streamkeeper plan SPEC`` and ``streamkeeper apply SPEC``: the provision-subscriptions flow.

``plan`` exits 0 when nothing would change, 2 when changes are pending, 1 on an error (a bad spec, an
unreachable vendor, a rule the spec breaks). ``apply`` exits 0 when every change succeeded, 1 otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

SpecArg = Annotated[Path, typer.Argument(help="The spec YAML file, e.g. data/specs/example.yaml.")]
PruneOpt = Annotated[
    bool, typer.Option("--prune", help="Also delete what the vendors hold and the spec does not name.")
]
DbOpt = Annotated[Path | None, typer.Option("--db", help="History store file (default $STREAMKEEPER_DB).")]


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
    app.command("apply")(apply)


def plan(spec: SpecArg, prune: PruneOpt = False, db: DbOpt = None) -> int:
    """Show what apply would change (reads only). Exit 0: nothing; 2: changes pending; 1: error."""
    result = _run(spec, dry_run=True, prune=prune, db=db)
    from streamkeeper.cli import echo

    echo(result.plan.render())
    return int(result.plan.exit_code)


def apply(spec: SpecArg, prune: PruneOpt = False, db: DbOpt = None) -> int:
    """Make the vendors match the spec (idempotent: a second apply changes nothing)."""
    result = _run(spec, dry_run=False, prune=prune, db=db)
    from streamkeeper.cli import echo

    for change in result.plan.pending()[:200]:
        echo(change.describe())
    if result.outcomes:
        echo(_outcomes_table(result.outcomes))
    echo(result.summary())
    return 0


def _run(spec: Path, *, dry_run: bool, prune: bool, db: Path | None) -> Any:
    from streamkeeper.cli import _start_prefect
    from streamkeeper.spec import load_spec

    load_spec(spec)  # a bad spec fails here, before Prefect starts
    _start_prefect()
    from flows.provision import provision_subscriptions

    return provision_subscriptions(
        spec_path=str(spec), dry_run=dry_run, prune=prune, db_path=str(db) if db else None
    )


def _outcomes_table(outcomes: list[Any], limit: int = 200) -> str:
    from streamkeeper.cli import _table

    rows = [
        (o.result, f"{o.vendor}/{o.account}", o.type, o.name or "", o.subscription_id or "", o.detail or "")
        for o in outcomes[:limit]
    ]
    text = _table(("result", "connection", "type", "name", "id", "detail"), rows)
    return text + (f"\n... and {len(outcomes) - limit} more" if len(outcomes) > limit else "")
