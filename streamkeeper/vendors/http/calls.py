"""A record of every vendor call (method, path template, status, latency), for the `api_calls` table.

Only the path template is kept (``/subscriptions/{id}``), never the query string, headers or body, so
nothing secret can reach the history store through it.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from pydantic import BaseModel


class ApiCall(BaseModel):
    """One HTTP attempt against a vendor."""

    vendor: str
    operation: str
    method: str
    path: str
    status: int | None
    latency_ms: float
    attempt: int
    error: str | None = None
    called_at: datetime


class CallRecorder:
    """A thread-safe buffer of `ApiCall`s, drained in batches into the store."""

    def __init__(self) -> None:
        self._calls: list[ApiCall] = []
        self._lock = threading.Lock()

    def record(self, call: ApiCall) -> None:
        with self._lock:
            self._calls.append(call)

    def drain(self) -> list[ApiCall]:
        """Return and forget the calls recorded so far."""
        with self._lock:
            calls, self._calls = self._calls, []
        return calls

    def __len__(self) -> int:
        with self._lock:
            return len(self._calls)


def now_utc() -> datetime:
    return datetime.now(UTC)
