"""Fixtures of the ingest tests: the PubNub emulator, moto on loopback with fake credentials, a store, DuckLake on
PostgreSQL and moto's S3 (tests/lakekit.py), and a helper that runs a drain in a child process which pauses
right after its first commit (for SIGKILL)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from ingestkit import CHILD, FAKE_AWS, REGION, ROOT, Paused, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lakekit import lake, lake_services  # noqa: E402,F401  (fixtures: DuckLake on PostgreSQL and moto's S3)

from streamkeeper.ingest.base import PAUSE_ENV
from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.pubnub import PubNubEmulator
from streamkeeper.store import HistoryStore


@pytest.fixture
def store(db_path: Path) -> HistoryStore:
    return HistoryStore(db_path)


@pytest.fixture
def pubnub(serve: Callable[..., SandboxServer]) -> tuple[PubNubEmulator, str]:
    """The PubNub emulator (replay window 100, like the real service) and the origin to give the SDK."""
    emulator = PubNubEmulator(long_poll_timeout=1.0)
    server = serve(emulator)
    return emulator, f"http://127.0.0.1:{server.port}"


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto's server on a free loopback port, with fake AWS credentials in the environment."""
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in FAKE_AWS}
    os.environ.update(FAKE_AWS)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def sqs(moto_url: str) -> Any:
    return boto3.client("sqs", endpoint_url=moto_url, region_name=REGION)


@pytest.fixture
def kinesis(moto_url: str) -> Any:
    return boto3.client("kinesis", endpoint_url=moto_url, region_name=REGION)


@pytest.fixture
def paused_drain(tmp_path: Path) -> Iterator[Callable[..., Paused]]:
    """Start ``drain_<kind>`` in a child process that blocks on a FIFO right after its first commit."""
    started: list[Paused] = []

    def start(kind: str, target: str, db: Path, endpoint: str = "", **options: Any) -> Paused:
        fifo = tmp_path / f"pause-{len(started)}.fifo"
        os.mkfifo(fifo)
        env = {**os.environ, **FAKE_AWS, PAUSE_ENV: str(fifo)}
        args = {
            "kind": kind,
            "target": target,
            "db": str(db),
            "endpoint": endpoint,
            "region": REGION,
            "options": options,
        }
        process = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(args)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        paused = Paused(process, Path(str(fifo) + ".committed"))
        started.append(paused)

        def committed() -> bool:
            if process.poll() is not None:
                out, err = process.communicate()
                raise AssertionError(
                    f"the drain ended before pausing (exit {process.returncode}): {err[-2000:]}"
                )
            return paused.marker.exists()

        wait_for(committed, what="the child's first commit")
        return paused

    yield start
    for paused in started:
        if paused.process.poll() is None:
            paused.process.kill()
            paused.process.wait()
