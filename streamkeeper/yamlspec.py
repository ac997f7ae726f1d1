"""Loading YAML specs into pydantic models, with errors that name the field and the line.

    spec = load_yaml_model(Path("data/specs/example.yaml"), ProvisioningSpec)

A YAML syntax error, a missing file or a validation error raises `ConfigError` whose message names the
file, the line and the field path, e.g. ``example.yaml:14: dma[0].subscriptions[2].time_to_live: Input
should be less than or equal to 93600``.

Hostile or careless input is refused with one line, before it costs memory or time:

- a file over ``$STREAMKEEPER_MAX_SPEC_BYTES`` (default 16 MiB) is not read;
- a file that is not UTF-8 text (a latin-1 byte, a binary file) names the first bad byte's offset;
- aliases may add at most `ALIAS_NODES` nodes to what is written (or double a larger document): a
  "billion laughs" of nested aliases is refused before anything expands it;
- nesting deeper than `MAX_DEPTH` levels is refused (Python's recursion would otherwise end it).

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

MAX_SPEC_BYTES_ENV = "STREAMKEEPER_MAX_SPEC_BYTES"
DEFAULT_MAX_SPEC_BYTES = 16 * 1024 * 1024  # ours: 16 MiB, a spec of ~100,000 subscriptions
ALIAS_NODES = 100_000  # ours: aliases may add this many nodes to a document (or as many as it has)
MAX_DEPTH = 64  # ours: a spec nests about 6 levels

SETTINGS: dict[str, str] = {
    # where `streamkeeper receive` listens by default (its --port), as the vendors reach it
    "STREAMKEEPER_RECEIVER_URL": "http://127.0.0.1:8099",
    # the receiver's HTTPS listener that asks for client certificates (Equinix webhooks: mutual TLS)
    "STREAMKEEPER_RECEIVER_TLS_URL": "https://127.0.0.1:8098",
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


def one_line(text: str) -> str:
    """`text` with every character that is not printable escaped (a key or a file name may hold a newline
    or an escape sequence): an error stays one line that cannot forge another."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def max_spec_bytes() -> int:
    """The size bound of a spec or config file: ``$STREAMKEEPER_MAX_SPEC_BYTES``, else 16 MiB."""
    text = os.environ.get(MAX_SPEC_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_SPEC_BYTES
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise ConfigError(f"${MAX_SPEC_BYTES_ENV} {text!r}: give a positive number of bytes")
    return int(text)


def read_spec_file(path: Path | str) -> str:
    """A spec or config file's text: `ConfigError` if it is missing, unreadable, too large or not UTF-8."""
    path = Path(path)
    name = one_line(path.name)
    limit = max_spec_bytes()
    try:
        with path.open("rb") as handle:
            data = b""
            while len(data) <= limit and (chunk := handle.read(min(1 << 20, limit + 1 - len(data)))):
                data += chunk  # in chunks: read(limit) would allocate the whole bound at once
    except FileNotFoundError:
        raise ConfigError(one_line(f"spec file not found: {path}")) from None
    except IsADirectoryError:
        raise ConfigError(one_line(f"cannot read spec file {path}: it is a directory")) from None
    except OSError as exc:
        raise ConfigError(one_line(f"cannot read spec file {path}: {exc.strerror}")) from None
    if len(data) > limit:
        raise ConfigError(f"{name}: the file is over {limit} bytes (${MAX_SPEC_BYTES_ENV})")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{name}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def _record_lines(root: yaml.Node, source: str) -> dict[Loc, int]:
    """The line of every field path; refuses duplicate keys, alias bombs and deep nesting.

    Walks the node graph as the constructor will expand it (an alias is the node it names, so a node
    reached twice is walked twice), counting nodes against the alias budget first, so neither the walk nor
    the validation that follows ever expands more than the budget allows.
    """
    _check_expansion(root, source)
    lines: dict[Loc, int] = {}
    stack: list[tuple[yaml.Node, Loc]] = [(root, ())]
    while stack:
        node, loc = stack.pop()
        lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark)
                if key in seen:
                    raise ConfigError(one_line(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}"))
                seen.add(key)
                lines[(*loc, key)] = key_node.start_mark.line + 1
                stack.append((value_node, (*loc, key)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*loc, i)) for i, item in enumerate(node.value))
    return lines


def _check_expansion(root: yaml.Node, source: str) -> None:
    """Refuse a document whose aliases expand it past the budget, nest it deeper than `MAX_DEPTH`, or loop.

    The expanded size and height of each distinct node are computed once, children before parents (an
    iterative depth-first walk), so a bomb of nine nested levels of ten aliases costs ~100 steps here, not
    10**9, and a deep document cannot exhaust Python's recursion.
    """
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    entered: set[int] = set()  # entered and not finished: the nodes on the path being walked
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            children = _children(node)
            size[key] = 1 + sum(size[id(c)] for c in children)
            height[key] = 1 + max((height[id(c)] for c in children), default=0)
            if height[key] > MAX_DEPTH:
                raise ConfigError(f"{source}:{_line(node)}: nested deeper than {MAX_DEPTH} levels")
            entered.discard(key)
        elif key in entered:
            raise ConfigError(f"{source}:{_line(node)}: an alias refers to a node that contains it")
        elif key not in size:  # else: a node reached again through an alias, its size known
            entered.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))
    written = len(size)
    added = size[id(root)] - written
    if added > max(ALIAS_NODES, written):
        raise ConfigError(
            f"{source}: aliases would add {added} nodes to the {written} written "
            f"(at most {max(ALIAS_NODES, written)}): refused"
        )


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def parse_yaml(text: str, source: str = "<spec>", settings: bool = False) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML text; returns the data (with its ``${SETTING}`` references replaced, with `settings`)
    and the line of every field path."""
    loader = yaml.CSafeLoader(text) if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
            lines = _record_lines(node, source) if node is not None else {}
            data = loader.construct_document(node) if node is not None else None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark else None
            if isinstance(exc, yaml.reader.ReaderError):  # a character YAML refuses (a NUL, a control)
                line = text.count("\n", 0, exc.position) + 1
            where = f"{source}:{line}" if line else source
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(one_line(f"{where}: invalid YAML: {problem}")) from None
        except RecursionError:  # a parser's own recursion, before `MAX_DEPTH` could be checked
            raise ConfigError(f"{source}: invalid YAML: nested too deeply") from None
    finally:
        loader.dispose()
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
        raise ConfigError(one_line("; ".join(problems))) from None


def load_yaml_model(path: Path | str, model: type[M], settings: bool = False) -> M:
    """Read a YAML file and validate it into `model` (`settings`: replace ``${SETTING}`` references)."""
    path = Path(path)
    source = one_line(path.name)
    data, lines = parse_yaml(read_spec_file(path), source=source, settings=settings)
    return validate_model(data, model, lines, source=source)


def load_yaml_text(text: str, model: type[M], source: str = "<inline spec>", settings: bool = False) -> M:
    """Validate an inline YAML (or JSON) text into `model` (`settings`: replace ``${SETTING}`` references)."""
    data, lines = parse_yaml(text, source=source, settings=settings)
    return validate_model(data, model, lines, source=source)
