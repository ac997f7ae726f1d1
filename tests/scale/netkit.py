"""Test hosts on this one machine: network namespaces on one bridge, and processes started inside them.

Each host is a namespace (``ip netns add``) with one veth into a bridge that lives in a namespace of its own;
the test process joins the bridge too (address ``.1``), so it can reach every host and every host can reach
the emulators it runs. Addresses are in a /24 of 10.213.0.0/16 picked per run; the traffic never leaves the
machine. Everything is removed by `Cluster.down`, also when the test fails. Needs root and iproute2: where a
namespace cannot be made, `Cluster.up` fails the test saying so (it never passes silently).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@dataclass
class Cluster:
    """Named hosts (``core``, ``w1``...) on one bridge; ``address(name)`` is a host's IPv4 address."""

    hosts: list[str]
    tag: str = field(default_factory=lambda: f"sk{os.getpid() % 10000}{random.randint(10, 99)}")
    subnet: int = field(default_factory=lambda: random.randint(100, 199))
    made: list[str] = field(default_factory=list)
    root_veth: str | None = None

    @property
    def root_address(self) -> str:
        return f"10.213.{self.subnet}.1"

    def address(self, host: str) -> str:
        return f"10.213.{self.subnet}.{10 + self.hosts.index(host)}"

    def netns(self, host: str) -> str:
        return f"{self.tag}{host}"

    def up(self) -> Cluster:
        try:
            switch = f"{self.tag}sw"
            _ip("netns", "add", switch)
            self.made.append(switch)
            _ip("-n", switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", switch, "link", "set", "br0", "up")
            for n, host in enumerate(["root", *self.hosts]):
                inner, outer = f"{self.tag}v{n}a", f"{self.tag}v{n}b"
                _ip("link", "add", inner, "type", "veth", "peer", "name", outer)
                _ip("link", "set", outer, "netns", switch)
                _ip("-n", switch, "link", "set", outer, "master", "br0")
                _ip("-n", switch, "link", "set", outer, "up")
                if host == "root":
                    self.root_veth = inner
                    _ip("addr", "add", f"{self.root_address}/24", "dev", inner)
                    _ip("link", "set", inner, "up")
                    continue
                ns = self.netns(host)
                _ip("netns", "add", ns)
                self.made.append(ns)
                _ip("link", "set", inner, "netns", ns)
                _ip("-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", inner)
                _ip("-n", ns, "link", "set", inner, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except (RuntimeError, FileNotFoundError, PermissionError) as exc:
            self.down()
            pytest.fail(
                f"cannot build the test hosts out of network namespaces ({exc}): this test needs root and "
                f"iproute2 (ip netns); it does not pass without them",
                pytrace=False,
            )
        return self

    def down(self) -> None:
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self.made.clear()
        if self.root_veth:
            subprocess.run(["ip", "link", "del", self.root_veth], capture_output=True, timeout=30)
            self.root_veth = None


class Processes:
    """Processes on the test hosts, each in its own process group; all killed at the end."""

    def __init__(self, cluster: Cluster, logs: Path, cwd: Path) -> None:
        self.cluster = cluster
        self.logs = logs
        self.cwd = cwd
        self.started: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, host: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.cluster.netns(host), *args],
            cwd=self.cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started[name] = proc
        return proc

    def run(self, host: str, args: list[str], env: dict[str, str], timeout: float = 300) -> str:
        """Run a command on a host to its end; its stdout (fails the test on a non-zero exit)."""
        proc = subprocess.run(
            ["ip", "netns", "exec", self.cluster.netns(host), *args],
            cwd=self.cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert proc.returncode == 0, f"on {host}: {' '.join(args[-3:])}: {proc.stderr[-3000:]}"
        return proc.stdout

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def kill_tree(self, name: str) -> list[int]:
        """SIGKILL a process and every descendant (a worker and the flow runs it started); their pids."""
        root = self.started[name].pid
        victims = [root, *descendants(root)]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.started[name].wait(timeout=30)
        return victims

    def stop_all(self) -> None:
        for proc in reversed(list(self.started.values())):
            if proc.poll() is None:
                for pid in descendants(proc.pid):
                    _signal(pid, signal.SIGTERM)
                _signal_group(proc.pid, signal.SIGTERM)
        for proc in reversed(list(self.started.values())):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                for pid in descendants(proc.pid):
                    _signal(pid, signal.SIGKILL)
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _signal(pid: int, sig: Any) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _signal_group(pid: int, sig: Any) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
