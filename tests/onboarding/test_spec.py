"""The onboarding spec: the example loads, and every mistake names the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamkeeper.errors import ConfigError
from streamkeeper.onboarding import load_spec, load_spec_text
from streamkeeper.onboarding.spec import guess_org_key

EXAMPLE = Path(__file__).parents[2] / "data" / "specs" / "onboarding-example.yaml"

MINIMAL = """\
organization:
  name: Tacos
  provider_id: tacos-1
  owner: {email: ana@tacos.example, first_name: Ana, last_name: Diaz}
return_url: https://partner.example/cb
pos:
  source: clover
"""


def test_the_example_spec_loads() -> None:
    spec = load_spec(EXAMPLE)
    assert spec.org_key == "luigis-trattoria"
    assert spec.pos.locations == ["sq-loc-001", "sq-loc-002"]
    doordash, ubereats = spec.dsps
    # a binding without menus takes its DSP's; [] means "publish all menus"; no menus at all: leave alone
    assert spec.menus_of(doordash, doordash.bindings[0]) == ["menu-lunch", "menu-dinner"]
    assert spec.menus_of(ubereats, ubereats.bindings[0]) == []
    assert spec.flags == ["new-menu-sync", "sso-login"] and spec.sso_users[0].role == "owner"


def test_defaults_of_a_minimal_spec() -> None:
    spec = load_spec_text(MINIMAL)
    assert spec.pos.locations == "all" and spec.dsps == [] and spec.sso_users == []
    assert spec.partner_token.name == "streamkeeper" and spec.partner_token.scopes == ["onboarding"]
    assert spec.context_kind == "organization"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # a typo in a field name is refused, not ignored
        (
            ("  name: Tacos", "  nmae: Tacos"),
            "spec.yaml:2: organization.nmae: Extra inputs are not permitted",
        ),
        (("ana@tacos.example", "not-an-email"), "spec.yaml:4: organization.owner.email: String should match"),
        (("  source: clover", "  source: clover\n  locations: some"), "spec.yaml:8: pos.locations"),
        (("return_url: https://partner.example/cb\n", ""), "spec.yaml:1: return_url: Field required"),
        (
            ("pos:", "partner_token: {scopes: [admin]}\npos:"),
            "spec.yaml:6: partner_token.scopes[0]: Input should be 'user', 'onboarding'",
        ),
    ],
)
def test_a_bad_field_names_file_line_and_field(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(MINIMAL.replace(*change))
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    assert expected in str(info.value)


def test_rules_across_fields_name_the_field_at_fault() -> None:
    text = (
        MINIMAL.replace("  source: clover", "  source: clover\n  locations: [cl-1]")
        + """\
dsps:
  - source: doordash
    bindings:
      - {location: cl-1, store: dd-1}
      - {location: cl-9, store: dd-1}
  - source: doordash
    bindings: [{location: cl-1, store: dd-2}]
flags: [a, a]
"""
    )
    with pytest.raises(ConfigError) as info:
        load_spec_text(text, source="s.yaml")
    message = str(info.value)
    assert "s.yaml:14: dsps[1]: DSP source 'doordash' is listed twice" in message
    assert "s.yaml:16: flags[1]: flag 'a' is listed twice" in message
    assert "s.yaml:13: dsps[0].bindings[1].location: 'cl-9' is not one of pos.locations" in message
    assert "s.yaml:13: dsps[0].bindings[1]: store 'dd-1' is listed twice" in message


def test_broken_yaml_and_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"s.yaml:3: invalid YAML"):
        load_spec_text("organization:\n  name: [unclosed\n", source="s.yaml")
    with pytest.raises(ConfigError, match="spec file not found"):
        load_spec("/nonexistent/onboarding.yaml")


def test_org_key_is_guessed_from_a_spec_that_does_not_validate() -> None:
    assert guess_org_key(MINIMAL.replace("  name: Tacos", "  nmae: Tacos")) == "tacos-1"
    assert guess_org_key("organization: [") is None
    assert guess_org_key("- a list") is None
