"""Turning pydantic validation errors into one readable line that names the field."""

from __future__ import annotations

from pydantic import ValidationError


def field_path(loc: tuple[int | str, ...]) -> str:
    """``('subscriptions', 3, 'ttl')`` -> ``subscriptions[3].ttl``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


def describe(exc: ValidationError, limit: int = 3) -> str:
    """A short description of a validation error: each failing field and why."""
    parts = []
    for error in exc.errors()[:limit]:
        parts.append(f"{field_path(error['loc'])}: {error['msg']}")
    more = len(exc.errors()) - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)
