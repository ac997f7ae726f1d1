"""YAML specs: errors name the file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from streamkeeper.errors import ConfigError
from streamkeeper.yamlspec import load_yaml_model, load_yaml_text


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    ttl: int = Field(ge=0, le=93600)


class Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[Item]


def test_a_good_spec_loads(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("items:\n  - name: a\n    ttl: 5\n")
    assert load_yaml_model(path, Doc).items[0].ttl == 5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "items:\n  - name: a\n    ttl: 5\n  - name: b\n    ttl: 999999\n",
            "x.yaml:5: items[1].ttl: Input should be less than or equal to 93600",
        ),
        (
            "items:\n  - name: a\n    ttl: 5\n    colour: red\n",
            "x.yaml:4: items[0].colour: Extra inputs are not permitted",
        ),
        ("items:\n  - ttl: 5\n", "x.yaml:2: items[0].name: Field required"),
        ("items: [\n", "x.yaml:2: invalid YAML"),
        ("", "x.yaml: the spec is empty"),
        ("items:\n  - name: a\n    name: b\n    ttl: 1\n", "line 3: duplicate key 'name'"),
    ],
)
def test_errors_name_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_yaml_model(path, Doc)
    assert expected in str(info.value)


def test_missing_file_and_inline_text(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="spec file not found"):
        load_yaml_model(tmp_path / "nope.yaml", Doc)
    assert load_yaml_text('{"items": [{"name": "j", "ttl": 0}]}', Doc).items[0].name == "j"
