"""A local stand-in for PubNub, speaking enough of its REST protocol for the unmodified ``pubnub`` 10.x SDK.

What it serves (see ``../shared/PUBNUB.md`` for the protocol as the SDK speaks it):

- ``GET /v2/subscribe/{sub_key}/{channels}/0?tt=``: the long poll. ``tt`` absent or 0 answers at once with
  the current timetoken; ``tt`` > 0 answers with the messages newer than ``tt`` (oldest first, at most
  100), or holds until one is published or `long_poll_timeout` passes (then the same ``tt``, no messages).
- ``GET /time/0``: ``[<timetoken>]``.
- ``GET /publish/{pub}/{sub}/0/{channel}/0/{json}`` and ``POST /publish/{pub}/{sub}/0/{channel}/0``.
- ``GET /v3/history/sub-key/{sub}/channel/{channels}`` and ``GET /v2/history/sub-key/{sub}/channel/{ch}``:
  ``start`` exclusive, ``end`` inclusive, the newest ``max`` of the window, oldest first.
- ``/v2/presence/sub-key/{sub}/channel/{channels}/leave`` and ``/heartbeat``: OK.

Plus, never part of PubNub: the Python handle `PubNubEmulator.publish` (thread-safe, used by the PLT
emulator and tests) and ``POST /_sandbox/publish`` (the same over HTTP, for a sandbox in another process).

Like the real service, a subscribe that resumes from an old timetoken only sees the last `replay_limit`
(100) messages of each channel; older ones are only in history. History keeps everything unless
`history_limit` is set. Messages are kept per channel name; the subscribe key is not checked (ours: one
keyset per emulator).

Paths are routed on the raw (still percent-encoded) path, because channel names are URL-encoded in it and a
channel list is comma-joined. asyncio already sets ``TCP_NODELAY`` on every accepted TCP socket (the
selector transport does it on creation), which spares each request the ~40 ms of Nagle + delayed ACK.
"""

from __future__ import annotations

import asyncio
import bisect
import gzip
import json
import threading
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote, unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive

from streamkeeper.sandbox.base import VendorSandbox

SUBSCRIBE_BATCH = 100
"""Messages in one subscribe answer, as the real service."""
REPLAY_LIMIT = 100
"""Messages per channel a resuming subscribe can still get (the real service keeps roughly 100)."""
HISTORY_MAX_SINGLE = 100
HISTORY_MAX_MULTI = 25
REGION = 1


@dataclass(frozen=True, slots=True)
class Message:
    """One published message, as the emulator keeps it."""

    timetoken: int
    channel: str
    payload: Any
    publisher: str | None = None
    meta: Any = None


@dataclass(slots=True)
class _Channel:
    live: list[Message] = field(default_factory=list)  # what a subscribe can still replay
    live_tts: list[int] = field(default_factory=list)
    history: list[Message] = field(default_factory=list)  # what history can return
    history_tts: list[int] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class _Waiter:
    channels: frozenset[str]
    future: asyncio.Future[None]


class BadRequest(Exception):
    """A request the emulator answers with 400."""


class PubNubEmulator(VendorSandbox):
    """The PubNub stand-in.

    Args:
        long_poll_timeout: seconds a subscribe with nothing to deliver is held (the real service: ~280 s).
        replay_limit: messages per channel a subscribe can catch up on (None: all of them).
        history_limit: messages kept per channel for history (None: all of them).
    """

    name: ClassVar[str] = "pubnub"

    def __init__(
        self,
        *,
        long_poll_timeout: float = 2.0,
        replay_limit: int | None = REPLAY_LIMIT,
        history_limit: int | None = None,
    ) -> None:
        self.long_poll_timeout = long_poll_timeout
        self.replay_limit = replay_limit
        self.history_limit = history_limit
        self._lock = threading.Lock()
        self._last_tt = 0  # never reset: timetokens stay strictly increasing across resets
        self._channels: dict[str, _Channel] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: set[_Waiter] = set()  # touched on the server loop only
        self._holds = 0  # subscribe requests held so far (touched on the server loop only)
        self._dirty: set[str] = set()
        self._wake_scheduled = False
        super().__init__()

    # -- state ---------------------------------------------------------------------------------------------
    def reset_state(self) -> None:
        with self._lock:
            self._channels = {}
            self._dirty = set()

    def error_body(self, status: int, code: str, message: str) -> tuple[bytes, str]:
        """PubNub's error shape: ``{"status", "error": true, "message", "service"}``."""
        body = {"status": status, "error": True, "message": message, "service": "Sandbox"}
        return json.dumps(body).encode(), "application/json"

    def timetoken(self) -> int:
        """A fresh timetoken: 100-ns units since the epoch (17 digits), larger than every one before."""
        with self._lock:
            return self._issue()

    def _issue(self) -> int:
        self._last_tt = max(time.time_ns() // 100, self._last_tt + 1)
        return self._last_tt

    def publish(
        self,
        channel: str,
        message: Any,
        *,
        publisher: str | None = None,
        meta: Any = None,
        store: bool = True,
    ) -> int:
        """Publish a message as if a publisher had sent it; callable from any thread.

        Args:
            channel: the channel name.
            message: any JSON-serialisable payload.
            publisher: the publisher's uuid (``i`` in subscribe answers), if any.
            meta: publish metadata (``u``), if any.
            store: whether history keeps it (``store=0`` on the wire).

        Returns:
            The message's timetoken.
        """
        with self._lock:
            tt = self._issue()
            msg = Message(tt, channel, message, publisher, meta)
            ch = self._channels.get(channel)
            if ch is None:
                ch = self._channels[channel] = _Channel()
            ch.live.append(msg)
            ch.live_tts.append(tt)
            if self.replay_limit is not None and len(ch.live) > self.replay_limit:
                excess = len(ch.live) - self.replay_limit
                del ch.live[:excess], ch.live_tts[:excess]
            if store:
                ch.history.append(msg)
                ch.history_tts.append(tt)
                if self.history_limit is not None and len(ch.history) > self.history_limit:
                    excess = len(ch.history) - self.history_limit
                    del ch.history[:excess], ch.history_tts[:excess]
            loop = self._loop
            schedule = loop is not None and not self._wake_scheduled
            if loop is not None:
                self._dirty.add(channel)
                self._wake_scheduled = True
        if schedule and loop is not None:
            try:
                loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # the server's loop is closed: nobody is waiting
                with self._lock:
                    self._wake_scheduled = False
                    self._dirty.clear()
        return tt

    @property
    def long_polls(self) -> int:
        """How many subscribe requests are being held right now."""
        return len(self._waiters)

    @property
    def holds(self) -> int:
        """How many subscribe requests have been held so far (a request the client left still counts)."""
        return self._holds

    def history(self, channel: str) -> list[Message]:
        """Every message history holds for a channel, oldest first."""
        with self._lock:
            ch = self._channels.get(channel)
            return list(ch.history) if ch else []

    def _bind_loop(self) -> None:
        """Remember the server's loop, for wakes from other threads (a restarted server has a new one)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            with self._lock:
                self._loop = loop
                self._wake_scheduled = False
                self._dirty = set()

    def _wake(self) -> None:
        """On the server loop: release the long polls waiting on a channel that got a message."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            self._wake_scheduled = False
        loop = asyncio.get_running_loop()
        for waiter in list(self._waiters):
            if waiter.future.get_loop() is not loop or waiter.future.done():
                continue
            if not waiter.channels.isdisjoint(dirty):
                waiter.future.set_result(None)

    def _newer(self, channels: Iterable[str], after: int) -> list[Message]:
        out: list[Message] = []
        with self._lock:
            for name in channels:
                ch = self._channels.get(name)
                if ch is None:
                    continue
                i = bisect.bisect_right(ch.live_tts, after)
                out.extend(ch.live[i : i + SUBSCRIBE_BATCH])
        out.sort(key=lambda m: m.timetoken)
        return out[:SUBSCRIBE_BATCH]

    def _window(self, channel: str, start: int | None, end: int | None) -> list[Message]:
        """History of a channel between ``start`` (exclusive) and ``end`` (inclusive), oldest first."""
        with self._lock:
            ch = self._channels.get(channel)
            if ch is None:
                return []
            tts = ch.history_tts
            lo, hi = 0, len(tts)
            if start is not None and end is not None and start < end:  # a forward window
                lo, hi = bisect.bisect_right(tts, start), bisect.bisect_right(tts, end)
            else:
                if start is not None:
                    hi = bisect.bisect_left(tts, start)
                if end is not None:
                    lo = bisect.bisect_left(tts, end)
            return ch.history[lo:hi] if lo < hi else []

    # -- routes --------------------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v2/subscribe/{rest:path}", self._subscribe, methods=["GET"]),
            Route("/time/0", self._time, methods=["GET"]),
            Route("/publish/{rest:path}", self._publish, methods=["GET", "POST"]),
            Route("/v3/history/sub-key/{rest:path}", self._history_v3, methods=["GET"]),
            Route("/v2/history/sub-key/{rest:path}", self._history_v2, methods=["GET"]),
            Route("/v2/presence/sub-key/{rest:path}", self._presence, methods=["GET"]),
            Route("/_sandbox/publish", self._inject, methods=["POST"]),  # ours: not PubNub
        ]

    def _bad(self, message: str) -> Response:
        return self.error(400, "bad_request", message)

    async def _subscribe(self, request: Request) -> Response:
        self._bind_loop()
        # /v2/subscribe/{sub_key}/{channels}/0
        parts = _segments(request)
        if len(parts) != 5:
            return self._bad("Invalid subscribe path")
        sub_key, channels = parts[2], _channel_list(parts[3])
        try:
            tt = _int_param(request, "tt") or 0
        except BadRequest as exc:
            return self._bad(str(exc))
        if tt <= 0:
            return _subscribe_answer(self.timetoken(), [], sub_key)
        messages: list[Message] | None = self._newer(channels, tt)
        if not messages:  # (no channels, e.g. only channel groups, which are not emulated: hold too)
            messages = await self._hold(request, frozenset(channels), tt)
            if messages is None:  # the client went away
                return Response(status_code=499)
        if not messages:
            return _subscribe_answer(tt, [], sub_key)
        return _subscribe_answer(messages[-1].timetoken, messages, sub_key)

    async def _hold(self, request: Request, channels: frozenset[str], tt: int) -> list[Message] | None:
        """Wait for a message newer than `tt` on `channels`, the client to leave (None), or the timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.long_poll_timeout
        self._holds += 1
        gone = asyncio.ensure_future(_disconnected(request.receive))
        try:
            while True:
                waiter = _Waiter(channels, loop.create_future())
                self._waiters.add(waiter)
                try:
                    # registered first: a publish from now on schedules a wake that runs after the await
                    messages = self._newer(channels, tt)
                    remaining = deadline - loop.time()
                    if messages or remaining <= 0:
                        return messages
                    await asyncio.wait(
                        {waiter.future, gone}, timeout=remaining, return_when="FIRST_COMPLETED"
                    )
                finally:
                    self._waiters.discard(waiter)
                if gone.done():
                    return None
        finally:
            gone.cancel()

    async def _time(self, request: Request) -> Response:
        return JSONResponse([self.timetoken()])

    async def _publish(self, request: Request) -> Response:
        # /publish/{pub}/{sub}/0/{channel}/0[/{message}]
        parts = _segments(request)
        try:
            if request.method == "GET":
                if len(parts) != 7:
                    raise BadRequest("Invalid publish path")
                payload = _json(unquote(parts[6]), "message")
            else:
                if len(parts) != 6:
                    raise BadRequest("Invalid publish path")
                payload = _json(_decompress(await request.body(), request), "message")
            meta_text = request.query_params.get("meta")
            meta = _json(meta_text, "meta") if meta_text else None
        except BadRequest as exc:
            return self._bad(str(exc))
        store = request.query_params.get("store") != "0"
        publisher = request.query_params.get("uuid")
        tt = self.publish(unquote(parts[4]), payload, publisher=publisher, meta=meta, store=store)
        return JSONResponse([1, "Sent", str(tt)])

    async def _inject(self, request: Request) -> Response:
        try:
            body = await request.json()
            channel, message = body["channel"], body["message"]
        except (ValueError, KeyError, TypeError):
            return self._bad('expected {"channel": "...", "message": ...}')
        return JSONResponse({"timetoken": str(self.publish(str(channel), message))})

    async def _history_v3(self, request: Request) -> Response:
        # /v3/history/sub-key/{sub}/channel/{channels}
        parts = _segments(request)
        if len(parts) != 6 or parts[4] != "channel":
            return self._bad("Invalid history path")
        channels = _channel_list(parts[5])
        if not channels:
            return self._bad("Channel missing")
        ceiling = HISTORY_MAX_SINGLE if len(channels) == 1 else HISTORY_MAX_MULTI
        try:
            count = _int_param(request, "max")
            start, end = _int_param(request, "start"), _int_param(request, "end")
        except BadRequest as exc:
            return self._bad(str(exc))
        count = ceiling if count is None or count < 1 else min(count, ceiling)
        include_meta = request.query_params.get("include_meta") == "true"
        out: dict[str, list[dict[str, Any]]] = {}
        for channel in channels:
            window = self._window(channel, start, end)[-count:]  # the newest `count`, oldest first
            if window:
                out[channel] = [_history_item(m, include_meta, v3=True) for m in window]
        return JSONResponse({"status": 200, "error": False, "error_message": "", "channels": out})

    async def _history_v2(self, request: Request) -> Response:
        # /v2/history/sub-key/{sub}/channel/{channel}
        parts = _segments(request)
        if len(parts) != 6 or parts[4] != "channel":
            return self._bad("Invalid history path")
        channel = unquote(parts[5])
        try:
            count = _int_param(request, "count")
            start, end = _int_param(request, "start"), _int_param(request, "end")
        except BadRequest as exc:
            return self._bad(str(exc))
        count = HISTORY_MAX_SINGLE if count is None or count < 1 else min(count, HISTORY_MAX_SINGLE)
        window = self._window(channel, start, end)
        # newest `count` by default; the oldest `count` with reverse=true; oldest first either way
        window = window[:count] if request.query_params.get("reverse") == "true" else window[-count:]
        with_tt = request.query_params.get("include_token") == "true"
        with_meta = request.query_params.get("include_meta") == "true"
        items: list[Any] = [
            _history_item(m, with_meta, v3=False) if (with_tt or with_meta) else m.payload for m in window
        ]
        if with_meta and not with_tt:
            for item in items:
                item.pop("timetoken", None)
        first = window[0].timetoken if window else 0
        last = window[-1].timetoken if window else 0
        return JSONResponse([items, first, last])

    async def _presence(self, request: Request) -> Response:
        # /v2/presence/sub-key/{sub}/channel/{channels}/{leave|heartbeat}
        parts = _segments(request)
        if len(parts) == 7 and parts[4] == "channel" and parts[6] in ("leave", "heartbeat"):
            return JSONResponse({"status": 200, "message": "OK", "service": "Presence"})
        return self.error(404, "not_found", "Presence endpoint not emulated")


# -- helpers ---------------------------------------------------------------------------------------------
def _segments(request: Request) -> list[str]:
    """The raw path split on ``/``, still percent-encoded, without the leading empty segment."""
    raw: bytes | None = request.scope.get("raw_path")
    path = raw.decode("latin-1") if raw else quote(request.scope["path"])
    return path.split("?", 1)[0].split("/")[1:]


def _channel_list(segment: str) -> list[str]:
    """``a%2Cb,c`` -> ``["a,b", "c"]``: split on the literal commas, then unquote each name."""
    return [unquote(name) for name in segment.split(",") if name]


def _int_param(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"Invalid {name}: expected an integer") from None


def _json(text: str | bytes, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise BadRequest(f"Invalid {what}: not JSON") from None


def _decompress(body: bytes, request: Request) -> bytes:
    """A POST body, inflated when the SDK compressed it (zlib, labelled gzip)."""
    if request.headers.get("content-encoding", "").lower() not in ("gzip", "deflate"):
        return body
    for inflate in (zlib.decompress, gzip.decompress):
        try:
            return inflate(body)
        except (zlib.error, OSError, EOFError):
            continue
    raise BadRequest("Invalid compressed body")


def _subscribe_answer(tt: int, messages: Sequence[Message], sub_key: str) -> Response:
    items = []
    for m in messages:
        item: dict[str, Any] = {
            "a": "1",
            "f": 0,
            "c": m.channel,
            "d": m.payload,
            "k": sub_key,
            "p": {"t": str(m.timetoken), "r": REGION},
        }
        if m.publisher is not None:
            item["i"] = m.publisher
        if m.meta is not None:
            item["u"] = m.meta
        items.append(item)
    return JSONResponse({"t": {"t": str(tt), "r": REGION}, "m": items})


def _history_item(m: Message, include_meta: bool, *, v3: bool) -> dict[str, Any]:
    """A history entry: v3 sends the timetoken as a string and the publisher; v2 an int and no publisher."""
    item: dict[str, Any] = {"message": m.payload, "timetoken": str(m.timetoken) if v3 else m.timetoken}
    if v3 and m.publisher is not None:
        item["uuid"] = m.publisher
    if include_meta and m.meta is not None:
        item["meta"] = m.meta
    return item


async def _disconnected(receive: Receive) -> None:
    """Return when the client closes the connection."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


__all__ = ["Message", "PubNubEmulator"]
