"""Loading YAML specs into pydantic models, with errors that name the field and the line.

    spec = load_yaml_model(Path("data/specs/example.yaml"), ProvisioningSpec)

A YAML syntax error, a missing file or a validation error raises `ConfigError` whose message names the
file, the line and the field path, e.g. ``example.yaml:14: dma[0].subscriptions[2].time_to_live: Input
should be less than or equal to 93600``.

Loaded with ``settings=True`` (the provisioning spec), a spec may reference the settings in `SETTINGS`
as ``${NAME}`` inside a text value (the example spec's consumer URLs:
``${STREAMKEEPER_RECEIVER_URL}/dma/demo``): the environment's value, else the default. No other variable
is read (a spec never pulls a secret out of the environment); an unknown one is an error naming its line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from streamkeeper.errors import ConfigError
from streamkeeper.validation import field_path

M = TypeVar("M", bound=BaseModel)
Loc = tuple[int | str, ...]

SETTINGS: dict[str, str] = {
    # where `streamkeeper receive` listens by default (its --port), as the vendors reach it
    "STREAMKEEPER_RECEIVER_URL": "http://127.0.0.1:8099",
}
"""The settings a spec may reference as ``${NAME}``, with their defaults."""

_REFERENCE = re.compile(r"\$\{([^}]*)\}")


def setting(name: str) -> str:
    """The value a spec's ``${name}`` stands for: the environment's, else the default in `SETTINGS`."""
    return os.environ.get(name) or SETTINGS[name]


def _expand(data: Any, loc: Loc, lines: dict[Loc, int], source: str) -> Any:
    """`data` with every ``${SETTING}`` in its text values replaced."""
    if isinstance(data, dict):
        return {key: _expand(value, (*loc, key), lines, source) for key, value in data.items()}
    if isinstance(data, list):
        return [_expand(value, (*loc, i), lines, source) for i, value in enumerate(data)]
    if not isinstance(data, str) or "${" not in data:
        return data

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in SETTINGS:
            line = lines.get(loc)
            where = f"{source}:{line}" if line else source
            raise ConfigError(
                f"{where}: {field_path(loc)}: unknown setting ${{{name}}}; a spec can reference "
                + ", ".join(f"${{{known}}}" for known in SETTINGS)
            )
        return setting(name)

    return _REFERENCE.sub(value, data)


def _record_lines(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> None:
    """Remember the line of every field path; refuse duplicate keys (YAML would keep the last silently)."""
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark)
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
            seen.add(key)
            _record_lines(value_node, (*loc, key), lines)
            lines[(*loc, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _record_lines(item, (*loc, i), lines)


def parse_yaml(text: str, source: str = "<spec>", settings: bool = False) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML text; returns the data (with its ``${SETTING}`` references replaced, with `settings`)
    and the line of every field path."""
    loader = yaml.CSafeLoader(text) if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    finally:
        loader.dispose()
    lines: dict[Loc, int] = {}
    if node is not None:
        _record_lines(node, (), lines)
    return (_expand(data, (), lines, source) if settings else data), lines


def validate_model(
    data: Any, model: type[M], lines: dict[Loc, int] | None = None, source: str = "<spec>"
) -> M:
    """Validate data into `model`; a `ConfigError` names the line (when known) and field of each problem."""
    if data is None:
        raise ConfigError(f"{source}: the spec is empty")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors()[:5]:
            loc = tuple(error["loc"])
            line = None
            for n in range(len(loc), -1, -1):
                if lines and loc[:n] in lines:
                    line = lines[loc[:n]]
                    break
            where = f"{source}:{line}" if line else source
            problems.append(f"{where}: {field_path(loc)}: {error['msg']}")
        more = len(exc.errors()) - 5
        if more > 0:
            problems.append(f"and {more} more")
        raise ConfigError("; ".join(problems)) from None


def load_yaml_model(path: Path | str, model: type[M], settings: bool = False) -> M:
    """Read a YAML file and validate it into `model` (`settings`: replace ``${SETTING}`` references)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"spec file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read spec file {path}: {exc.strerror}") from None
    data, lines = parse_yaml(text, source=path.name, settings=settings)
    return validate_model(data, model, lines, source=path.name)


def load_yaml_text(text: str, model: type[M], source: str = "<inline spec>", settings: bool = False) -> M:
    """Validate an inline YAML (or JSON) text into `model` (`settings`: replace ``${SETTING}`` references)."""
    data, lines = parse_yaml(text, source=source, settings=settings)
    return validate_model(data, model, lines, source=source)
