"""Which block type serves which vendor, and how ``streamkeeper connect`` fills one in.

Secrets are read from the environment (``STREAMKEEPER_<VENDOR>_<FIELD>``) or a hidden prompt, never from
the command line.
"""

from __future__ import annotations

import getpass
import importlib
import os
from pathlib import Path
from typing import Any

from prefect.blocks.core import Block
from pydantic import SecretStr, ValidationError

from streamkeeper.errors import ConfigError
from streamkeeper.validation import describe

BLOCKS_BY_VENDOR: dict[str, str] = {
    "dma": "blocks.dma:DMACredentials",
    "plt": "blocks.plt:PLTCredentials",
    "stream": "blocks.stream:StreamCredentials",
    "thingspace": "blocks.thingspace:ThingSpaceCredentials",
    "equinix": "blocks.equinix:EquinixCredentials",
    # not a vendor: the history store's settings (`streamkeeper connect store --name prod-store --set ...`)
    "store": "blocks.store:HistoryStoreSettings",
}


def block_class(vendor: str) -> type[Block]:
    """The credentials block type of a vendor, or `ConfigError` naming the known vendors."""
    target = BLOCKS_BY_VENDOR.get(vendor.lower())
    if target is None:
        raise ConfigError(f"unknown vendor {vendor!r}: choose one of {', '.join(BLOCKS_BY_VENDOR)}")
    module, _, name = target.partition(":")
    cls: type[Block] = getattr(importlib.import_module(module), name)
    return cls


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in getattr(annotation, "__args__", ())


def build_block_values(
    vendor: str, cls: type[Block], settings: list[str], interactive: bool
) -> dict[str, Any]:
    """Field values for a block from ``KEY=VALUE`` settings, the environment and prompts."""
    fields = cls.model_fields
    values: dict[str, Any] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        if key not in fields:
            raise ConfigError(f"--set {key}: {cls.__name__} has no such field (fields: {', '.join(fields)})")
        if _is_secret(fields[key].annotation):
            raise ConfigError(
                f"--set {key}: secrets are not taken from the command line; "
                f"set STREAMKEEPER_{vendor.upper()}_{key.upper()} or answer the prompt"
            )
        if value.startswith("@"):
            path = Path(value[1:]).expanduser()
            try:
                value = path.read_text()
            except OSError as exc:
                raise ConfigError(f"--set {key}: cannot read {path}: {exc.strerror}") from None
        values[key] = value
    for key, field in fields.items():
        if key in values:
            continue
        env = os.environ.get(f"STREAMKEEPER_{vendor.upper()}_{key.upper()}")
        if env is not None:
            values[key] = env
        elif field.is_required():
            if not interactive:
                hint = (
                    f"set STREAMKEEPER_{vendor.upper()}_{key.upper()}"
                    if _is_secret(field.annotation)
                    else f"pass --set {key}=..."
                )
                raise ConfigError(f"{cls.__name__}.{key} is required: {hint}")
            prompt = f"{key} ({field.description or ''}): "
            values[key] = getpass.getpass(prompt) if _is_secret(field.annotation) else input(prompt)
    try:
        cls.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(f"{cls.__name__}: {describe(exc)}") from None
    return values
