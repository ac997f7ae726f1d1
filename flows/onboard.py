"""``onboard-organization``: take a Stream partner organisation from a token to live locations.

Steps, in order, each a task that first reads what exists and only then writes what is missing (so a
re-run after success writes nothing, and a re-run after a failure picks up where it stopped):
token -> organisation -> partner token -> POS OAuth (init, the merchant authorises, complete, status)
-> POS locations -> ingest -> per DSP: OAuth the same way, bind stores -> menus -> flags and segments
(evaluated to confirm) -> SSO links.

The merchant's OAuth code is a parameter when known; otherwise the run pauses and waits for it: the
operator pastes it into the form the Prefect UI shows on the paused run, and the run resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import BaseModel, Field, SecretStr

from streamkeeper.errors import ConfigError
from streamkeeper.onboarding import Journal, OnboardingError, OnboardingSpec, SSOLink, StepRecord
from streamkeeper.onboarding.spec import guess_org_key, load_spec, load_spec_text
from streamkeeper.onboarding.steps import authorise_hint, step_name
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
    slug,
    start_oauth,
    stream_token,
    target_feature_flags,
)
from tasks.store import history_store

CODE_POLL_SECONDS = 1
"""How often a paused run checks whether it was resumed."""


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
    spec_path: Annotated[
        str | None, Field(description="Onboarding spec file (YAML); or give spec_yaml.")
    ] = None,
    spec_yaml: Annotated[
        str | None, Field(description="The onboarding spec itself, as YAML text; or give spec_path.")
    ] = None,
    block_name: Annotated[str, Field(description="Name of the Stream Partner Credentials block.")] = "stream",
    pos_code: Annotated[
        SecretStr | None,
        Field(description="The merchant's OAuth code for the POS, if known; else the run pauses for it."),
    ] = None,
    dsp_codes: Annotated[
        dict[str, SecretStr] | None,
        Field(description="OAuth codes by DSP source (e.g. doordash: CODE), if known; else the run pauses."),
    ] = None,
    code_timeout_seconds: Annotated[
        int, Field(ge=1, description="How long a paused run waits for an OAuth code, in seconds.")
    ] = 3600,
    reissue_sso_links: Annotated[
        bool, Field(description="Issue new SSO links to every listed user, even those who had one.")
    ] = False,
    db_path: Annotated[str | None, Field(description="History store file; default $STREAMKEEPER_DB.")] = None,
) -> OnboardingResult:
    """Onboard one Stream organisation as the spec says; idempotent and resumable."""
    logger = get_run_logger()
    spec, journal = _read_spec(spec_path, spec_yaml, dsp_codes, db_path)
    with journal.step("credentials") as step:
        run = OnboardingRun(spec, block_name, journal, db_path)
        step.status = "done"
        step.notes.append(f"Stream credentials block {block_name!r}")
    codes = dict(dsp_codes or {})
    links: list[SSOLink] = []
    try:
        stream_token(run)
        org_id = create_organization(run)
        create_partner_token(run, org_id)
        pos = _connect(run, org_id, "pos", spec.pos.source, pos_code, code_timeout_seconds)
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
    dsp_codes: dict[str, SecretStr] | None,
    db_path: str | None,
) -> tuple[OnboardingSpec, Journal]:
    """Load and check the spec under the ``spec`` step (a bad spec is a failed row too)."""
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
        spec = load_spec(spec_path) if spec_path else load_spec_text(spec_yaml or "", source=source)
        journal.org_key = spec.org_key
        unknown = sorted(set(dsp_codes or {}) - {d.source for d in spec.dsps})
        if unknown:
            raise ConfigError(f"dsp_codes: {', '.join(unknown)} not a DSP source of the spec")
        step.status = "done"
        step.notes.append(f"{source} is valid")
    return spec, journal


def _connect(
    run: OnboardingRun,
    org_id: str,
    type: IntegrationType,
    source: str,
    code: SecretStr | None,
    timeout: int,
) -> Onboarding:
    """OAuth for one source: find or start the integration, get the merchant's code if needed, complete."""
    onboarding = start_oauth(run, org_id, type, source)
    if code is not None and not code.get_secret_value():
        code = None
    if onboarding.status != "active" and code is None:
        code = _wait_for_code(run, onboarding, type, source, timeout)
    return complete_oauth(run, onboarding, code)


def _wait_for_code(
    run: OnboardingRun, onboarding: Onboarding, type: IntegrationType, source: str, timeout: int
) -> SecretStr:
    """Pause the run until someone resumes it with the merchant's OAuth code (the Prefect UI's form)."""
    logger = get_run_logger()
    step = step_name("oauth-complete", type, source)
    hint = authorise_hint(onboarding, source)
    run.journal.waiting(
        step,
        f"{hint}; then resume the paused run with the code",
        {"org_id": onboarding.org_id, "onboarding_id": onboarding.id, "type": type, "source": source},
    )
    _publish(run.journal)
    logger.info("waiting up to %d s for the %s OAuth code: %s", timeout, source, hint)
    form = OAuthCode.with_initial_data(
        description=(
            f"### OAuth code for {source} ({type})\n\n"
            f"1. The merchant opens {onboarding.entry_url} and approves access.\n"
            f"2. Their browser lands on the return URL with `?code=...`.\n"
            "3. Paste that code here and resume."
        )
    )
    try:
        answer = pause_flow_run(wait_for_input=form, timeout=timeout, poll_interval=CODE_POLL_SECONDS)
    except FlowPauseTimeout:
        with run.journal.step(step):
            raise OnboardingError(
                step, f"no OAuth code within {timeout} s; {hint}, then run again with the code"
            ) from None
    return answer.code


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
