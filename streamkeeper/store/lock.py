"""An inter-process lock beside the DuckDB file, so that overlapping writers queue instead of failing.

DuckDB lets one read-write process open a file and has no busy timeout: a second opener fails at once with
``Could not set lock on file``. Every streamkeeper process therefore takes this lock (``<db>.lock``, an
``flock``) before it opens the file: exclusive to write, shared to read. Waiting is bounded by a timeout
that ends in a clear `StoreError`, never DuckDB's lock message.
"""

from __future__ import annotations

import fcntl
import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from streamkeeper.errors import StoreError


class FileLock:
    """A shared/exclusive ``flock`` on a path, also serialising threads of one process.

    Args:
        path: the lock file (created if missing).
        timeout: seconds to wait before giving up with `StoreError`.
    """

    def __init__(self, path: Path, timeout: float = 300.0) -> None:
        self.path = path
        self.timeout = timeout
        self._thread_lock = threading.RLock()

    @contextmanager
    def hold(self, exclusive: bool = True) -> Iterator[None]:
        """Hold the lock for the duration of the block."""
        with self._thread_lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                self._acquire(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
                try:
                    yield
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def _acquire(self, fd: int, mode: int) -> None:
        deadline = time.monotonic() + self.timeout
        delay = 0.002
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreError(
                        f"the history store is busy: another streamkeeper process held {self.path} "
                        f"for more than {self.timeout:.0f} s"
                    ) from None
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 0.1)
