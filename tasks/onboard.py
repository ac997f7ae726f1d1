"""Tasks of the ``onboard-organization`` flow: one per onboarding step, each with its own retry policy.

Every task runs one step of `streamkeeper.onboarding.steps` inside the run's `Journal` (a row in
``onboarding_steps`` whatever happens) and retries only what may pass later: the vendor unreachable,
429, 5xx, a busy history store. Steps read before they write, so a retried step never does anything
twice. The tasks share one `OnboardingRun` (one client, one token, one journal) and cache nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, cast

from prefect import task
from prefect.blocks.system import Secret
from prefect.cache_policies import NO_CACHE
from pydantic import SecretStr

from blocks.stream import StreamCredentials
from streamkeeper.errors import ConfigError, StoreError
from streamkeeper.onboarding import Journal, OnboardingSpec, SSOLink, issued_sso_users
from streamkeeper.onboarding import steps as onboarding_steps
from streamkeeper.onboarding.ownership import targeting_versions
from streamkeeper.store import HistoryStore, TokenEvent
from streamkeeper.vendors.http import CallRecorder, redact, register_secret
from streamkeeper.vendors.stream import (
    IntegrationType,
    Onboarding,
    OnboardingLocation,
    StreamClient,
    TokenInfo,
)


def transient_step(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry a step only when trying again later may succeed."""
    try:
        state.result(raise_on_failure=True)
    except StoreError:
        return True
    except Exception as exc:
        return bool(getattr(exc, "transient", False))
    return False


def oauth_codes(block: str | None, sources: Sequence[str]) -> dict[str, SecretStr]:
    """The merchant's OAuth codes by source, from a Prefect Secret block holding a JSON object
    (``{"square": "CODE", ...}``, as an object or as its JSON text); none without a block."""
    if not block:
        return {}
    from tasks.provision import load_secret

    value = load_secret(block)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, dict) or not all(isinstance(v, str) and v for v in value.values()):
        raise ConfigError(
            f"codes_block: Secret block {block!r} must hold a JSON object of OAuth codes by source, "
            'e.g. {"square": "CODE"}'
        )
    unknown = sorted(set(value) - set(sources))
    if unknown:
        raise ConfigError(
            f"codes_block: {', '.join(unknown)} in Secret block {block!r} not a source of the spec "
            f"({', '.join(sources)})"
        )
    for code in value.values():
        register_secret(code)
    return {source: SecretStr(code) for source, code in value.items()}


def slug(text: str) -> str:
    """A Prefect block/artifact-safe name part: lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "org"


class RefreshTokenSaver:
    """The client's ``on_token``: writes each new refresh token to the block before it is ever used.

    Stream's refresh tokens are single-use, so the block must hold the newest one, or the next run
    starts with a spent token (it then falls back to client_credentials). Each save is a ``token_events``
    row: ``rotated`` (refresh grant) or ``issued`` (client_credentials), never the token.
    """

    def __init__(self, credentials: StreamCredentials, block_name: str, store: HistoryStore) -> None:
        self.credentials = credentials
        self.block_name = block_name
        self.store = store

    def __call__(self, info: TokenInfo) -> None:
        events: list[TokenEvent] = []
        if info.refresh_refused:
            events.append(
                TokenEvent(
                    vendor="stream",
                    account=self.block_name,
                    event="failed",
                    detail="stored refresh token refused; used client_credentials",
                )
            )
        try:
            self.credentials.refresh_token = info.refresh_token
            self.credentials.save(self.block_name, overwrite=True)
        except Exception as exc:
            events.append(
                TokenEvent(
                    vendor="stream",
                    account=self.block_name,
                    event="failed",
                    detail=redact(
                        f"could not save the new refresh token to block {self.block_name!r}: {exc}"
                    ),
                )
            )
            self.store.record_token_events(events)
            raise
        events.append(
            TokenEvent(
                vendor="stream",
                account=self.block_name,
                event="rotated" if info.grant_type == "refresh_token" else "issued",
                expires_at=info.expires_at,
                detail=f"{info.grant_type} grant; new refresh token saved to block {self.block_name!r}",
            )
        )
        self.store.record_token_events(events)


class SecretBlockVault:
    """Keeps the partner token's value in a Prefect Secret block (`onboarding_steps.TokenVault`)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def location(self) -> str:
        return f"Prefect Secret block {self.name!r}"

    def holds(self) -> bool:
        try:
            Secret.load(self.name)
        except ValueError:
            return False
        return True

    def keep(self, value: SecretStr) -> None:
        Secret(value=value).save(self.name, overwrite=True)


class OnboardingRun:
    """What the steps of one flow run share: the spec, one Stream client, the journal, the store."""

    def __init__(
        self, spec: OnboardingSpec, block_name: str, journal: Journal, db_path: str | None = None
    ) -> None:
        self.spec = spec
        self.block_name = block_name
        self.journal = journal
        self.store: HistoryStore = journal.store or HistoryStore(db_path)
        self.recorder = CallRecorder()
        try:
            credentials = cast(StreamCredentials, StreamCredentials.load(block_name))
        except ValueError:
            raise ConfigError(
                f"no Stream credentials block named {block_name!r}: create it with "
                f"`streamkeeper connect stream --name {block_name}`"
            ) from None
        self.client: StreamClient = credentials.get_client(
            recorder=self.recorder, on_token=RefreshTokenSaver(credentials, block_name, self.store)
        )
        self.vault = SecretBlockVault(f"{slug(block_name)}-{slug(spec.org_key)}-partner-token")

    def close(self) -> None:
        """Close the client; write the rows still pending and the run's calls to ``api_calls``."""
        self.client.close()
        self.journal.flush()
        self.store.record_api_calls(self.recorder.drain())


@task(
    name="stream-token",
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    cache_policy=NO_CACHE,
    retry_condition_fn=transient_step,
)
def stream_token(run: OnboardingRun) -> None:
    """Get an access token (refresh grant, else client_credentials); the new refresh token is saved first."""
    with run.journal.step("token") as step:
        onboarding_steps.get_token(run.client, step)


@task(
    name="create-organization",
    retries=2,
    retry_delay_seconds=[5, 30],
    cache_policy=NO_CACHE,
    retry_condition_fn=transient_step,
)
def create_organization(run: OnboardingRun) -> str:
    """Find the organisation by provider id, else create it. Returns its id."""
    with run.journal.step("organization") as step:
        org_id = onboarding_steps.ensure_organization(run.client, run.spec, step)
    run.journal.org_id = org_id
    return org_id


@task(
    name="create-partner-token",
    retries=2,
    retry_delay_seconds=[5, 30],
    cache_policy=NO_CACHE,
    retry_condition_fn=transient_step,
)
def create_partner_token(run: OnboardingRun, org_id: str) -> None:
    """Find the org's partner token by name, else create it and keep its value in a Secret block."""
    with run.journal.step("partner-token") as step:
        onboarding_steps.ensure_partner_token(run.client, org_id, run.spec.partner_token, run.vault, step)


@task(
    name="start-oauth",
    task_run_name="start-oauth-{type}-{source}",
    retries=2,
    retry_delay_seconds=[5, 30],
    cache_policy=NO_CACHE,
    retry_condition_fn=transient_step,
)
def start_oauth(run: OnboardingRun, org_id: str, type: IntegrationType, source: str) -> Onboarding:
    """Find the org's integration of this source (active, else pending), else start the merchant's OAuth."""
    with run.journal.step(onboarding_steps.step_name("oauth-init", type, source)) as step:
        return onboarding_steps.start_integration(run.client, org_id, type, source, run.spec.return_url, step)


@task(
    name="complete-oauth",
    task_run_name="complete-oauth-{onboarding.type}-{onboarding.source}",
    retries=1,
    retry_delay_seconds=[5],
    cache_policy=NO_CACHE,
    retry_condition_fn=transient_step,
)
def complete_oauth(run: OnboardingRun, onboarding: Onboarding, code: SecretStr | None) -> Onboarding:
    """Check the integration; complete a pending one with the merchant's code; check it is active."""
    type: IntegrationType = "dsp" if onboarding.type == "dsp" else "pos"
    with run.journal.step(onboarding_steps.step_name("oauth-complete", type, onboarding.source)) as step:
        return onboarding_steps.complete_integration(run.client, onboarding, code, step)


@task(
    name="list-pos-locations",
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    cache_policy=NO_CACHE,
    retry_condition_fn=transient_step,
)
def list_pos_locations(run: OnboardingRun, onboarding: Onboarding) -> list[OnboardingLocation]:
    """The merchant's POS locations that the spec chooses."""
    with run.journal.step("pos-locations") as step:
        return onboarding_steps.choose_pos_locations(run.client, onboarding, run.spec, step)


@task(
    name="ingest-pos-locations",
    retries=2,
    retry_delay_seconds=[5, 30],
    cache_policy=NO_CACHE,
    retry_condition_fn=transient_step,
)
def ingest_pos_locations(
    run: OnboardingRun, org_id: str, onboarding: Onboarding, chosen: list[OnboardingLocation]
) -> dict[str, str]:
    """Ingest the chosen POS locations the org lacks. Returns POS provider id -> location id."""
    with run.journal.step("pos-ingest") as step:
        return onboarding_steps.ensure_pos_locations(run.client, org_id, onboarding, chosen, step)


@task(
    name="bind-dsp-locations",
    task_run_name="bind-dsp-locations-{onboarding.source}",
    retries=2,
    retry_delay_seconds=[5, 30],
    cache_policy=NO_CACHE,
    retry_condition_fn=transient_step,
)
def bind_dsp_locations(
    run: OnboardingRun, org_id: str, onboarding: Onboarding, index: int, pos_locations: dict[str, str]
) -> dict[str, str]:
    """Bind the DSP's stores to their POS locations. Returns store provider id -> DSP connection id."""
    source = run.spec.dsps[index].source
    with run.journal.step(onboarding_steps.step_name("bind", "dsp", source)) as step:
        return onboarding_steps.ensure_bindings(
            run.client, org_id, onboarding, run.spec, index, pos_locations, step
        )


@task(
    name="assign-menus",
    retries=2,
    retry_delay_seconds=[5, 30],
    cache_policy=NO_CACHE,
    retry_condition_fn=transient_step,
)
def assign_menus(run: OnboardingRun, org_id: str, connections: dict[tuple[str, str], str]) -> None:
    """Give each DSP connection the spec's menus, where it has others."""
    with run.journal.step("menus") as step:
        onboarding_steps.ensure_menus(run.client, org_id, run.spec, connections, step)


@task(
    name="target-feature-flags",
    retries=2,
    retry_delay_seconds=[5, 30],
    cache_policy=NO_CACHE,
    retry_condition_fn=transient_step,
)
def target_feature_flags(run: OnboardingRun, org_id: str) -> dict[str, Any]:
    """Add the org to the spec's segments and flags, then evaluate the flags to confirm; record that
    targeting as this flow's in ``subscriptions`` (so provisioning and the audit leave it alone)."""
    with run.journal.step("feature-flags") as step:
        served = onboarding_steps.ensure_flags(run.client, org_id, run.spec, step)
    spec = run.spec
    targets = [("flag", f) for f in spec.flags] + [("segment", s) for s in spec.segments]
    added = {("flag", f) for f in step.ids.get("flags_added", [])}
    added |= {("segment", s) for s in step.ids.get("segments_added", [])}
    if targets:
        current = run.store.current_subscriptions("stream", run.block_name)
        recorded = set(current["subscription_id"].astype(str)) if not current.empty else set()
        run.store.record_versions(
            targeting_versions(
                run.block_name, spec.org_key, org_id, spec.context_kind, targets, added, recorded
            )
        )
    return served


@task(
    name="issue-sso-links",
    retries=1,
    retry_delay_seconds=[5],
    cache_policy=NO_CACHE,
    retry_condition_fn=transient_step,
)
def issue_sso_links(run: OnboardingRun, reissue: bool = False) -> list[SSOLink]:
    """A single-use SSO link for each listed user who has not had one (or everyone, with `reissue`)."""
    issued = set() if reissue else issued_sso_users(run.store, run.spec.org_key)
    with run.journal.step("sso-links") as step:
        return onboarding_steps.issue_sso_links(run.client, run.spec, issued, step, reissue=reissue)


__all__ = [
    "OnboardingRun",
    "RefreshTokenSaver",
    "SecretBlockVault",
    "assign_menus",
    "bind_dsp_locations",
    "complete_oauth",
    "create_organization",
    "create_partner_token",
    "ingest_pos_locations",
    "issue_sso_links",
    "list_pos_locations",
    "slug",
    "start_oauth",
    "stream_token",
    "target_feature_flags",
    "transient_step",
]
