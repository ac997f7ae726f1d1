"""When to retry a vendor call, and how long to wait.

Retried: 429, 502, 503, 504 and transport failures (connection refused or dropped, timeouts).
Never retried: anything else. The wait honours ``Retry-After`` (seconds or an HTTP date); a value of
0 or less, or an unparseable one, falls back to capped exponential backoff with full jitter.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

RETRY_STATUSES = frozenset({429, 502, 503, 504})


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, or None when absent, unusable, 0 or negative."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        current = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
        seconds = (when - current).total_seconds()
    return seconds if seconds > 0 else None


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry.

    Attributes:
        max_attempts: total attempts, the first included.
        backoff_base: the first backoff ceiling in seconds; doubled each attempt.
        backoff_max: the largest backoff ceiling.
        max_retry_after: the longest ``Retry-After`` we agree to wait; longer gives up at once.
    """

    max_attempts: int = 5
    backoff_base: float = 0.2
    backoff_max: float = 10.0
    max_retry_after: float = 120.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for the given (1-based) failed attempt."""
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return self.rng.uniform(ceiling / 2, ceiling)

    def delay(self, attempt: int, response: httpx.Response | None) -> float | None:
        """Seconds to wait before the next attempt, or None to stop retrying."""
        if attempt >= self.max_attempts:
            return None
        if response is not None:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None:
                return retry_after if retry_after <= self.max_retry_after else None
        return self.backoff(attempt)


def is_retryable_status(status: int) -> bool:
    """True for the statuses worth retrying: 429, 502, 503, 504."""
    return status in RETRY_STATUSES


NO_RETRY = RetryPolicy(max_attempts=1)
