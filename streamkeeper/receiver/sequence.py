"""DMA notification sequence numbers: stable event ids, repeats, restarts at 1, and gaps.

A DMA numbers the notifications of a subscription 1, 2, 3... and restarts at 1 after
``send-update-notification-now`` (seed). A notification carries no id and no timestamp, so its event id is
``<subscription id>:<epoch>:<sequence number>``, where the *epoch* names one numbering run: the time
(milliseconds since 1970) the receiver first saw that run, strictly increasing per subscription.

How a notification with sequence number ``s`` and body digest ``d`` is classified against the state of
its subscription (epoch, highest number seen ``last``, recent ``seq -> digest``, numbers still missing):

- ``s == last`` with the same digest: a **repeat** (a sender's retry of its latest notification): same
  event id; likewise ``1 < s < last`` with the digest seen for ``s`` (a late retry);
- ``s == 1 < last`` with the digest seen for 1: the numbering **restarted** (a new epoch). A DMA's
  notifications often have identical bodies (an UPDATE of an unchanged conference), so the digest cannot
  tell send-update-notification-now's 1 from an old 1; a restart is the documented way 1 comes again;
- ``s`` seen with another digest: the numbering **restarted** (a new epoch);
- ``s == last + 1``: the next one;
- ``s > last + 1``: a **gap**: ``last + 1 .. s - 1`` were not received (recorded, and remembered as missing);
- ``s`` among the missing: a **late** arrival filling part of an earlier gap (same epoch);
- any other ``s <= last``: the numbering **restarted** (a new epoch); if ``s > 1`` the restart's first
  notifications are a gap ``1 .. s - 1``;
- first notification of an unknown subscription: a new epoch; ``s > 1`` is a gap ``1 .. s - 1`` (the DMA
  numbers from 1 when a subscription is created).

Limits (ours), each needing a rare coincidence: repeats are recognised within the last `WINDOW` numbers
of a run; a restart right after notification 1 whose body equals it is taken for a repeat (it carries the
same information); a late retry of notification 1 after later ones is taken for a restart (one duplicate
row and a false gap, no loss); a restart whose first notification was lost and whose next ones repeat the
old bodies is taken for repeats until it passes the old run. A late arrival does not withdraw the gap
already recorded.

The state of each subscription is one small file, written atomically after the delivery's files landed:
a crash in between makes the sender's retry land under the same event id (the state did not move).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from streamkeeper.receiver.landing import LandingArea, fsync_dir, write_atomic

WINDOW = 256  # ours: how many recent sequence numbers keep their digest (repeat detection)
MAX_MISSING_RANGES = 64  # ours: how many missing ranges are remembered for late arrivals


def body_digest(body: Any) -> str:
    """A digest of a parsed notification, independent of key order and whitespace."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RunState:
    """Where one subscription's numbering stands."""

    epoch: int
    last: int
    seen: dict[int, str] = field(default_factory=dict)
    missing: tuple[tuple[int, int], ...] = ()  # inclusive ranges

    def to_json(self, subscription_id: str) -> dict[str, Any]:
        return {
            "subscription_id": subscription_id,
            "epoch": self.epoch,
            "last": self.last,
            "seen": {str(k): v for k, v in self.seen.items()},
            "missing": [list(r) for r in self.missing],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunState:
        return cls(
            epoch=int(data["epoch"]),
            last=int(data["last"]),
            seen={int(k): str(v) for k, v in data.get("seen", {}).items()},
            missing=tuple((int(lo), int(hi)) for lo, hi in data.get("missing", [])),
        )


@dataclass(frozen=True)
class Gap:
    expected: int
    received: int
    detail: str


@dataclass(frozen=True)
class Verdict:
    """What a notification is: its epoch, whether it repeats one already landed, the gap it reveals."""

    epoch: int
    sequence: int
    repeat: bool
    restart: bool
    gap: Gap | None
    state: RunState

    def event_id(self, subscription_id: str) -> str:
        return f"{subscription_id}:{self.epoch}:{self.sequence}"


def _new_run(previous: RunState | None, seq: int, digest: str, now_ms: int) -> RunState:
    epoch = now_ms if previous is None else max(now_ms, previous.epoch + 1)
    missing = ((1, seq - 1),) if seq > 1 else ()
    return RunState(epoch=epoch, last=seq, seen={seq: digest}, missing=missing)


def _remember(seen: dict[int, str], seq: int, digest: str, last: int) -> dict[int, str]:
    out = {k: v for k, v in seen.items() if k > last - WINDOW}
    if seq > last - WINDOW:
        out[seq] = digest
    return out


def _without(missing: tuple[tuple[int, int], ...], seq: int) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for lo, hi in missing:
        if lo <= seq <= hi:
            if lo < seq:
                out.append((lo, seq - 1))
            if seq < hi:
                out.append((seq + 1, hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def classify(state: RunState | None, seq: int, digest: str, now_ms: int) -> Verdict:
    """Classify a notification (pure: returns the state to keep once the notification has landed)."""
    if state is None:
        run = _new_run(None, seq, digest, now_ms)
        gap = Gap(1, seq, "first notification seen for this subscription") if seq > 1 else None
        return Verdict(run.epoch, seq, repeat=False, restart=False, gap=gap, state=run)
    known = state.seen.get(seq)
    if known == digest and (seq == state.last or seq > 1):
        return Verdict(state.epoch, seq, repeat=True, restart=False, gap=None, state=state)
    if known is None and seq == state.last + 1:
        run = replace(state, last=seq, seen=_remember(state.seen, seq, digest, seq))
        return Verdict(state.epoch, seq, repeat=False, restart=False, gap=None, state=run)
    if known is None and seq > state.last + 1:
        missing = (*state.missing, (state.last + 1, seq - 1))[-MAX_MISSING_RANGES:]
        run = RunState(state.epoch, seq, _remember(state.seen, seq, digest, seq), missing)
        detail = f"sequence went from {state.last} to {seq} (epoch {state.epoch})"
        return Verdict(state.epoch, seq, False, False, Gap(state.last + 1, seq, detail), run)
    if known is None and any(lo <= seq <= hi for lo, hi in state.missing):
        run = replace(
            state, seen=_remember(state.seen, seq, digest, state.last), missing=_without(state.missing, seq)
        )
        return Verdict(state.epoch, seq, repeat=False, restart=False, gap=None, state=run)
    # a number already used (another body) or older than anything expected: the numbering restarted
    run = _new_run(state, seq, digest, now_ms)
    gap = None
    if seq > 1:
        gap = Gap(1, seq, f"numbering restarted at {seq}, not 1 (epoch {run.epoch}, previous {state.epoch})")
    return Verdict(run.epoch, seq, repeat=False, restart=True, gap=gap, state=run)


_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,80}$")


class SequenceStates:
    """The durable state of every subscription's numbering, one file each, cached in memory.

    Files: ``<landing>/.receiver/dma/<consumer>/<subscription>.state`` (JSON). Blocking I/O: call `load`
    and `save` from a worker thread.
    """

    def __init__(self, landing: LandingArea) -> None:
        self.landing = landing
        self.root = landing.state_dir / "dma"
        self._cache: dict[tuple[str, str], RunState | None] = {}

    def _path(self, consumer: str, subscription_id: str) -> Path:
        name = (
            subscription_id if _SAFE.match(subscription_id) and not subscription_id.startswith(".") else None
        )
        if name is None:
            name = "sha256-" + hashlib.sha256(subscription_id.encode()).hexdigest()[:32]
        return self.root / consumer / f"{name}.state"

    def load(self, consumer: str, subscription_id: str) -> RunState | None:
        key = (consumer, subscription_id)
        if key not in self._cache:
            path = self._path(consumer, subscription_id)
            try:
                self._cache[key] = RunState.from_json(json.loads(path.read_bytes()))
            except FileNotFoundError:
                self._cache[key] = None
        return self._cache[key]

    def save(self, consumer: str, subscription_id: str, state: RunState) -> None:
        path = self._path(consumer, subscription_id)
        self.landing.ensure_dir(path.parent)
        write_atomic(path, json.dumps(state.to_json(subscription_id), separators=(",", ":")).encode())
        fsync_dir(path.parent)
        self._cache[(consumer, subscription_id)] = state
