"""``streamkeeper audit SPEC [--heal]``: run ``audit-subscriptions`` and print the drift it found."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

SHOWN = 50


def register(app: typer.Typer) -> None:
    app.command()(audit)


def audit(
    spec: Annotated[
        Path, typer.Argument(help="Spec file: the connections to audit and what they should hold.")
    ],
    heal: Annotated[
        bool, typer.Option("--heal", help="Apply the spec when it drifted, then audit again.")
    ] = False,
    db: Annotated[Path | None, typer.Option(help="History store file (default $STREAMKEEPER_DB).")] = None,
) -> None:
    """Run audit-subscriptions: snapshot what each vendor holds and report drift against the spec and the last
    snapshot (also in `streamkeeper report drift`)."""
    from streamkeeper.cli import _start_prefect, echo
    from streamkeeper.spec import load_spec

    load_spec(spec)  # a spec mistake is one line, before Prefect starts
    _start_prefect()
    from flows.audit import audit_subscriptions

    summary = audit_subscriptions(spec_path=str(spec), heal=heal, db_path=str(db) if db else None)
    echo(render_summary(summary))


def render_summary(summary: Any) -> str:
    """Per connection what was seen, then the drift findings (the first few), then one line."""
    from streamkeeper.cli import _table

    audits = _table(
        ("vendor", "account", "resources", "unchanged", "bodies stored", "requests", "drift", "error"),
        [
            (
                a.vendor,
                a.account,
                a.observed,
                a.not_modified,
                a.bodies_stored,
                a.requests,
                len(a.findings),
                a.error or "",
            )
            for a in summary.audits
        ],
    )
    findings = summary.findings
    lines = [audits, ""]
    if findings:
        lines.append(
            _table(
                ("vendor", "account", "name", "id", "against", "finding", "detail"),
                [
                    (
                        f.vendor,
                        f.account,
                        f.name or "",
                        f.subscription_id or "",
                        f.against,
                        f.finding,
                        _detail(f),
                    )
                    for f in findings[:SHOWN]
                ],
            )
        )
        if len(findings) > SHOWN:
            lines.append(f"... and {len(findings) - SHOWN} more (streamkeeper report drift)")
        lines.append("")
    else:
        lines += ["no drift", ""]
    lines.append(("healed; " if summary.healed else "") + summary.line())
    return "\n".join(lines)


def _detail(finding: Any) -> str:
    if finding.detail:
        return str(finding.detail)
    if finding.fields:
        return json.dumps(finding.fields, default=str)[:120]
    return ""
