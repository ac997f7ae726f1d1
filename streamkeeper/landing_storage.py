"""Where the landing area's records are kept: a directory on this host, or an S3 prefix shared by hosts.

``STREAMKEEPER_LANDING`` is a directory (default ``data/landing``) or ``s3://bucket/prefix/``. Either way a
record is one object, ``<vendor>/<YYYYMMDD>/<delivery_id>.json`` under the root, written durably before
`put` returns (directory: a fsync'ed temporary file renamed into place, the directory fsync'ed; S3: a PUT
that succeeded, which S3 stores durably before it answers), so a receiver may answer 2xx after it.
Quarantined records sit in sight under ``_rejected/`` (same layout, a ``.reason`` object beside each;
`rejected_path` is where, as ``rejected_deliveries.landing_path`` records it).
Names starting with ``.`` or ``_`` at the top are not records (``.receiver/`` is the receiver's own state
in a directory landing). S3 endpoint, keys and region come from AWS's standard variables.

`pending` lists finished records oldest day first. Which loader takes which record is not decided here: the
loader claims them through the history store (`HistoryStore.claims`), so that on a shared store each
record is loaded by one worker at a time.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from streamkeeper.errors import ConfigError, StreamkeeperError

LANDING_ENV = "STREAMKEEPER_LANDING"
DEFAULT_LANDING = "data/landing"
REJECTED = "_rejected"
RECORD_SUFFIX = ".json"


def landing_location(explicit: str | Path | None = None) -> str:
    """`explicit`, else ``$STREAMKEEPER_LANDING``, else ``data/landing`` (as text: ``s3://`` survives)."""
    return str(explicit) if explicit else os.environ.get(LANDING_ENV) or DEFAULT_LANDING


def is_s3(location: str | Path) -> bool:
    return str(location).startswith("s3://")


class RecordTooLarge(Exception):
    """A record over the size a reader accepts (`LandingStorage.get`'s `max_bytes`): it is not read."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the record is {size} bytes, over {limit}")
        self.size = size


class LandingStorage(ABC):
    """The landing area's records by key (``<vendor>/<day>/<delivery_id>.json``)."""

    location: str

    @abstractmethod
    def put(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store records durably; returns only when every one is (blocking: call it from a worker thread)."""

    @abstractmethod
    def pending(self) -> Iterator[str]:
        """Keys of the finished records, oldest day first (vendors in turn), by name within a day."""

    @abstractmethod
    def get(self, key: str, max_bytes: int | None = None) -> bytes | None:
        """A record's bytes, or None when it is gone (another loader took it).

        Raises:
            RecordTooLarge: the record is over `max_bytes` (nothing of it was read).
            OSError: a directory's file cannot be read (e.g. no permission).
        """

    @abstractmethod
    def delete(self, keys: Iterable[str]) -> None:
        """Remove records (missing ones are fine)."""

    @abstractmethod
    def reject(self, key: str, reason: str) -> None:
        """Move a record under ``_rejected/`` with its reason beside it, in sight of an operator (a record
        moved already, or gone, is left as it is)."""

    @abstractmethod
    def rejected_path(self, key: str) -> str:
        """Where `reject` puts a record: a file's path, or its ``s3://`` URL."""

    @abstractmethod
    def rejected(self) -> list[str]:
        """Keys of the quarantined records (relative to ``_rejected/``)."""


class DirectoryStorage(LandingStorage):
    """Records as files under a directory (a local disk, or a mount every host shares)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.location = str(root)

    def put(self, items: Iterable[tuple[str, bytes]]) -> None:
        dirs: set[Path] = set()
        for key, data in items:
            path = self.root / key
            if not path.parent.is_dir():
                make_dirs(path.parent)
            write_atomic(path, data)
            dirs.add(path.parent)
        for directory in dirs:
            fsync_dir(directory)

    def pending(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        days: list[tuple[str, str, Path]] = []
        for vendor_dir in self.root.iterdir():
            if not vendor_dir.is_dir() or vendor_dir.name.startswith((".", "_")):
                continue
            for day_dir in vendor_dir.iterdir():
                if day_dir.is_dir() and not day_dir.name.startswith((".", "_")):
                    days.append((day_dir.name, vendor_dir.name, day_dir))
        for day, vendor, day_dir in sorted(days):
            for entry in sorted(os.scandir(day_dir), key=lambda e: e.name):
                if entry.name.endswith(RECORD_SUFFIX) and not entry.name.startswith(".") and entry.is_file():
                    yield f"{vendor}/{day}/{entry.name}"

    def get(self, key: str, max_bytes: int | None = None) -> bytes | None:
        path = self.root / key
        try:
            if max_bytes is not None and (size := path.stat().st_size) > max_bytes:
                raise RecordTooLarge(size, max_bytes)
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            (self.root / key).unlink(missing_ok=True)

    def reject(self, key: str, reason: str) -> None:
        target = Path(self.rejected_path(key))
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(self.root / key, target)
        except FileNotFoundError:
            return
        target.with_name(target.name + ".reason").write_text(reason + "\n")

    def rejected_path(self, key: str) -> str:
        return str(self.root / REJECTED / key)

    def rejected(self) -> list[str]:
        base = self.root / REJECTED
        return (
            sorted(str(p.relative_to(base)) for p in base.rglob(f"*{RECORD_SUFFIX}")) if base.is_dir() else []
        )


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a fsync'ed temporary file and a rename (the caller fsyncs the dir)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def make_dirs(path: Path) -> None:
    """Create `path` and its missing parents durably (each new entry fsync'ed in its parent)."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        fsync_dir(new.parent)


class S3Storage(LandingStorage):
    """Records as objects under ``s3://bucket/prefix/`` (boto3; AWS's standard variables)."""

    def __init__(self, location: str, client: Any = None) -> None:
        parts = urlsplit(location)
        if not parts.netloc:
            raise ConfigError(f"{LANDING_ENV} {location!r}: expected s3://bucket/prefix/")
        self.location = location
        self.bucket = parts.netloc
        self.prefix = parts.path.lstrip("/")
        if self.prefix and not self.prefix.endswith("/"):
            self.prefix += "/"
        self._client = client
        self._client_lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                self._client = boto3.client(
                    "s3",
                    config=Config(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=64),
                )
            return self._client

    def _call(self, what: str, method: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return method(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise StreamkeeperError(
                f"landing area {self.location}: S3 {what}: {error.get('Code', '?')}: {error.get('Message', '')}"
            ) from None
        except BotoCoreError as exc:
            raise StreamkeeperError(f"landing area {self.location}: S3 {what}: {exc}") from None

    def put(self, items: Iterable[tuple[str, bytes]]) -> None:
        for key, data in items:
            self._call(
                "PutObject",
                self.client.put_object,
                Bucket=self.bucket,
                Key=self.prefix + key,
                Body=data,
                ContentType="application/json",
            )

    def _keys(self, under: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + under):
                for item in page.get("Contents", []):
                    yield item["Key"][len(self.prefix) :]
        except (ClientError, BotoCoreError) as exc:
            raise StreamkeeperError(f"landing area {self.location}: S3 ListObjectsV2: {exc}") from None

    def pending(self) -> Iterator[str]:
        days: dict[tuple[str, str], list[str]] = {}
        for key in self._keys(""):
            parts = key.split("/")
            if len(parts) != 3 or parts[0].startswith((".", "_")) or not parts[2].endswith(RECORD_SUFFIX):
                continue
            days.setdefault((parts[1], parts[0]), []).append(key)
        for day in sorted(days):
            yield from sorted(days[day])

    def get(self, key: str, max_bytes: int | None = None) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
            size = int(response.get("ContentLength") or 0)
            if max_bytes is not None and size > max_bytes:
                response["Body"].close()  # the body is not read
                raise RecordTooLarge(size, max_bytes)
            body: bytes = response["Body"].read()
        except ClientError as exc:
            if _missing(exc):
                return None
            raise StreamkeeperError(f"landing area {self.location}: S3 GetObject {key}: {exc}") from None
        except BotoCoreError as exc:
            raise StreamkeeperError(f"landing area {self.location}: S3 GetObject {key}: {exc}") from None
        return body

    def delete(self, keys: Iterable[str]) -> None:
        batch = [{"Key": self.prefix + k} for k in keys]
        for start in range(0, len(batch), 1000):  # S3 takes 1,000 keys per DeleteObjects
            self._call(
                "DeleteObjects",
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": batch[start : start + 1000], "Quiet": True},
            )

    def reject(self, key: str, reason: str) -> None:
        """Copy the object under ``_rejected/`` (in S3, not through this host), its reason beside it, then
        delete it; a crash between leaves it pending, and the next load quarantines it again."""
        from botocore.exceptions import BotoCoreError, ClientError

        target = f"{REJECTED}/{key}"
        try:
            self.client.copy_object(
                Bucket=self.bucket,
                Key=self.prefix + target,
                CopySource={"Bucket": self.bucket, "Key": self.prefix + key},
            )
        except ClientError as exc:
            if _missing(exc):
                return  # moved already, or taken
            raise StreamkeeperError(f"landing area {self.location}: S3 CopyObject {key}: {exc}") from None
        except BotoCoreError as exc:
            raise StreamkeeperError(f"landing area {self.location}: S3 CopyObject {key}: {exc}") from None
        self.put([(f"{target}.reason", (reason + "\n").encode())])
        self.delete([key])

    def rejected_path(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{REJECTED}/{key}"

    def rejected(self) -> list[str]:
        skip = len(REJECTED) + 1
        return sorted(k[skip:] for k in self._keys(REJECTED + "/") if not k.endswith(".reason"))


def _missing(exc: Any) -> bool:
    """Whether an S3 error says the object (or its source, for a copy) does not exist."""
    return exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound")


def open_storage(location: str | Path) -> LandingStorage:
    """The storage of a landing location: `S3Storage` for ``s3://...``, else `DirectoryStorage`."""
    return S3Storage(str(location)) if is_s3(location) else DirectoryStorage(location)
