"""Real infrastructure for the DuckLake backend, started by the test itself: a PostgreSQL 15 cluster in a temp
dir and moto's S3 server, optionally inside a network namespace. Nothing here is a mock: DuckDB talks to
them through its postgres and httpfs extensions, boto3 through HTTP.

PostgreSQL's binaries are part of the machine image (``/usr/lib/postgresql/15/bin``); ``initdb`` and
``pg_ctl`` refuse root, so they run as the ``postgres`` user (``runuser``), in a directory it owns.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pollkit import free_port as free_port
from pollkit import wait_for as wait_for  # both re-exported for the scale tests

PG_BIN = Path(os.environ.get("STREAMKEEPER_PG_BIN", "/usr/lib/postgresql/15/bin"))
S3_KEY_ID = "lake-test-key"
S3_SECRET = "lake-test-secret"  # moto accepts any keys
REGION = "us-east-1"


def in_netns(netns: str | None, args: list[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *args] if netns else args


@dataclass
class Postgres:
    """A PostgreSQL cluster in a temp dir, trusting connections from `host`'s network."""

    root: Path
    host: str
    port: int
    netns: str | None = None

    def conninfo(self, dbname: str) -> str:
        return f"dbname={dbname} host={self.host} port={self.port} user=postgres"

    def create_database(self, name: str) -> str:
        """Create database `name`; returns its libpq connection string."""
        import psycopg

        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.conninfo(name)

    def stop(self) -> None:
        subprocess.run(
            in_netns(
                self.netns,
                _as_postgres(
                    [str(PG_BIN / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop"]
                ),
            ),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def _as_postgres(args: list[str]) -> list[str]:
    return args if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--", *args]


def start_postgres(
    host: str = "127.0.0.1", port: int | None = None, netns: str | None = None, durable: bool = False
) -> Postgres:
    """initdb + pg_ctl start (as the postgres user when root); ``durable=False`` turns fsync off for speed."""
    if not (PG_BIN / "initdb").exists():
        raise AssertionError(
            f"PostgreSQL binaries not found in {PG_BIN} (the machine image should have them)"
        )
    root = Path(tempfile.mkdtemp(prefix="streamkeeper-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = port or free_port()
    init = subprocess.run(
        _as_postgres(
            [str(PG_BIN / "initdb"), "-D", str(root / "data"), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
        ),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert init.returncode == 0, f"initdb failed: {init.stderr[-2000:]}"
    with open(root / "data" / "pg_hba.conf", "a") as hba:
        hba.write("host all all 0.0.0.0/0 trust\n")
    options = f"-p {port} -k {root} -c listen_addresses={host} -c max_connections=200"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    start = subprocess.run(
        in_netns(
            netns,
            _as_postgres(
                [
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(root / "data"),
                    "-o",
                    options,
                    "-l",
                    str(root / "log"),
                    "-w",
                    "-t",
                    "120",
                    "start",
                ]
            ),
        ),
        capture_output=True,
        text=True,
        timeout=180,
    )
    log = (root / "log").read_text(errors="replace")[-2000:] if (root / "log").exists() else ""
    assert start.returncode == 0, f"pg_ctl start failed: {start.stderr[-1000:]} {log}"
    return Postgres(root=root, host=host, port=port, netns=netns)


@dataclass
class S3Server:
    """moto's S3 server in a subprocess (its own process group)."""

    host: str
    port: int
    proc: subprocess.Popen[bytes]
    buckets: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=S3_KEY_ID,
            aws_secret_access_key=S3_SECRET,
            region_name=REGION,
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def env(self) -> dict[str, str]:
        """AWS's standard variables pointing at this server."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": S3_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "AWS_REGION": REGION,
        }

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=15)


def start_s3(
    host: str = "127.0.0.1", port: int | None = None, netns: str | None = None, log: Path | None = None
) -> S3Server:
    port = port or free_port()
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - the server's log, for its lifetime
    proc = subprocess.Popen(
        in_netns(netns, [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)]),
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = S3Server(host=host, port=port, proc=proc)

    def up() -> bool:
        assert proc.poll() is None, f"moto's server exited ({proc.returncode})"
        try:
            return httpx.get(server.url + "/", timeout=2).status_code < 500
        except httpx.HTTPError:
            return False

    wait_for(up, 120, "moto's S3 server")
    return server


def lake_env(pg: Postgres, dbname: str, s3: S3Server, bucket: str, prefix: str = "lake/") -> dict[str, str]:
    """The environment a streamkeeper process needs for a DuckLake store on `pg` and `s3`."""
    return {
        "STREAMKEEPER_STORE": f"ducklake:postgres:{pg.conninfo(dbname)}",
        "STREAMKEEPER_DATA_PATH": f"s3://{bucket}/{prefix}",
        **s3.env(),
    }


@pytest.fixture(scope="session")
def lake_services() -> Iterator[tuple[Postgres, S3Server]]:
    """One PostgreSQL cluster and one S3 server (bucket ``lake``) for the session; import it in a conftest."""
    pg = start_postgres()
    try:
        s3 = start_s3()
        try:
            s3.create_bucket("lake")
            yield pg, s3
        finally:
            s3.stop()
    finally:
        pg.stop()


@pytest.fixture
def lake(lake_services: tuple[Postgres, S3Server], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A new, empty DuckLake: its own catalog database and data prefix; the environment is set to it."""
    pg, s3 = lake_services
    name = f"lake_{uuid.uuid4().hex[:10]}"
    pg.create_database(name)
    env = lake_env(pg, name, s3, "lake", prefix=f"{name}/")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env
