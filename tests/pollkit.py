"""The one poll-until loop and free-port finder every test helper uses (no fixed sleeps in the tests).

Importable from any test module and kit as ``from pollkit import free_port, wait_for``: pytest puts tests/ on
``sys.path`` for tests/conftest.py; a script run on its own (a bench) inserts tests/ itself.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEADLINE = 60.0
FIRST_PAUSE = 0.005


def wait_for(
    condition: Callable[[], T], timeout: float = DEADLINE, what: str = "condition", every: float = 0.05
) -> T:
    """Poll `condition` until it returns something truthy, and return that; fail naming `what` after `timeout` s.

    The pause between polls starts at 5 ms and doubles up to `every`: a condition that holds soon is seen
    soon, and a long wait (a server starting) does not spin.
    """
    deadline = time.monotonic() + timeout
    pause = min(FIRST_PAUSE, every)
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 2, every)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
