"""Fuzz tier: generated YAML (documents of every shape, aliases nested and recursive, odd text, bytes that
are not UTF-8) through the spec and config loaders.

Properties: a file loads or is refused with one `ConfigError` line, never another exception (a
traceback); memory stays bounded (tracemalloc: an alias bomb used to take gigabytes).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fuzzkit import FUZZ, TIMEOUT, json_values, odd_text, scaled
from hypothesis import given, settings
from hypothesis import strategies as st

from streamkeeper.errors import ConfigError
from streamkeeper.onboarding.spec import load_spec as load_onboarding_spec
from streamkeeper.receiver import load_config
from streamkeeper.spec import load_spec

LOADERS: list[Callable[[Path], Any]] = [load_spec, load_config, load_onboarding_spec]
MEMORY_BOUND = 32 * 1024 * 1024  # these documents are a few KiB; an expansion passes this by far


def dumped(value: Any) -> str:
    try:
        return yaml.safe_dump(value, allow_unicode=True)
    except yaml.YAMLError:
        return str(value)


def alias_document(levels: int, fan: int, recursive: bool, key: str) -> str:
    """Nested anchors and aliases (a "billion laughs" when levels and fan are large)."""
    lines = [f"{key}:", "  - &a0 {name: x, time_to_live: 1}"]
    for level in range(1, levels + 1):
        lines.append(f"  - &a{level} [" + ", ".join(f"*a{level - 1}" for _ in range(fan)) + "]")
    if recursive:
        lines.append(f"  - &r [*r, *a{levels}]")
    return "\n".join(lines) + "\n"


spec_like = st.fixed_dictionaries(
    {},
    optional={
        "dma": st.lists(
            st.dictionaries(st.sampled_from(["connection", "subscriptions", "x"]), json_values), max_size=2
        ),
        "thingspace": json_values,
        "stream": st.dictionaries(odd_text, json_values, max_size=2),
        "max_body_bytes": json_values,
        "organization": json_values,
    },
)
documents = st.one_of(
    st.builds(dumped, spec_like),
    st.builds(dumped, json_values),
    st.builds(
        alias_document, st.integers(0, 12), st.integers(1, 12), st.booleans(), st.sampled_from(["dma", "x"])
    ),
    odd_text,
    st.builds(lambda d, t: d + t, st.builds(dumped, spec_like), odd_text),
    st.sampled_from(
        [
            "",
            "---\n...\n",
            "a: b\na: c\n",
            "[" * 300 + "]" * 300,
            "{a: " * 80 + "1" + "}" * 80,
            "%YAML 9.9\n---\n1",
        ]
    ),
)


def encoded(text: str, how: str) -> bytes:
    if how == "latin-1":
        return text.encode("latin-1", "replace") + b"\xe9"
    return text.encode("utf-8", "surrogatepass")


@pytest.mark.timeout(TIMEOUT)
@settings(FUZZ, max_examples=scaled(150))
@given(text=documents, how=st.sampled_from(["utf-8", "utf-8", "latin-1"]), binary=st.binary(max_size=64))
def test_every_file_loads_or_is_one_config_error(
    tmp_path_factory: Any, text: str, how: str, binary: bytes
) -> None:
    path = tmp_path_factory.mktemp("yaml") / "spec.yaml"
    for content in (encoded(text, how), binary):
        path.write_bytes(content)
        for load in LOADERS:
            tracemalloc.start()
            try:
                load(path)
            except ConfigError as exc:
                assert str(exc) and "\n" not in str(exc), repr(str(exc))
            finally:
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
            assert peak < MEMORY_BOUND, (load.__module__, peak)
