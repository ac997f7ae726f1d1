"""Which history store to open, in DuckDB's and AWS's own terms (no URL scheme of ours).

- ``STREAMKEEPER_STORE``: a DuckDB file path (the embedded backend), or DuckDB's DuckLake attach string with a
  PostgreSQL catalog, ``ducklake:postgres:dbname=... host=... port=... user=...`` (the lake backend).
  Unset: ``STREAMKEEPER_DB`` (the embedded file, as before), else ``data/streamkeeper.duckdb``.
- ``STREAMKEEPER_DATA_PATH``: DuckLake's ``DATA_PATH``, where its Parquet files go: ``s3://bucket/prefix/``
  or a directory every host mounts. Needed when the lake is created; afterwards the catalog remembers it.
- The catalog's password: ``PGPASSWORD`` (libpq's own variable), or `StoreSettings.catalog_password` (the
  store block's secret); never in the attach string that is shown.
- S3: ``AWS_ENDPOINT_URL`` (an S3-compatible store; unset: AWS), ``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION`` (or ``AWS_DEFAULT_REGION``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr

from streamkeeper.errors import ConfigError

STORE_ENV = "STREAMKEEPER_STORE"
DB_ENV = "STREAMKEEPER_DB"
DATA_PATH_ENV = "STREAMKEEPER_DATA_PATH"
DEFAULT_PATH = Path("data/streamkeeper.duckdb")
LAKE_PREFIX = "ducklake:"
CATALOG_PREFIX = "ducklake:postgres:"

_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def redact_conninfo(text: str) -> str:
    """`text` with any ``password=...`` of a libpq connection string masked."""
    return _PASSWORD.sub(r"\1***", text)


class S3Settings(BaseModel):
    """Where DuckLake's Parquet files are when the data path is ``s3://``: AWS's standard settings."""

    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    region: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> S3Settings:
        env = os.environ if env is None else env
        secret = env.get("AWS_SECRET_ACCESS_KEY")
        token = env.get("AWS_SESSION_TOKEN")
        return cls(
            endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            secret_access_key=SecretStr(secret) if secret else None,
            session_token=SecretStr(token) if token else None,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        )

    def endpoint(self) -> tuple[str, bool] | None:
        """``(host[:port], use_ssl)`` of a custom endpoint, or None for AWS itself."""
        if not self.endpoint_url:
            return None
        parts = urlsplit(self.endpoint_url if "://" in self.endpoint_url else f"https://{self.endpoint_url}")
        if not parts.netloc:
            raise ConfigError(f"AWS_ENDPOINT_URL {self.endpoint_url!r}: expected http(s)://host[:port]")
        return parts.netloc, parts.scheme != "http"


class StoreSettings(BaseModel):
    """The history store to open: an embedded DuckDB file or a DuckLake lakehouse.

    Attributes:
        target: the file path, or ``ducklake:postgres:<libpq connection string>``.
        data_path: DuckLake's data path (``s3://bucket/prefix/`` or a shared directory).
        catalog_password: the PostgreSQL catalog's password (else libpq's ``PGPASSWORD`` or ``.pgpass``).
        s3: S3 endpoint, keys and region for an ``s3://`` data path.
    """

    target: str
    data_path: str | None = None
    catalog_password: SecretStr | None = None
    s3: S3Settings = S3Settings()

    @classmethod
    def from_env(
        cls, target: str | Path | None = None, env: Mapping[str, str] | None = None
    ) -> StoreSettings:
        """`target` if given, else ``$STREAMKEEPER_STORE``, else ``$STREAMKEEPER_DB``, else the default file."""
        env = os.environ if env is None else env
        chosen = str(target) if target is not None and str(target) else None
        chosen = chosen or env.get(STORE_ENV) or env.get(DB_ENV) or str(DEFAULT_PATH)
        password = env.get("PGPASSWORD")
        settings = cls(
            target=chosen.strip(),
            data_path=env.get(DATA_PATH_ENV) or None,
            catalog_password=SecretStr(password) if password else None,
            s3=S3Settings.from_env(env),
        )
        settings.check()
        return settings

    @property
    def kind(self) -> Literal["embedded", "lake"]:
        return "lake" if self.target.startswith(LAKE_PREFIX) else "embedded"

    @property
    def path(self) -> Path:
        """The embedded backend's file."""
        return Path(self.target)

    @property
    def conninfo(self) -> str:
        """The lake catalog's libpq connection string (what follows ``ducklake:postgres:``)."""
        return self.target[len(CATALOG_PREFIX) :].strip()

    def check(self) -> None:
        """One clear line for a target that cannot work."""
        if self.kind == "embedded":
            if not self.target:
                raise ConfigError(f"{STORE_ENV}: empty: give a DuckDB file path or a ducklake: attach string")
            return
        if not self.target.startswith(CATALOG_PREFIX):
            raise ConfigError(
                f"{STORE_ENV} {redact_conninfo(self.target)!r}: the DuckLake catalog must be PostgreSQL "
                f"(ducklake:postgres:dbname=... host=... port=... user=...), so that workers on several hosts "
                f"share it"
            )
        if not self.conninfo:
            raise ConfigError(
                f"{STORE_ENV}: ducklake:postgres: needs a connection string (dbname=... host=... user=...)"
            )
        if self.data_path and self.data_path.startswith("s3://") and not urlsplit(self.data_path).netloc:
            raise ConfigError(f"{DATA_PATH_ENV} {self.data_path!r}: expected s3://bucket/prefix/")

    def describe(self) -> str:
        """What the store is, for messages (never a password)."""
        if self.kind == "embedded":
            return str(self.target)
        where = f" (data {self.data_path})" if self.data_path else ""
        return f"{redact_conninfo(self.target)}{where}"
