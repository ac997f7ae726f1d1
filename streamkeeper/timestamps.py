"""A sender's timestamp as an aware UTC datetime, or None: one rule for the receiver and every normaliser.

Accepted: ISO 8601 text (``Z`` or an offset; no offset means UTC), epoch seconds, epoch milliseconds (a
number above 1e11, i.e. from about 1973 on), or a datetime. Anything else is None: text that does not
parse, a number beyond what a datetime holds, and every time before `EARLIEST`, which is how senders say
"none" (ThingSpace's "never" ``0001-01-01T00:00:00Z``, a Stream ``created_at`` of 0 or 86400, 1969 dates).
A None ``occurred_at`` never costs the event: the raw value stays in the payload.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

EARLIEST = datetime(1971, 1, 1, tzinfo=UTC)  # ours: anything before is a sender's "unset"


def parse_time(value: Any) -> datetime | None:
    """`value` as an aware UTC datetime on or after `EARLIEST`, else None (see the module docstring)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, datetime):
            parsed = value if value.tzinfo else value.replace(tzinfo=UTC)
        elif isinstance(value, int | float):
            seconds = value / 1000 if value > 1e11 else value
            parsed = datetime.fromtimestamp(seconds, UTC)
        elif isinstance(value, str) and value.strip():
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        else:
            return None
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError, OSError):  # unparsable, or beyond what a datetime holds
        return None
    return parsed if parsed >= EARLIEST else None
