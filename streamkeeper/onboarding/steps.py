"""The onboarding steps, as plain functions over `StreamClient`.

Each step first reads what already exists at Stream and only then writes what is missing, so running a
step again after it succeeded makes no write, and running it again after it failed half-way finishes the
job without creating anything twice. Each takes the `StepRecord` of its step (see `journal`) and notes
there what it created, what it found, what needs a human, and the ids involved (never a secret).

Step names (the ``step`` column of ``onboarding_steps``; DSP steps carry the source after a colon):
``spec``, ``token``, ``organization``, ``partner-token``, ``pos-oauth-init``, ``pos-oauth-complete``,
``pos-locations``, ``pos-ingest``, ``dsp-oauth-init:<source>``, ``dsp-oauth-complete:<source>``,
``dsp-bind:<source>``, ``menus``, ``feature-flags``, ``sso-links``, and ``sso-login`` (`open_sso_link`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, SecretStr

from streamkeeper.onboarding.journal import OnboardingError, StepRecord
from streamkeeper.onboarding.spec import OnboardingSpec, PartnerTokenSpec
from streamkeeper.vendors.http import Conflict, NotFound
from streamkeeper.vendors.stream import (
    BindLocation,
    Context,
    IntegrationType,
    Onboarding,
    OnboardingLocation,
    OrgLocation,
    OrgUser,
    SSORedemption,
    StreamClient,
    TokenInfo,
)


def step_name(kind: str, type: IntegrationType | None = None, source: str | None = None) -> str:
    """``pos-oauth-init`` for the POS, ``dsp-oauth-init:doordash`` for a DSP."""
    name = f"{type}-{kind}" if type else kind
    return f"{name}:{source}" if type == "dsp" and source else name


# -- token -------------------------------------------------------------------------------------------------
def get_token(client: StreamClient, step: StepRecord) -> TokenInfo:
    """An access token: with the stored refresh token if it still works, else ``client_credentials``.

    The client's ``on_token`` callback (the flow's) stores the rotated refresh token before it is used.
    """
    info = client.refresh_tokens()
    step.status = "done"
    step.ids.update(grant=info.grant_type, expires_at=info.expires_at.isoformat(), scopes=info.scopes)
    step.notes.append(f"access token by {info.grant_type} grant, expires {info.expires_at:%H:%M:%S} UTC")
    if info.refresh_refused:
        step.notes.append("the stored refresh token was refused; fell back to client_credentials")
    return info


# -- organisation and partner token ------------------------------------------------------------------------
def ensure_organization(client: StreamClient, spec: OnboardingSpec, step: StepRecord) -> str:
    """The organisation's id: found by provider id, else created (with its owner). Returns the org id."""
    org = spec.organization
    found = client.find_organization(provider_id=org.provider_id)
    if found is None:
        owner = OrgUser(email=org.owner.email, first_name=org.owner.first_name, last_name=org.owner.last_name)
        try:
            created = client.create_organization(name=org.name, provider_id=org.provider_id, user=owner)
        except Conflict as exc:  # created meanwhile by someone else: take that one
            if exc.code != "org_exists":
                raise
            found = client.find_organization(provider_id=org.provider_id)
            if found is None:
                raise
        else:
            step.made(f"organisation {created.org_id}")
            step.ids.update(org_id=created.org_id, user_id=created.user_id)
            return created.org_id
    step.found(f"organisation {found.id}")
    step.ids.update(org_id=found.id, user_id=found.user_id)
    if found.name and found.name != org.name:
        step.notes.append(
            f"named {found.name!r} at Stream but {org.name!r} in the spec; Stream has no rename, left as is"
        )
    return found.id


class TokenVault(Protocol):
    """Where the partner token's value is kept (the flow uses a Prefect Secret block)."""

    def location(self) -> str:
        """Where, in words (for the report)."""
        ...

    def holds(self) -> bool:
        """Whether a value is kept there."""
        ...

    def keep(self, value: SecretStr) -> None:
        """Store the value (replacing any)."""
        ...


def ensure_partner_token(
    client: StreamClient, org_id: str, spec: PartnerTokenSpec, vault: TokenVault, step: StepRecord
) -> str | None:
    """The organisation's partner token named ``spec.name``: found, else created and its value kept.

    Stream shows a token's value once, in the create answer. If a token exists but its value never
    reached the vault (the answer was lost), that needs a human: revoke it at Stream, or rename it.
    Returns the token's id.
    """
    existing = [t for t in client.list_partner_tokens(org_id=org_id) if t.token_name == spec.name]
    step.ids.update(org_id=org_id, token_name=spec.name)
    if existing:
        token_id = existing[0].id
        step.found(f"partner token {spec.name!r} ({token_id})")
        step.ids["partner_token_id"] = token_id
        if not vault.holds():
            step.needs_human.append(
                f"partner token {spec.name!r} exists at Stream but its value was never stored in "
                f"{vault.location()} (its answer was lost): revoke it at Stream or set partner_token.name "
                "to a new name, then run again"
            )
        return token_id
    created = client.create_partner_token(org_id=org_id, token_name=spec.name, scopes=spec.scopes)
    step.made(f"partner token {spec.name!r} ({created.id})")
    step.ids["partner_token_id"] = created.id
    if created.token is None:
        step.needs_human.append(f"Stream sent no value for partner token {spec.name!r}")
    else:
        vault.keep(created.token)
        step.notes.append(f"value stored in {vault.location()}")
    return created.id


# -- OAuth integrations ------------------------------------------------------------------------------------
def start_integration(
    client: StreamClient,
    org_id: str,
    type: IntegrationType,
    source: str,
    return_url: str,
    step: StepRecord,
) -> Onboarding:
    """The integration of this org, source and type: an active one, else a pending one, else a new one."""
    found = client.list_integrations(org_id=org_id, source=source, type=type)
    active = [o for o in found if o.status == "active"]
    pending = [o for o in found if o.status == "pending"]
    if len(active) + len(pending) > 1:
        step.notes.append(f"{len(found)} {type} integrations for {source}; using the newest active one")
    if active or pending:
        onboarding = (active or pending)[-1]
        step.found(f"{type} integration {source} ({onboarding.id}, {onboarding.status})")
    else:
        onboarding = client.init_integration(org_id=org_id, source=source, type=type, return_url=return_url)
        step.made(f"{type} integration {source} ({onboarding.id}, {onboarding.status})")
    step.ids.update(
        org_id=org_id, type=type, source=source, onboarding_id=onboarding.id, status=onboarding.status
    )
    if onboarding.status != "active":
        step.needs_human.append(authorise_hint(onboarding, source))
    return onboarding


class CodeRejected(OnboardingError):
    """Stream refused the merchant's OAuth code (unknown, used or expired): asking again may help.

    Attributes:
        reason: Stream's error code and detail, e.g. ``invalid_code: unknown OAuth code for this onboarding``.
    """

    def __init__(self, step: str, message: str, reason: str) -> None:
        super().__init__(step, message)
        self.reason = reason


def authorise_hint(onboarding: Onboarding, source: str) -> str:
    where = onboarding.entry_url or "the integration's entry_url"
    return f"the merchant authorises {source} at {where}; the code comes back on the return URL (?code=...)"


def complete_integration(
    client: StreamClient, onboarding: Onboarding, code: SecretStr | str | None, step: StepRecord
) -> Onboarding:
    """Check the integration's status; if pending, complete it with the merchant's OAuth `code`, then check.

    Raises:
        CodeRejected: Stream refused the code (expired, used, unknown).
        OnboardingError: no code for a pending integration, or the integration is still not active
            afterwards.
    """
    source = onboarding.source or "?"
    kind = onboarding.type or "?"
    step.ids.update(onboarding_id=onboarding.id, source=source, type=kind, org_id=onboarding.org_id)
    step.resolves.append(step_name("oauth-init", "dsp" if kind == "dsp" else "pos", source))
    current = client.get_integration(onboarding.id)
    if current.status == "active":
        step.found(f"{kind} integration {source} active")
        step.ids["status"] = current.status
        if code is not None:
            step.notes.append("the OAuth code given was not needed")
        return current
    if code is None:
        raise OnboardingError(
            step.step,
            f"the {source} integration is {current.status} and no OAuth code was given: "
            f"{authorise_hint(current, source)}, then give the code",
        )
    value = code.get_secret_value() if isinstance(code, SecretStr) else code
    try:
        client.complete_integration(onboarding.id, value)
    except Conflict as exc:
        if exc.code in ("invalid_code", "code_expired") or exc.status == 422:
            verdict = "expired" if exc.code == "code_expired" else "rejected"
            reason = f"{exc.code}: {exc.detail}"
            raise CodeRejected(
                step.step,
                f"the OAuth code for {source} was {verdict} by Stream ({reason}); "
                f"{authorise_hint(current, source)} again, then give the new code",
                reason=reason,
            ) from exc
        raise
    checked = client.get_integration(onboarding.id)
    step.ids["status"] = checked.status
    if checked.status != "active":
        raise OnboardingError(
            step.step, f"the {source} integration is {checked.status} after completing it, not active"
        )
    step.made(f"{kind} integration {source} activated")
    return checked


# -- POS locations -----------------------------------------------------------------------------------------
def choose_pos_locations(
    client: StreamClient, onboarding: Onboarding, spec: OnboardingSpec, step: StepRecord
) -> list[OnboardingLocation]:
    """The merchant's POS locations the spec asks for (all, or by provider id); an unknown one is an error."""
    available = client.list_onboarding_locations(onboarding.id)
    step.status = "done"
    wanted = spec.pos.locations
    if wanted == "all":
        chosen = available
    else:
        by_id = {loc.provider_id: loc for loc in available}
        unknown = [p for p in wanted if p not in by_id]
        if unknown:
            raise OnboardingError(
                step.step,
                f"pos.locations: {', '.join(unknown)} not in the merchant's {spec.pos.source} account, "
                f"which has {', '.join(sorted(by_id)) or 'no locations'}",
            )
        chosen = [by_id[p] for p in wanted]
    step.ids.update(onboarding_id=onboarding.id, chosen=[loc.provider_id for loc in chosen])
    step.notes.append(f"{len(available)} locations at {spec.pos.source}, {len(chosen)} chosen")
    if not chosen:
        step.needs_human.append(f"the merchant's {spec.pos.source} account has no locations")
    return chosen


def ensure_pos_locations(
    client: StreamClient,
    org_id: str,
    onboarding: Onboarding,
    chosen: Sequence[OnboardingLocation],
    step: StepRecord,
) -> dict[str, str]:
    """Ingest the chosen POS locations that the organisation lacks. Returns provider id -> location id."""
    source = onboarding.source
    present = {_key(loc): loc.id for loc in client.list_org_locations(org_id) if loc.source in (None, source)}
    out: dict[str, str] = {}
    missing: list[OnboardingLocation] = []
    for loc in chosen:
        location_id = present.get(loc.provider_id) or present.get(f"name:{loc.name}")
        if location_id is None:
            missing.append(loc)
        else:
            out[loc.provider_id] = location_id
            step.found(f"location {loc.provider_id}")
    step.ids.update(org_id=org_id, onboarding_id=onboarding.id, locations=out)
    if missing:
        for ingested in client.ingest_pos_locations(onboarding.id, [loc.provider_id for loc in missing]):
            out[ingested.provider_id] = ingested.id
            step.made(f"location {ingested.provider_id} ({ingested.id})")
    return out


# -- DSP bindings and menus --------------------------------------------------------------------------------
def ensure_bindings(
    client: StreamClient,
    org_id: str,
    onboarding: Onboarding,
    spec: OnboardingSpec,
    index: int,
    pos_locations: Mapping[str, str],
    step: StepRecord,
) -> dict[str, str]:
    """Bind the DSP stores of ``spec.dsps[index]`` to their POS locations, those not bound yet.

    Everything is checked before the one bind call: an unknown store, a location that was not ingested,
    a store bound to another location. Returns store provider id -> DSP connection id.
    """
    dsp = spec.dsps[index]
    stores = {loc.provider_id: loc for loc in client.list_onboarding_locations(onboarding.id)}
    org_locations = client.list_org_locations(org_id)
    bound: dict[str, tuple[OrgLocation, str]] = {}
    for loc in org_locations:
        for connection in loc.dsps:
            if connection.source == dsp.source:
                bound[_key(connection)] = (loc, connection.id)
    out: dict[str, str] = {}
    todo: list[BindLocation] = []
    for b, binding in enumerate(dsp.bindings):
        where = f"dsps[{index}].bindings[{b}]"
        store = stores.get(binding.store)
        if store is None:
            raise OnboardingError(
                step.step,
                f"{where}.store: {binding.store!r} is not a store of the merchant's {dsp.source} account, "
                f"which has {', '.join(sorted(stores)) or 'none'}",
            )
        location_id = pos_locations.get(binding.location)
        if location_id is None:
            raise OnboardingError(
                step.step, f"{where}.location: {binding.location!r} is not an ingested POS location"
            )
        name = binding.store_name or store.name or binding.store
        existing = bound.get(binding.store) or bound.get(f"name:{name}")
        if existing is None:
            todo.append(
                BindLocation(pos_location_id=location_id, dsp_provider_id=binding.store, dsp_store_name=name)
            )
        elif existing[0].id != location_id:
            raise OnboardingError(
                step.step,
                f"{where}: store {binding.store!r} is bound to location {existing[0].id} at Stream, "
                f"not to {binding.location!r} ({location_id}); unbind it at Stream first",
            )
        else:
            out[binding.store] = existing[1]
            step.found(f"{dsp.source} store {binding.store} on {binding.location}")
    step.ids.update(org_id=org_id, onboarding_id=onboarding.id, source=dsp.source, connections=out)
    if todo:
        location_of = {b.store: b.location for b in dsp.bindings}
        for made in client.bind_dsp_locations(onboarding.id, todo):
            out[made.dsp_provider_id] = made.id
            location = location_of.get(made.dsp_provider_id, "?")
            step.made(f"{dsp.source} store {made.dsp_provider_id} on {location} ({made.id})")
    return out


def ensure_menus(
    client: StreamClient,
    org_id: str,
    spec: OnboardingSpec,
    connections: Mapping[tuple[str, str], str],
    step: StepRecord,
) -> None:
    """Give each DSP connection the menus the spec names (skipping those that have them already).

    `connections` maps (DSP source, store provider id) to the DSP connection id.
    """
    current = {c.id: c for loc in client.list_org_locations(org_id) for c in loc.dsps}
    step.ids["org_id"] = org_id
    assigned: dict[str, list[str]] = {}
    for dsp in spec.dsps:
        for binding in dsp.bindings:
            menus = spec.menus_of(dsp, binding)
            if menus is None:
                continue
            connection_id = connections[(dsp.source, binding.store)]
            what = f"{dsp.source} {binding.store}: {', '.join(menus) or 'all menus'}"
            have = current[connection_id].menu_provider_ids if connection_id in current else None
            if have is not None and set(have) == set(menus):
                step.found(what)
            else:
                client.assign_menus(org_id=org_id, dsp_location_id=connection_id, menu_provider_ids=menus)
                step.made(what)
            assigned[connection_id] = list(menus)
            step.ids["menus"] = assigned
    if not assigned:
        step.notes.append("no menus in the spec")


# -- feature flags and segments ----------------------------------------------------------------------------
def ensure_flags(client: StreamClient, org_id: str, spec: OnboardingSpec, step: StepRecord) -> dict[str, Any]:
    """Put the org (context ``{kind: spec.context_kind, key: org id}``) in the spec's segments and flags,
    then evaluate each flag for it to confirm. Flags are checked to exist before anything is added.

    Returns flag key -> the value Stream serves the org.
    """
    kind = spec.context_kind
    step.ids.update(org_id=org_id, context={"kind": kind, "key": org_id})
    if not spec.flags and not spec.segments:
        step.notes.append("no flags or segments in the spec")
        return {}
    in_flags: set[str] = set()
    in_segments: set[str] = set()
    for found in client.search_contexts(q=org_id, kind=kind, limit=50):
        if found.key == org_id and found.kind == kind:
            extra = found.model_extra or {}
            in_flags.update(extra.get("flags") or [])
            in_segments.update(extra.get("segments") or [])
    to_add = [f for f in spec.flags if f not in in_flags]
    for i, flag in enumerate(spec.flags):  # check before any write: an unknown flag adds nothing
        if flag in to_add:
            try:
                client.evaluate_flag(flag, key=org_id, kind=kind)
            except NotFound as exc:
                raise OnboardingError(
                    step.step,
                    f"flags[{i}]: flag {flag!r} does not exist at Stream ({exc.code}); nothing added",
                ) from exc
    context = [Context(key=org_id, kind=kind)]
    for i, segment in enumerate(spec.segments):
        if segment in in_segments:
            step.found(f"segment {segment}")
            continue
        try:
            client.add_segment_contexts(segment, context)
        except NotFound as exc:
            raise OnboardingError(
                step.step, f"segments[{i}]: segment {segment!r} does not exist at Stream ({exc.code})"
            ) from exc
        step.made(f"segment {segment}")
        step.ids.setdefault("segments_added", []).append(segment)
    for flag in spec.flags:
        if flag in to_add:
            client.add_flag_contexts(flag, context)
            step.made(f"flag {flag}")
            step.ids.setdefault("flags_added", []).append(flag)
        else:
            step.found(f"flag {flag}")
    served: dict[str, Any] = {}
    for flag in spec.flags:
        evaluation = client.evaluate_flag(flag, key=org_id, kind=kind)
        served[flag] = evaluation.value
        if not evaluation.enabled:
            step.notes.append(f"flag {flag} is off: the org is targeted and gets it once the flag is on")
        elif evaluation.value in (False, None):
            raise OnboardingError(
                step.step, f"flag {flag} still serves {evaluation.value!r} to the org after targeting it"
            )
    step.ids["served"] = served
    return served


# -- SSO ---------------------------------------------------------------------------------------------------
class SSOLink(BaseModel):
    """A single-use SSO login link for one user. `url` and `token` are secrets: shown once, never stored."""

    model_config = ConfigDict(frozen=True)

    email: str
    role: str
    url: SecretStr
    token: SecretStr


def issue_sso_links(
    client: StreamClient,
    spec: OnboardingSpec,
    issued_before: set[str],
    step: StepRecord,
    reissue: bool = False,
) -> list[SSOLink]:
    """An SSO login link for each of the spec's users who was not given one by an earlier run.

    Stream has no read of SSO sessions, so `issued_before` (from the history store) is what says who has
    one; `reissue` issues new links to everyone.
    """
    links: list[SSOLink] = []
    org = spec.organization
    for user in spec.sso_users:
        if user.email in issued_before and not reissue:
            step.found(f"SSO link for {user.email} (issued by an earlier run)")
            continue
        session = client.generate_sso_session(
            email=user.email,
            full_name=user.full_name,
            phone_number=user.phone_number,
            role=user.role,
            provider_org_id=org.provider_id,
            provider_org_name=org.name,
        )
        url = SecretStr(client.sso_login_url(session.sso_login_token))
        links.append(SSOLink(email=user.email, role=user.role, url=url, token=session.sso_login_token))
        step.made(f"SSO link for {user.email}")
        step.ids.setdefault("issued", []).append(user.email)
    if links:
        step.notes.append(
            "hand each user their single-use link: `streamkeeper onboard` prints them, the flow run "
            "returns them; never in logs or artifacts"
        )
    elif spec.sso_users:
        step.notes.append("every user has had a link; reissue_sso_links gives new ones")
    return links


def open_sso_link(client: StreamClient, link: SSOLink, step: StepRecord) -> SSORedemption:
    """Log in with a link, as the user's browser does (which uses it up): proves the SSO works.

    Raises:
        OnboardingError: the link was used before (links are single-use) or has expired.
    """
    step.ids["email"] = link.email
    try:
        who = client.redeem_sso_session(link.token)
    except Conflict as exc:
        if exc.code in ("sso_token_redeemed", "sso_token_expired"):
            state = "was already used" if exc.code == "sso_token_redeemed" else "has expired"
            raise OnboardingError(
                step.step,
                f"the SSO link for {link.email} {state} ({exc.code}); links are single-use and short-lived: "
                "run the onboarding again with reissue_sso_links for a new one",
            ) from exc
        raise
    step.made(f"signed in as {who.email or link.email}")
    step.ids.update(org_id=who.org_id, role=who.role)
    return who


def _key(item: Any) -> str:
    """A location's or DSP connection's provider id (an extra field of the answers), else ``name:<name>``."""
    extra = getattr(item, "model_extra", None) or {}
    provider_id = extra.get("provider_id")
    return str(provider_id) if provider_id else f"name:{getattr(item, 'name', None)}"


__all__ = [
    "CodeRejected",
    "SSOLink",
    "TokenVault",
    "authorise_hint",
    "choose_pos_locations",
    "complete_integration",
    "ensure_bindings",
    "ensure_flags",
    "ensure_menus",
    "ensure_organization",
    "ensure_partner_token",
    "ensure_pos_locations",
    "get_token",
    "issue_sso_links",
    "open_sso_link",
    "start_integration",
    "step_name",
]
