"""``onboard-organization``: take a Stream partner organisation from a token to live locations.

Steps, in order, each a task that first reads what exists and only then writes what is missing (so a
re-run after success writes nothing, and a re-run after a failure picks up where it stopped):
token -> organisation -> partner token -> POS OAuth (init, the merchant authorises, complete, status)
-> POS locations -> ingest -> per DSP: OAuth the same way, bind stores -> menus -> flags and segments
(evaluated to confirm, and recorded as this flow's in the history, so provisioning leaves them alone)
-> SSO links.

The merchant's OAuth codes are secrets, so they are never a run parameter (the UI would show them in the
run's Parameters tab): the run pauses and waits for each one, and the operator pastes it into the form
the Prefect UI shows on the paused run (the run deletes the answer once read); or a Secret block holds
them (`codes_block`). A code Stream rejects is asked for again, with Stream's reason in the form, up to
`MAX_CODES` times. Each pause has a key of its own, so a run retried from the UI (after a failure at any
step, a pause that timed out included) runs again from the top, passes what is done, and pauses anew
where it stopped.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput, keyset_from_base_key
from prefect.input.actions import delete_flow_run_input
from pydantic import BaseModel, Field, SecretStr

from flows.parameters import Text, existing_file, given
from streamkeeper.onboarding import Journal, OnboardingError, OnboardingSpec, SSOLink, StepRecord
from streamkeeper.onboarding.spec import guess_org_key, load_spec, load_spec_text
from streamkeeper.onboarding.steps import CodeRejected, authorise_hint, step_name
from streamkeeper.vendors.http import redact, register_secret
from streamkeeper.vendors.stream import IntegrationType, Onboarding
from tasks.onboard import (
    OnboardingRun,
    assign_menus,
    bind_dsp_locations,
    complete_oauth,
    create_organization,
    create_partner_token,
    ingest_pos_locations,
    issue_sso_links,
    list_pos_locations,
    oauth_codes,
    slug,
    start_oauth,
    stream_token,
    target_feature_flags,
)
from tasks.store import history_store

CODE_POLL_SECONDS = 1
"""How often a paused run checks whether it was resumed."""

MAX_CODES = 3
"""OAuth codes tried per source and run before the run fails (each rejected one is asked for again)."""


class OAuthCode(RunInput):
    """The form a paused run shows: the code from the merchant's authorisation."""

    code: SecretStr = Field(
        description="The OAuth code: the `code` parameter of the return URL the merchant's browser reached."
    )


class OnboardingResult(BaseModel):
    """What an onboarding run did. `sso_links` hold secrets (single-use links): hand them on, never log."""

    org_key: str
    org_id: str | None
    status: Literal["live", "needs a human"]
    created: list[str]
    skipped: list[str]
    needs_human: list[str]
    steps: list[StepRecord]
    sso_links: list[SSOLink] = Field(default_factory=list)


@flow(name="onboard-organization", log_prints=True, persist_result=False)
def onboard_organization(
    spec_path: Text = None,
    spec_yaml: Text = None,
    block_name: str = "stream",
    codes_block: Text = None,
    code_timeout_seconds: Annotated[int, Field(ge=1)] = 3600,
    reissue_sso_links: bool = False,
    db_path: Text = None,
) -> OnboardingResult:
    """Onboard one Stream organisation as the spec says; idempotent and resumable.

    Args:
        spec_path: Onboarding spec file (YAML), e.g. data/specs/onboarding-example.yaml; a relative path is
            taken from the deployment's working directory. Or give spec_yaml.
        spec_yaml: The onboarding spec itself, as YAML text, instead of spec_path.
        block_name: Name of the Stream Partner Credentials block.
        codes_block: Optional: a Secret block holding the merchant's OAuth codes by source, as JSON, e.g.
            {"square": "CODE", "doordash": "CODE"}. Without it, for a source it lacks, or for a code Stream
            rejects, the run pauses and asks for the code in its Resume form.
        code_timeout_seconds: How long a paused run waits for an OAuth code, in seconds; then it fails
            (retry it to be asked again).
        reissue_sso_links: Issue new single-use SSO links to every listed user, even those who had one.
        db_path: History store file; empty: $STREAMKEEPER_DB, else data/streamkeeper.duckdb.
    """
    logger = get_run_logger()
    db = given(db_path)
    spec, journal, codes = _read_spec(given(spec_path), given(spec_yaml), given(codes_block), db)
    with journal.step("credentials") as step:
        run = OnboardingRun(spec, block_name, journal, db)
        step.status = "done"
        step.notes.append(f"Stream credentials block {block_name!r}")
    links: list[SSOLink] = []
    try:
        stream_token(run)
        org_id = create_organization(run)
        create_partner_token(run, org_id)
        pos = _connect(run, org_id, "pos", spec.pos.source, codes.get(spec.pos.source), code_timeout_seconds)
        chosen = list_pos_locations(run, pos)
        pos_locations = ingest_pos_locations(run, org_id, pos, chosen) if chosen else {}
        connections: dict[tuple[str, str], str] = {}
        for index, dsp in enumerate(spec.dsps):
            onboarding = _connect(run, org_id, "dsp", dsp.source, codes.get(dsp.source), code_timeout_seconds)
            bound = bind_dsp_locations(run, org_id, onboarding, index, pos_locations)
            connections.update({(dsp.source, store): cid for store, cid in bound.items()})
        assign_menus(run, org_id, connections)
        target_feature_flags(run, org_id)
        links = issue_sso_links(run, reissue_sso_links)
    finally:
        _publish(run.journal)
        run.close()
    needs_human = journal.needs_human()
    for item in needs_human:
        logger.info("needs a human: %s", item)
    result = OnboardingResult(
        org_key=spec.org_key,
        org_id=journal.org_id,
        status="needs a human" if needs_human else "live",
        created=journal.created(),
        skipped=journal.skipped(),
        needs_human=needs_human,
        steps=journal.records,
        sso_links=links,
    )
    logger.info(
        "onboarded %s (%s): %d created, %d already done",
        spec.org_key,
        journal.org_id,
        len(result.created),
        len(result.skipped),
    )
    return result


def _read_spec(
    spec_path: str | None,
    spec_yaml: str | None,
    codes_block: str | None,
    db_path: str | None,
) -> tuple[OnboardingSpec, Journal, dict[str, SecretStr]]:
    """Load and check the spec (and the codes block) under the ``spec`` step (a bad spec is a failed row)."""
    if spec_path and spec_yaml:
        raise OnboardingError("spec", "give spec_path or spec_yaml, not both")
    if not spec_path and not spec_yaml:
        raise OnboardingError("spec", "give spec_path (a YAML file) or spec_yaml (the YAML text)")
    try:
        text = Path(spec_path).read_text() if spec_path else (spec_yaml or "")
    except OSError:
        text = ""
    source = Path(spec_path).name if spec_path else "<spec_yaml>"
    journal = Journal(guess_org_key(text) or source, history_store(db_path))
    with journal.step("spec") as step:
        step.ids["source"] = source
        if spec_path:
            spec = load_spec(existing_file(spec_path, "onboarding spec file"))
        else:
            spec = load_spec_text(spec_yaml or "", source=source)
        journal.org_key = spec.org_key
        codes = oauth_codes(codes_block, [spec.pos.source, *(d.source for d in spec.dsps)])
        step.status = "done"
        step.notes.append(f"{source} is valid")
        if codes_block:
            step.notes.append(f"OAuth codes for {', '.join(sorted(codes)) or 'no source'} in {codes_block!r}")
    return spec, journal, codes


def _connect(
    run: OnboardingRun,
    org_id: str,
    type: IntegrationType,
    source: str,
    code: SecretStr | None,
    timeout: int,
) -> Onboarding:
    """OAuth for one source: find or start the integration, get the merchant's code if needed, complete.

    A code Stream rejects (unknown, used, expired) is asked for again, `MAX_CODES` codes in all.
    """
    onboarding = start_oauth(run, org_id, type, source)
    rejected: str | None = None
    for attempt in range(1, MAX_CODES + 1):
        if onboarding.status != "active" and code is None:
            code = _wait_for_code(run, onboarding, type, source, timeout, attempt, rejected)
        if code is not None and not code.get_secret_value().strip():
            code, rejected = None, "the code given was empty"
            continue
        try:
            return complete_oauth(run, onboarding, code)
        except CodeRejected as exc:
            code, rejected = None, redact(exc.reason)
            if attempt == MAX_CODES:
                raise OnboardingError(
                    exc.step,
                    f"Stream rejected {MAX_CODES} OAuth codes for {source} in this run (last: {exc.reason}); "
                    f"{authorise_hint(onboarding, source)}, then retry the run to be asked again",
                ) from exc
    raise OnboardingError(
        step_name("oauth-complete", type, source),
        f"no usable OAuth code for {source} in {MAX_CODES} tries ({rejected}); retry the run to be asked again",
    )


def _wait_for_code(
    run: OnboardingRun,
    onboarding: Onboarding,
    type: IntegrationType,
    source: str,
    timeout: int,
    attempt: int,
    rejected: str | None,
) -> SecretStr:
    """Pause the run until someone resumes it with the merchant's OAuth code (the Prefect UI's form).

    The pause gets a key of its own: Prefect's default key counts the pauses of one attempt, so a retried
    run would reuse the first attempt's key and fail (409: the flow run input already exists).
    """
    logger = get_run_logger()
    step = step_name("oauth-complete", type, source)
    hint = authorise_hint(onboarding, source)
    again = f"Stream rejected the last code ({rejected}); " if rejected else ""
    ids = {"org_id": onboarding.org_id, "onboarding_id": onboarding.id, "type": type, "source": source}
    run.journal.waiting(step, f"{again}{hint}; then resume the paused run with the code", ids)
    _publish(run.journal)
    logger.info(
        "waiting up to %d s for the %s OAuth code (%d of %d): %s", timeout, source, attempt, MAX_CODES, hint
    )
    lines = [f"### OAuth code for {source} ({type})", ""]
    if rejected:
        lines += [
            f"**Stream rejected the last code:** {rejected}. "
            f"Code {attempt} of {MAX_CODES}: the merchant authorises again for a new one.",
            "",
        ]
    lines += [
        f"1. The merchant opens {onboarding.entry_url} and approves access.",
        "2. Their browser lands on the return URL with `?code=...`.",
        "3. Paste that code here and resume.",
    ]
    form = OAuthCode.with_initial_data(description="\n".join(lines))
    key = f"{slug(step)}-{uuid.uuid4().hex[:12]}"
    try:
        answer = pause_flow_run(
            wait_for_input=form, timeout=timeout, poll_interval=CODE_POLL_SECONDS, key=key
        )
    except FlowPauseTimeout:
        with run.journal.step(step) as record:
            record.ids.update(ids)
            raise OnboardingError(
                step, f"no OAuth code within {timeout} s; {hint}, then retry the run to be asked again"
            ) from None
    _forget_answer(key)
    register_secret(answer.code.get_secret_value())  # masked wherever it might be echoed (logs, reasons)
    return answer.code


def _forget_answer(pause_key: str) -> None:
    """Delete the form's answer from the flow run's inputs: the code is read once, never kept in Prefect."""
    try:
        delete_flow_run_input(keyset_from_base_key(f"paused-{pause_key}")["response"])
    except Exception as exc:  # the code is single-use and spent by now: say so and go on
        get_run_logger().warning("could not delete the answered OAuth code form's input: %s", exc)


def _publish(journal: Journal) -> None:
    """The run's markdown artifact: created, skipped as already done, needs a human (no secrets)."""
    try:
        create_markdown_artifact(
            key=f"onboarding-{slug(journal.org_key)}",
            markdown=journal.markdown(),
            description=f"Stream onboarding of {journal.org_key}",
        )
    except Exception as exc:  # the report must never hide the run's own outcome
        get_run_logger().warning("could not publish the onboarding report: %s", exc)
