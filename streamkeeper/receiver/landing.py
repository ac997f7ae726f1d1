"""The landing area, writer side: each accepted delivery becomes durable files before the receiver answers.

Layout and format (docs/CONVENTIONS.md, "Landing area"): ``<landing>/<vendor>/<YYYYMMDD>/<delivery_id>.json``,
one JSON object per file. A file is written under ``<delivery_id>.json.tmp``, fsync'ed, renamed to its
final name, and the directory is fsync'ed (new directories: their parents too), so a file the loader sees
is complete and survives a crash of the machine, not only of the process.

Two kinds of record (field ``kind``, absent = ``event``):

- ``event``: the events columns ``vendor, stream, event_id, subscription_id, account, event_type,
  occurred_at, received_at, payload`` plus ``delivery_id``;
- ``gap``: a sequence gap for ``event_gaps``: ``vendor, stream, subscription_id, expected, received,
  detail, detected_at`` plus ``delivery_id`` (deterministic, so a re-detected gap overwrites its file).

Both are pydantic models here (`EventRecord`, `GapRecord`): the receiver builds every record through them,
so a value the loader could not store (a sequence number beyond a BIGINT, a name that is not text) is
refused with a 400 before anything lands, whatever the route.

The receiver keeps its own state under ``<landing>/.receiver/`` in files not named ``*.json`` (a loader
globbing ``*/*/*.json`` never sees them). With the landing area on S3 (``s3://bucket/prefix/``) each record
is a PUT that succeeded before the 2xx (`streamkeeper.landing_storage.S3Storage`), and the receiver's own
state stays on its host, in ``$STREAMKEEPER_HOME/receiver/<bucket>/<prefix>/.receiver/``.
"""

from __future__ import annotations

import fcntl
import json
import secrets
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_serializer

from streamkeeper.environment import streamkeeper_home
from streamkeeper.errors import ConfigError
from streamkeeper.landing_storage import (
    S3Storage,
    fsync_dir,
    is_s3,
    landing_location,
    make_dirs,
    write_atomic,
)

DEFAULT_LANDING = Path("data/landing")
STATE_DIR = ".receiver"  # ours: the receiver's own state, beside the vendors' directories
TMP_SUFFIX = ".json.tmp"


BIGINT_MAX = 2**63 - 1
"""The largest value of a BIGINT column (``event_gaps.expected``/``received``)."""

Text = Annotated[str, StringConstraints(min_length=1)]
SafeName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")]
Count = Annotated[int, Field(ge=0, le=BIGINT_MAX)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    delivery_id: SafeName
    vendor: SafeName
    stream: Text


class EventRecord(_Record):
    """A delivered event: the events columns, plus where it came from.

    Attributes:
        route: the receiver route it came in on (``/thingspace/devices``), for the quarantine report.
        previous_event_id: the id this event had under the format before (a new format keeps an event
            stored under the old one from landing again; see docs/receiver.md).
    """

    kind: Literal["event"] = "event"
    route: str | None = None
    event_id: Text
    previous_event_id: str | None = None
    subscription_id: str | None = None
    account: str | None = None
    event_type: str | None = None
    occurred_at: AwareDatetime | None = None
    received_at: AwareDatetime
    payload: Any = None

    @field_serializer("occurred_at", "received_at")
    def _iso(self, value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()


class GapRecord(_Record):
    """A DMA sequence gap: ``expected .. received - 1`` were not received."""

    kind: Literal["gap"] = "gap"
    subscription_id: str | None = None
    expected: Count | None = None
    received: Count | None = None
    detail: str | None = None
    detected_at: AwareDatetime

    @field_serializer("detected_at")
    def _iso(self, value: datetime) -> str:
        return value.isoformat()


def landing_dir(explicit: Path | str | None = None) -> Path | str:
    """The landing area: `explicit`, else ``$STREAMKEEPER_LANDING``, else ``data/landing`` (``s3://`` as text)."""
    location = landing_location(explicit)
    return location if is_s3(location) else Path(location)


def new_delivery_id(at: datetime) -> str:
    """A unique, time-sortable id that is also a safe file name."""
    return f"{at.astimezone(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(6)}"


class LandingArea:
    """Durable writes of landing records, and the lock that makes one receiver the owner of a directory.

    Args:
        root: the landing directory (created if missing), or ``s3://bucket/prefix/``.
        lock: take an exclusive lock on ``<root>/.receiver/lock`` (a second receiver on the same directory
            would corrupt the DMA sequence state); released by `close()` or when the process ends.
        state_root: where the ``.receiver/`` state goes when `root` is on S3 (default
            ``$STREAMKEEPER_HOME/receiver/<bucket>/<prefix>``).
    """

    def __init__(self, root: Path | str, lock: bool = True, state_root: Path | None = None) -> None:
        self.location = str(root)
        self.storage = S3Storage(self.location) if is_s3(root) else None
        if self.storage is None:
            self.root = Path(root)
        else:  # the state of this host's receiver for that bucket and prefix
            self.root = (
                state_root or streamkeeper_home() / "receiver" / self.storage.bucket / self.storage.prefix
            )
        self.state_dir = self.root / STATE_DIR
        self._known_dirs: set[Path] = set()
        self._dirs_lock = threading.Lock()
        self._lock_file: Any = None
        self.ensure_dir(self.state_dir)
        if lock:
            handle = open(self.state_dir / "lock", "a+")  # noqa: SIM115 (held until close)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise ConfigError(f"another receiver is using the landing directory {root}") from None
            self._lock_file = handle
        self.remove_stale_tmp()

    def close(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock
            self._lock_file = None

    def remove_stale_tmp(self) -> int:
        """Delete half-written files left by a crash (their deliveries were never acknowledged)."""
        removed = 0
        for tmp in [*self.root.glob(f"*/*/*{TMP_SUFFIX}"), *self.state_dir.rglob("*.tmp")]:
            tmp.unlink(missing_ok=True)
            removed += 1
        return removed

    def ensure_dir(self, path: Path) -> None:
        """Create `path` (and parents) durably: a new directory's entry is fsync'ed in its parent."""
        if path in self._known_dirs:
            return
        with self._dirs_lock:
            make_dirs(path)
            self._known_dirs.add(path)

    def key_for(self, record: dict[str, Any]) -> str:
        """``<vendor>/<YYYYMMDD>/<delivery_id>.json``."""
        stamp = str(record.get("received_at") or record["detected_at"])
        day = datetime.fromisoformat(stamp).astimezone(UTC).strftime("%Y%m%d")
        return f"{record['vendor']}/{day}/{record['delivery_id']}.json"

    def path_for(self, record: dict[str, Any]) -> Path:
        return self.root / self.key_for(record)

    def write(self, records: Iterable[dict[str, Any]]) -> list[Path]:
        """Write records durably (blocking: call it from a worker thread). Returns their paths (S3: keys)."""
        if self.storage is not None:
            items = [(self.key_for(r), _encode(r)) for r in records]
            self.storage.put(items)
            return [Path(key) for key, _ in items]
        paths: list[Path] = []
        dirs: set[Path] = set()
        for record in records:
            path = self.path_for(record)
            self.ensure_dir(path.parent)
            data = _encode(record)
            try:
                write_atomic(path, data)
            except FileNotFoundError:  # the directory was removed since (a cleanup): make it again
                self._known_dirs.discard(path.parent)
                self.ensure_dir(path.parent)
                write_atomic(path, data)
            paths.append(path)
            dirs.add(path.parent)
        for directory in dirs:
            fsync_dir(directory)
        return paths


def _encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def read_records(root: Path) -> list[dict[str, Any]]:
    """Every landed record under `root` (for tests and tools; the loader lives in streamkeeper.ingest)."""
    out = []
    for path in sorted(root.glob("*/*/*.json")):
        if path.parts[-3].startswith("."):
            continue
        out.append(json.loads(path.read_bytes()))
    return out
