"""Loading YAML specs into pydantic models, with errors that name the field and the line.

    spec = load_yaml_model(Path("data/specs/example.yaml"), ProvisioningSpec)

A YAML syntax error, a missing file or a validation error raises `ConfigError` whose message names the
file, the line and the field path, e.g. ``example.yaml:14: dma[0].subscriptions[2].time_to_live: Input
should be less than or equal to 93600``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from streamkeeper.errors import ConfigError
from streamkeeper.validation import field_path

M = TypeVar("M", bound=BaseModel)
Loc = tuple[int | str, ...]


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


def parse_yaml(text: str, source: str = "<spec>") -> tuple[Any, dict[Loc, int]]:
    """Parse YAML text; returns the data and the line of every field path."""
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
    return data, lines


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


def load_yaml_model(path: Path | str, model: type[M]) -> M:
    """Read a YAML file and validate it into `model`."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"spec file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read spec file {path}: {exc.strerror}") from None
    data, lines = parse_yaml(text, source=path.name)
    return validate_model(data, model, lines, source=path.name)


def load_yaml_text(text: str, model: type[M], source: str = "<inline spec>") -> M:
    """Validate an inline YAML (or JSON) text into `model`."""
    data, lines = parse_yaml(text, source=source)
    return validate_model(data, model, lines, source=source)
