"""``streamkeeper onboard SPEC``: the onboard-organization flow, from the command line.

    streamkeeper onboard data/specs/onboarding-example.yaml --block demo-stream
    streamkeeper onboard spec.yaml --codes-block luigis-codes     # a Secret block: {"square": "CODE", ...}

OAuth codes are secrets: never an argument. The run pauses for each code it lacks (or that Stream
rejects). On a terminal the command asks for the code itself, without echo (the same form the Prefect UI
shows on the paused run; either one resumes it); otherwise resume it from the UI. It ends with each
step's outcome, the single-use SSO links (printed here only), and what still needs a human.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

SpecArg = Annotated[
    Path, typer.Argument(help="The onboarding spec (YAML), e.g. data/specs/onboarding-example.yaml.")
]
BlockOpt = Annotated[str, typer.Option("--block", help="Name of the Stream Partner Credentials block.")]
CodesBlockOpt = Annotated[
    str | None,
    typer.Option(
        "--codes-block",
        help='A Secret block holding the merchant\'s OAuth codes by source, e.g. {"square": "CODE"}.',
    ),
]
ReissueOpt = Annotated[
    bool,
    typer.Option("--reissue-sso-links", help="New SSO links for every listed user, even those who had one."),
]
TimeoutOpt = Annotated[int, typer.Option("--code-timeout", help="Seconds a paused run waits for a code.")]
DbOpt = Annotated[Path | None, typer.Option("--db", help="History store file (default $STREAMKEEPER_DB).")]


def register(app: typer.Typer) -> None:
    app.command("onboard")(onboard)


def onboard(
    spec: SpecArg,
    block: BlockOpt = "stream",
    codes_block: CodesBlockOpt = None,
    reissue_sso_links: ReissueOpt = False,
    code_timeout: TimeoutOpt = 3600,
    db: DbOpt = None,
) -> None:
    """Onboard a Stream partner organisation: token, org, OAuth, locations, DSPs, menus, flags, SSO links."""
    from streamkeeper.onboarding import load_spec

    parsed = load_spec(spec)  # a bad spec fails here, before Prefect starts

    from streamkeeper.cli import _start_prefect, echo
    from streamkeeper.store import HistoryStore
    from streamkeeper.store.records import utcnow

    _start_prefect()
    from flows.onboard import onboard_organization

    stop = threading.Event()
    if sys.stdin.isatty():
        desk = threading.Thread(
            target=answer_paused_runs,
            args=(HistoryStore(db), parsed.org_key, utcnow(), ask_on_terminal, stop),
            daemon=True,
        )
        desk.start()
    try:
        result = onboard_organization(
            spec_path=str(spec),
            block_name=block,
            codes_block=codes_block,
            code_timeout_seconds=code_timeout,
            reissue_sso_links=reissue_sso_links,
            db_path=str(db) if db else None,
        )
    finally:
        stop.set()
    echo(render(result))


def render(result: Any) -> str:
    """The steps, the SSO links (secrets: shown here once), and what still needs a human."""
    from streamkeeper.cli import _table

    rows = [
        (
            r.step,
            r.status,
            ", ".join(r.created) or "-",
            ", ".join(r.existing) or "-",
            r.error or "; ".join(r.notes) or "",
        )
        for r in result.steps
    ]
    lines = [_table(("step", "status", "created", "already done", "notes"), rows), ""]
    for link in result.sso_links:
        lines.append(f"SSO login link for {link.email} (single use): {link.url.get_secret_value()}")
    for item in result.needs_human:
        lines.append(f"needs a human: {item}")
    lines.append(
        f"{result.org_key} ({result.org_id}): {result.status}; "
        f"{len(result.created)} created, {len(result.skipped)} already done"
    )
    return "\n".join(lines)


# -- answering a paused run ----------------------------------------------------------------------------
@dataclass(frozen=True)
class WaitingStep:
    """A step that waits for an OAuth code (a ``waiting`` row of ``onboarding_steps``)."""

    flow_run_id: str
    step: str
    ids: dict[str, Any]
    detail: str


def answer_paused_runs(
    store: Any,
    org_key: str,
    since: datetime,
    ask: Callable[[WaitingStep], str | None],
    stop: threading.Event,
    poll_seconds: float = 0.2,
) -> None:
    """Until `stop`: for each of the org's runs paused for a code since `since`, ask for it and resume the
    run with it, through Prefect's API exactly as the UI's form does. `ask` returning nothing leaves the
    run paused (for the UI).
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.flow_runs import resume_flow_run

    answered: set[tuple[str, str, str]] = set()  # a step asked again (a rejected code) is a new row
    while not stop.is_set():
        frame = store.query(
            "SELECT flow_run_id, step, ids, detail, started_at FROM onboarding_steps "
            "WHERE org_key = ? AND status = 'waiting' AND started_at >= ? ORDER BY started_at",
            [org_key, since],
        )
        for row in frame.itertuples():
            key = (str(row.flow_run_id), str(row.step), str(row.started_at))
            if key in answered or not row.flow_run_id:
                continue
            with get_client(sync_client=True) as client:
                try:
                    run = client.read_flow_run(row.flow_run_id)
                except ObjectNotFound:
                    answered.add(key)
                    continue
            if run.state is None or not run.state.is_paused():
                if run.state is not None and run.state.is_final():
                    answered.add(key)
                continue  # not paused yet (the row is written just before the pause)
            waiting = WaitingStep(
                key[0],
                key[1],
                json.loads(row.ids if isinstance(row.ids, str) else "{}"),
                str(row.detail or ""),
            )
            code = ask(waiting)
            answered.add(key)
            if code:
                resume_flow_run(run.id, run_input={"code": code})
        stop.wait(poll_seconds)


def ask_on_terminal(waiting: WaitingStep) -> str | None:
    """Ask the operator for the code on the terminal (empty: leave the run paused for the UI)."""
    typer.echo(f"\n{waiting.step}: {waiting.detail}")
    code = typer.prompt("OAuth code (empty: resume from the Prefect UI instead)", default="", hide_input=True)
    return code.strip() or None
