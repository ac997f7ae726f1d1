"""YAML specs: errors name the file, line and field."""

from __future__ import annotations

import time
import tracemalloc
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


# -- hostile and careless files (issue 11, classes 7 and 8) ----------------------------------------------
def billion_laughs(levels: int = 9, fan: int = 9) -> str:
    lines = ["items:", '  - &l0 {name: "lol", ttl: 1}']
    for level in range(1, levels + 1):
        refs = ", ".join(f"*l{level - 1}" for _ in range(fan))
        lines.append(f"  - &l{level} [{refs}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    from streamkeeper.receiver import load_config
    from streamkeeper.spec import ProvisioningSpec

    path = tmp_path / "bomb.yaml"
    path.write_text(billion_laughs())  # 9 levels of 9 aliases: 387 million nodes expanded
    for load in (
        lambda: load_yaml_model(path, Doc),
        lambda: load_config(path),
        lambda: load_yaml_model(path, ProvisioningSpec),
    ):
        tracemalloc.start()
        started = time.monotonic()
        try:
            with pytest.raises(ConfigError, match="bomb.yaml: aliases would add .* nodes") as info:
                load()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert "\n" not in str(info.value)
        assert peak < 5 * 1024 * 1024, f"{peak} bytes"  # the old line walk took gigabytes, and minutes
        assert time.monotonic() - started < 30  # ~10 ms here; a deadline for a loaded machine, not a figure

    # a document that uses aliases as people do (shared defaults) still loads
    shared = "defaults: &d {name: a, ttl: 5}\nitems:\n" + "".join("  - *d\n" for _ in range(500))
    (tmp_path / "shared.yaml").write_text(shared.replace("defaults", "items_defaults"))
    with pytest.raises(ConfigError, match="items_defaults: Extra inputs"):  # refused for the key, not aliases
        load_yaml_model(tmp_path / "shared.yaml", Doc)
    assert (
        len(
            load_yaml_text(
                "items:\n" + "".join(f"  - &x{i} {{name: a, ttl: 5}}\n  - *x{i}\n" for i in range(50)),
                Doc,
            ).items
        )
        == 100
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("items: &a [*a]\n", "x.yaml:1: an alias refers to a node that contains it"),
        ("items: " + "[" * 200 + "]" * 200 + "\n", "x.yaml:1: nested deeper than 64 levels"),
        ("items: " + "[" * 2000 + "]" * 2000 + "\n", "x.yaml"),
        ("items: " + "{a: " * 100_000 + "1" + "}" * 100_000 + "\n", "x.yaml:1: invalid YAML"),
    ],
)
def test_recursive_and_deep_documents_are_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_yaml_model(path, Doc)
    assert str(info.value).startswith(expected)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("items:\n  - name: caf\xe9\n".encode("latin-1"), "x.yaml: not UTF-8 text (byte 0xe9 at offset 20)"),
        (bytes(range(256)) * 4, "x.yaml: not UTF-8 text (byte 0x80 at offset 128)"),
        (b"\x00\x01\x02items", "x.yaml:1: invalid YAML"),
    ],
)
def test_a_file_that_is_not_utf8_text_is_one_line(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_yaml_model(path, Doc)
    assert str(info.value).startswith(expected)
    assert load_yaml_model(_write(tmp_path / "bom.yaml", b"\xef\xbb\xbfitems: []\n"), Doc).items == []


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def test_a_file_over_the_size_bound_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "big.yaml", b"items: []\n" + b"#" * 5000 + b"\n")
    assert load_yaml_model(path, Doc).items == []  # the default bound is 16 MiB
    monkeypatch.setenv("STREAMKEEPER_MAX_SPEC_BYTES", "4096")
    with pytest.raises(
        ConfigError, match=r"big.yaml: the file is over 4096 bytes \(\$STREAMKEEPER_MAX_SPEC_BYTES\)"
    ):
        load_yaml_model(path, Doc)
    with pytest.raises(ConfigError, match="it is a directory"):
        load_yaml_model(tmp_path, Doc)
    monkeypatch.setenv("STREAMKEEPER_MAX_SPEC_BYTES", "lots")
    with pytest.raises(ConfigError, match="STREAMKEEPER_MAX_SPEC_BYTES 'lots'"):
        load_yaml_model(path, Doc)
