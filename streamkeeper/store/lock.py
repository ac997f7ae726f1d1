"""An inter-process lock beside the DuckDB file, so that overlapping writers queue instead of failing.

DuckDB lets one read-write process open a file and has no busy timeout: a second opener fails at once with
``Could not set lock on file``. Every streamkeeper process therefore takes this lock (``<db>.lock``, an
``flock``) before it opens the file: exclusive to write, shared to read. Waiting is bounded by a timeout
that ends in a clear `StoreError`, never DuckDB's lock message.

Readers never starve a writer. Shared locks overlap, so readers that follow each other closely (a report
loop, two dashboards) would keep ``<db>.lock`` held for good and a waiting writer would never get it. So a
second lock, ``<db>.lock.gate``, is a turnstile: a writer holds it exclusively while it waits for its turn,
and a reader passes it (shared) before it takes its own turn. A waiting writer thus stops new readers and
waits only for the queries already running; readers then wait for its one batch.
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
        path: the lock file (created if missing); the turnstile is ``<path>.gate``.
        timeout: seconds to wait before giving up with `StoreError`.
    """

    def __init__(self, path: Path, timeout: float = 300.0) -> None:
        self.path = path
        self.gate = path.with_name(path.name + ".gate")
        self.timeout = timeout
        self._thread_lock = threading.RLock()

    @contextmanager
    def hold(self, exclusive: bool = True) -> Iterator[None]:
        """Hold the lock for the duration of the block."""
        with self._thread_lock:
            fd = self.acquire(exclusive)
            try:
                yield
            finally:
                self.release(fd)

    def acquire(self, exclusive: bool = True) -> int:
        """Take the lock (through the turnstile, as `hold`) and return its descriptor for `release`.

        Not serialised with this process's threads (`hold` is): for a holder that keeps the lock across
        batches and gives it up from another thread (`streamkeeper.store.embedded` sessions).
        """
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            gate = os.open(self.gate, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                deadline = time.monotonic() + self.timeout
                self._acquire(gate, mode, deadline)
                try:
                    self._acquire(fd, mode, deadline)
                finally:
                    fcntl.flock(gate, fcntl.LOCK_UN)
            finally:
                os.close(gate)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def release(self, fd: int) -> None:
        """Give up a lock `acquire` returned."""
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def waited_for(self) -> bool:
        """Whether another holder (a process, or a thread with its own descriptor) waits for its turn: it
        is in the turnstile, which every waiter holds while it waits (a writer alone, readers shared)."""
        gate = os.open(self.gate, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(gate, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(gate)  # closing drops the probe's own lock
        return False

    def _acquire(self, fd: int, mode: int, deadline: float) -> None:
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
