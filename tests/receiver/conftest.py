"""Receiver fixtures: the receiver app served on loopback over a temporary landing area."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rxkit import Running, receiver_config

from streamkeeper.receiver import ReceiverConfig, ReceiverServer, create_app
from streamkeeper.sandbox.tls import TLSFiles


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    return tmp_path / "landing"


@pytest.fixture
def start_receiver(landing: Path) -> Iterator[Callable[..., Running]]:
    """``start_receiver(config=None, port=0, tls=None)``: a receiver app on loopback over `landing`."""
    running: list[Running] = []

    def start(config: ReceiverConfig | None = None, port: int = 0, tls: TLSFiles | None = None) -> Running:
        app = create_app(config or receiver_config(), landing=landing)
        server = ReceiverServer(
            app, port=port, certfile=tls.certfile if tls else None, keyfile=tls.keyfile if tls else None
        ).start()
        one = Running(server, app.state.receiver)
        running.append(one)
        return one

    yield start
    for one in running:
        one.stop()
