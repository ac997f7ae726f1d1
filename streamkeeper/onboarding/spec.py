"""The onboarding spec: which Stream organisation to onboard, and how far.

    spec = load_spec(Path("data/specs/onboarding-example.yaml"))

A YAML file (or text) validated by pydantic. Every error names the file, the line and the field, e.g.
``onboarding.yaml:21: dsps[0].bindings[1].location: 'sq-loc-009' is not one of pos.locations``.
Unknown fields are refused (a typo never silently does nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from streamkeeper.errors import ConfigError
from streamkeeper.validation import field_path
from streamkeeper.vendors.stream import Role, Scope
from streamkeeper.yamlspec import Loc, one_line, parse_yaml, read_spec_file, validate_model

PARTNER_TOKEN_SCOPES: tuple[Scope, ...] = ("onboarding",)
NonEmpty = Annotated[str, Field(min_length=1)]
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$", description="An email address.")]
Key = Annotated[str, Field(min_length=1, pattern=r"^\S+$")]


class SpecModel(BaseModel):
    """A part of the spec: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class OwnerSpec(SpecModel):
    """The organisation's first user (Stream creates them with the organisation)."""

    email: Email
    first_name: NonEmpty
    last_name: NonEmpty


class OrganizationSpec(SpecModel):
    """The organisation. `provider_id` (your id for it) is what makes a re-run find it again."""

    name: NonEmpty
    provider_id: Key
    owner: OwnerSpec


class PartnerTokenSpec(SpecModel):
    """The partner token created for the organisation (names are unique per organisation)."""

    name: NonEmpty = "streamkeeper"
    scopes: list[Scope] = Field(default_factory=lambda: list(PARTNER_TOKEN_SCOPES), min_length=1)


class POSSpec(SpecModel):
    """The point-of-sale source and which of its locations to ingest."""

    source: Key
    locations: Literal["all"] | Annotated[list[Key], Field(min_length=1)] = Field(
        default="all", description="'all', or the POS provider ids of the locations to ingest."
    )


class BindingSpec(SpecModel):
    """One DSP store bound to one ingested POS location, and the menus of that DSP connection."""

    location: Key = Field(description="Provider id of the POS location.")
    store: Key = Field(description="Provider id of the DSP store.")
    store_name: NonEmpty | None = Field(
        default=None, description="Name of the store at Stream; default: the DSP's own name for it."
    )
    menus: list[Key] | None = Field(
        default=None,
        description="Menu provider ids of this connection; [] publishes all menus; default: the DSP's menus.",
    )


class DSPSpec(SpecModel):
    """A delivery service provider source and its bindings."""

    source: Key
    menus: list[Key] | None = Field(
        default=None, description="Menus of every binding that names none; absent: leave menus alone."
    )
    bindings: list[BindingSpec] = Field(min_length=1)


class SSOUserSpec(SpecModel):
    """A user who gets a single-use SSO login link."""

    email: Email
    full_name: NonEmpty
    phone_number: NonEmpty
    role: Role = "owner"


class OnboardingSpec(SpecModel):
    """Everything the ``onboard-organization`` flow needs to take one organisation live."""

    organization: OrganizationSpec
    return_url: NonEmpty = Field(
        description="Where the merchant's browser returns after authorising (your OAuth callback page)."
    )
    partner_token: PartnerTokenSpec = Field(default_factory=PartnerTokenSpec)
    pos: POSSpec
    dsps: list[DSPSpec] = Field(default_factory=list)
    flags: list[Key] = Field(default_factory=list, description="Feature flags whose targeting gets the org.")
    segments: list[Key] = Field(default_factory=list, description="Segments the org is added to.")
    context_kind: Key = Field(
        default="organization", description="Context kind of the org in flags and segments (key: org id)."
    )
    sso_users: list[SSOUserSpec] = Field(default_factory=list)

    @property
    def org_key(self) -> str:
        """The key of this onboarding in the history store: the organisation's provider id."""
        return self.organization.provider_id

    def menus_of(self, dsp: DSPSpec, binding: BindingSpec) -> list[str] | None:
        """The menus a binding should have, or None to leave them alone."""
        return binding.menus if binding.menus is not None else dsp.menus


def _problems(spec: OnboardingSpec) -> list[tuple[Loc, str]]:
    """Rules across fields, each with the path of the field at fault."""
    out: list[tuple[Loc, str]] = []

    def duplicates(values: list[str], loc: Loc, what: str) -> None:
        seen: set[str] = set()
        for i, value in enumerate(values):
            if value in seen:
                out.append(((*loc, i), f"{what} {value!r} is listed twice"))
            seen.add(value)

    duplicates([d.source for d in spec.dsps], ("dsps",), "DSP source")
    duplicates(list(spec.flags), ("flags",), "flag")
    duplicates(list(spec.segments), ("segments",), "segment")
    duplicates([u.email for u in spec.sso_users], ("sso_users",), "user")
    if isinstance(spec.pos.locations, list):
        duplicates(list(spec.pos.locations), ("pos", "locations"), "location")
    for source in {spec.pos.source} & {d.source for d in spec.dsps}:
        out.append((("pos", "source"), f"{source!r} is also a DSP source"))
    for d, dsp in enumerate(spec.dsps):
        duplicates([b.store for b in dsp.bindings], ("dsps", d, "bindings"), "store")
        for b, binding in enumerate(dsp.bindings):
            chosen = spec.pos.locations
            if isinstance(chosen, list) and binding.location not in chosen:
                out.append(
                    (
                        ("dsps", d, "bindings", b, "location"),
                        f"{binding.location!r} is not one of pos.locations",
                    )
                )
    return out


def _check(spec: OnboardingSpec, lines: dict[Loc, int], source: str) -> OnboardingSpec:
    problems = _problems(spec)
    if problems:
        messages = []
        for loc, message in problems[:5]:
            line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), None)
            where = f"{source}:{line}" if line else source
            messages.append(f"{where}: {field_path(loc)}: {message}")
        raise ConfigError(one_line("; ".join(messages)))
    return spec


def load_spec(path: Path | str) -> OnboardingSpec:
    """Read and validate an onboarding spec file; `ConfigError` names the file, line and field."""
    path = Path(path)
    return load_spec_text(read_spec_file(path), source=one_line(path.name))


def load_spec_text(text: str, source: str = "<inline spec>") -> OnboardingSpec:
    """Validate an onboarding spec given as YAML (or JSON) text."""
    data, lines = parse_yaml(text, source=source)
    spec = validate_model(data, OnboardingSpec, lines, source=source)
    return _check(spec, lines, source)


def guess_org_key(text: str) -> str | None:
    """The organisation's provider id from a spec that may not validate (to file its error under it)."""
    try:
        data: Any = parse_yaml(text)[0]
    except ConfigError:
        return None
    org = data.get("organization") if isinstance(data, dict) else None
    key = org.get("provider_id") if isinstance(org, dict) else None
    return key if isinstance(key, str) and key.strip() else None


__all__ = [
    "BindingSpec",
    "DSPSpec",
    "OnboardingSpec",
    "OrganizationSpec",
    "OwnerSpec",
    "POSSpec",
    "PartnerTokenSpec",
    "SSOUserSpec",
    "guess_org_key",
    "load_spec",
    "load_spec_text",
]
