"""PLT events from PubNub, with the real ``pubnub`` SDK: a bounded drain that lands every message once.

PLT hands a partner a PubNub subscribe key and channels (``<partnerId>_sub<N>``) per stream. Live PubNub
delivery is at most once: a subscriber that resumes from an old timetoken, reconnects, or falls more than
~100 messages behind on a channel silently misses messages (measured on the emulator: a subscriber kept up
with ~600 of 10,000 messages injected at full speed). History is the record. So a drain:

1. reads the stored cursor of each channel (``pubnub:<stream_id>:<channel id>``: every message of that
   channel up to this timetoken is committed);
2. subscribes to every channel from the oldest cursor and collects live messages until the stream is idle,
   or `PubNubOptions.max_events` / `max_seconds` is reached, committing rows in batches (no cursor yet);
3. catches up from history v3, per channel, over the window (cursor, high-water], paging back from the
   high-water mark (PubNub's time when live collection ended, less `history_lag_seconds`), and commits what
   live delivery missed; the cursors move to the high-water mark in the same transaction as the last rows.

A read of the time or of history that fails on the way (connection refused or dropped, a timeout, 429, 5xx)
is tried again with capped exponential backoff, `PubNubOptions.read_attempts` times in all; live delivery
needs no such care (the SDK reconnects by itself, and history covers what it missed meanwhile).

Duplicates (a message both live and in history, the asyncio client's double delivery after a reconnect, a
rerun after a crash before the cursor moved) are dropped in memory by (channel, timetoken) and in the store
by (vendor, stream, event_id) with ``event_id = "<channel id>:<timetoken>"``: the channel id is the alias
and a digest of the whole channel name (`channel_id`), so two partners' ``sub1`` never share an id or a
cursor. Before the digest was part of it the id was ``<alias>:<timetoken>`` and the cursor key
``pubnub:<stream_id>:<alias>``: a row stored so is found by that previous id (`streamkeeper.ingest.identity`),
and a cursor stored so is read while the new key has none.

The channel alias is what the store keeps instead of the channel name, which holds the partner id (a
secret): ``sub<N>`` (the channel's suffix), or a digest for a channel not named that way. Error messages
name the alias too, never the channel.
"""

from __future__ import annotations

import hashlib
import queue
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from pubnub.callbacks import SubscribeCallback
from pubnub.enums import PNStatusCategory
from pubnub.exceptions import PubNubException
from pubnub.pnconfiguration import PNConfiguration
from pubnub.pubnub import PubNub
from pydantic import BaseModel, Field

from streamkeeper.ingest.base import BatchLoader, IngestError, SourceReport, Stopwatch, in_session
from streamkeeper.ingest.normalize import Row, plt_event
from streamkeeper.store import HistoryStore
from streamkeeper.vendors.http.retry import RetryPolicy
from streamkeeper.vendors.plt import PLTClient

HISTORY_PAGE = 100
"""Messages per history v3 request for one channel (the SDK's and the service's cap)."""
TICKS_PER_SECOND = 10_000_000  # a timetoken counts 100-ns units
CURSOR_PREFIX = "pubnub"
_SUFFIX = re.compile(r"(?:^|[_.:-])(sub\d+)$")
_LOOPBACK = ("127.", "localhost", "[::1]")


@dataclass(frozen=True)
class PubNubStream:
    """One PLT stream as PubNub carries it.

    Attributes:
        stream_id: PLT's stream id (the ``stream`` column).
        sub_key: the PubNub subscribe key.
        channels: the channel names (they contain the partner id: never stored, logged or raised).
        subscription_id: PLT's subscription id, stored with each event.
        tenant_id: the tenant, stored as ``account`` when an event does not say.
    """

    stream_id: str
    sub_key: str
    channels: tuple[str, ...]
    subscription_id: str | None = None
    tenant_id: str | None = None
    stream_name: str | None = None

    def __repr__(self) -> str:  # the channel names hold a secret
        return f"PubNubStream(stream_id={self.stream_id!r}, channels={list(channel_aliases(self.channels).values())})"


class PubNubOptions(BaseModel):
    """How a drain talks to PubNub and when it stops."""

    origin: str | None = Field(
        default=None,
        description="PubNub origin: None = the real PubNub; http://127.0.0.1:PORT for the sandbox.",
    )
    user_id: str = Field(default="streamkeeper-ingest", description="PubNub user id of the consumer.")
    max_events: int = Field(
        default=100_000, ge=1, description="Stop collecting live after this many messages."
    )
    max_seconds: float = Field(default=30.0, gt=0, description="Stop collecting live after this long.")
    idle_seconds: float = Field(default=1.0, gt=0, description="Stop collecting live after this long idle.")
    batch_size: int = Field(default=20_000, ge=1, description="Rows per commit (each commit costs ~0.1-1 s).")
    read_attempts: int = Field(
        default=5,
        ge=1,
        description="Attempts per PubNub time or history read that fails on the way (refused, dropped, 429, 5xx).",
    )
    read_backoff_seconds: float = Field(
        default=0.5,
        gt=0,
        description="First wait before a read is tried again; doubled each time, up to 8 s.",
    )
    history_lag_seconds: float = Field(
        default=0.0,
        ge=0,
        description="Keep the cursors this far behind the newest message, should history lag publish.",
    )


def channel_alias(channel: str) -> str:
    """``<partnerId>_sub3`` -> ``sub3``; a channel not named so -> ``ch-<digest>`` (no partner id either way)."""
    match = _SUFFIX.search(channel)
    if match:
        return match.group(1)
    return "ch-" + hashlib.sha256(channel.encode()).hexdigest()[:16]


def channel_id(channel: str, alias: str) -> str:
    """What identifies a channel among every partner's: the alias, and a digest of the whole name.

    PLT names channels ``<partnerId>_sub<N>``: two partners' ``sub1`` are two channels, and a stream id
    two partners see would otherwise give them one cursor and one id space (the second partner's
    catch-up skipping everything up to the first's cursor). The digest tells them apart without the
    partner id (a secret): ``sub1~3fa9c2d1e0b4``. An alias that is a digest already is kept as it is.
    """
    if alias.startswith("ch-"):
        return alias
    return f"{alias}~{hashlib.sha256(channel.encode()).hexdigest()[:12]}"


def channel_aliases(channels: Iterable[str]) -> dict[str, str]:
    """Each channel's alias, unique within the list (two ``...sub1`` of different prefixes get digests)."""
    names = list(dict.fromkeys(channels))
    aliases = {name: channel_alias(name) for name in names}
    taken: dict[str, int] = {}
    for alias in aliases.values():
        taken[alias] = taken.get(alias, 0) + 1
    for name, alias in aliases.items():
        if taken[alias] > 1:
            aliases[name] = "ch-" + hashlib.sha256(name.encode()).hexdigest()[:16]
    return aliases


def cursor_key(stream_id: str, alias: str) -> str:
    return f"{CURSOR_PREFIX}:{stream_id}:{alias}"


def sdk_config(sub_key: str, options: PubNubOptions) -> PNConfiguration:
    """A `PNConfiguration` for a consumer: subscribe key, user id, origin; the SDK's threads are daemons.

    `PubNubOptions.origin`: ``http://host:port`` (plain HTTP), ``https://host`` or a bare host (TLS; a bare
    loopback host is plain HTTP, as the sandbox serves).
    """
    config = PNConfiguration()
    config.subscribe_key = sub_key
    config.user_id = options.user_id
    config.daemon = True  # never keep the process alive for an open long poll
    if options.origin:
        if "://" in options.origin:
            parts = urlsplit(options.origin)
            config.origin = parts.netloc
            config.ssl = parts.scheme == "https"
        else:
            config.origin = options.origin.rstrip("/")
            config.ssl = not config.origin.startswith(_LOOPBACK)
    return config


def plt_streams(client: PLTClient) -> list[PubNubStream]:
    """Every stream the partner may use that is delivered over PubNub, with its key and channels."""
    streams = []
    for summary in client.list_streams():
        meta = client.get_stream(summary.stream_id)
        if meta.notification_type.lower() != "pubnub" or not meta.sub_channel:
            continue
        streams.append(
            PubNubStream(
                stream_id=summary.stream_id,
                sub_key=meta.sub_key,
                channels=tuple(meta.sub_channel),
                subscription_id=summary.subscription_id,
                tenant_id=meta.tenant_id,
                stream_name=meta.stream_name,
            )
        )
    return streams


@in_session
def drain_pubnub(
    store: HistoryStore,
    streams: Sequence[PubNubStream],
    options: PubNubOptions | None = None,
    *,
    source: str = "pubnub",
) -> SourceReport:
    """Land every message of `streams` since their cursors in ``events``, once (see the module docstring).

    Streams sharing a subscribe key are drained together by one SDK client.

    Raises:
        IngestError: PubNub refused the subscribe, or could not be reached, or history could not be read
            (rows committed before stay; the cursors did not move, so the next run fetches them again).
    """
    options = options or PubNubOptions()
    report = SourceReport(source=source)
    watch = Stopwatch()
    groups: dict[str, list[PubNubStream]] = {}
    for stream in streams:
        groups.setdefault(stream.sub_key, []).append(stream)
    for group in groups.values():
        _Drain(store, group, options, report).run()
    report.seconds = watch.elapsed
    return report


_FATAL = frozenset(
    {
        PNStatusCategory.PNAccessDeniedCategory,
        PNStatusCategory.PNBadRequestCategory,
        PNStatusCategory.PNMalformedFilterExpressionCategory,
        PNStatusCategory.PNTLSConnectionFailedCategory,
        PNStatusCategory.PNTLSUntrustedCertificateCategory,
    }
)
"""Subscribe statuses that retrying will not mend (the SDK keeps retrying network errors by itself)."""


class _Listener(SubscribeCallback):
    """Hands messages to a queue; keeps the statuses that end a drain."""

    def __init__(self) -> None:
        self.messages: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.fatal: list[str] = []

    def status(self, pubnub: PubNub, status: Any) -> None:
        if status.category in _FATAL:
            self.fatal.append(status.category.name)

    def message(self, pubnub: PubNub, message: Any) -> None:
        self.messages.put(message)

    def presence(self, pubnub: PubNub, presence: Any) -> None:
        pass


@dataclass(frozen=True)
class _Channel:
    stream: PubNubStream
    alias: str  # in messages: ``sub1``
    identity: str  # in event ids and cursor keys: ``sub1~3fa9c2d1e0b4`` (see `channel_id`)
    key: str
    previous_key: str  # the cursor key before the partner was part of it: read when `key` is not stored


class _Drain:
    """One drain of the streams of one subscribe key."""

    def __init__(
        self, store: HistoryStore, streams: list[PubNubStream], options: PubNubOptions, report: SourceReport
    ) -> None:
        self.options = options
        self.report = report
        self.loader = BatchLoader(store, report)
        self.sub_key = streams[0].sub_key
        self.channels: dict[str, _Channel] = {}
        for stream in streams:
            for name, alias in channel_aliases(stream.channels).items():
                identity = channel_id(name, alias)
                self.channels.setdefault(
                    name,
                    _Channel(
                        stream,
                        alias,
                        identity,
                        cursor_key(stream.stream_id, identity),
                        cursor_key(stream.stream_id, alias),
                    ),
                )
        stored = store.cursors(f"{CURSOR_PREFIX}:")
        self.cursors: dict[str, int | None] = {}
        for name, ch in self.channels.items():
            position = stored.get(ch.key, stored.get(ch.previous_key))
            self.cursors[name] = int(position) if position is not None else None
        self.seen: set[tuple[str, int]] = set()
        self.pending: list[Row] = []
        self.retry = RetryPolicy(backoff_base=options.read_backoff_seconds, backoff_max=8.0)

    def run(self) -> None:
        pubnub = PubNub(sdk_config(self.sub_key, self.options))
        try:
            newest = self._live(pubnub)
            # the high-water mark is the service's time once live collection ended, not when it began: what
            # live delivery missed meanwhile (a subscribe loop that died on a dropped connection, a channel
            # more than the replay window behind) is in the history window
            ended = int(self._sync(pubnub.time(), "time").result)
            high = max(newest, ended) - int(self.options.history_lag_seconds * TICKS_PER_SECOND)
            self._catch_up(pubnub, high)
            moved = {ch.key: str(max(high, self.cursors[name] or 0)) for name, ch in self.channels.items()}
            self._flush(moved)
        finally:
            pubnub.stop()

    # -- live ----------------------------------------------------------------------------------------------
    def _live(self, pubnub: PubNub) -> int:
        """Collect live messages until idle or a limit; returns the newest timetoken seen (0: none)."""
        listener = _Listener()
        pubnub.add_listener(listener)
        builder = pubnub.subscribe().channels(list(self.channels))
        known = list(self.cursors.values())
        if known and all(tt is not None for tt in known):
            builder = builder.with_timetoken(min(tt for tt in known if tt is not None))
        # No wait for the SDK's "connected" status: resuming from a timetoken, it comes with the first
        # answer, which the service holds for its long-poll time (~280 s) when nothing is new. The idle
        # timer covers the first answer like any other.
        builder.execute()
        try:
            newest, taken = 0, 0
            watch = Stopwatch(self.options.max_seconds)
            while taken < self.options.max_events:
                if listener.fatal:
                    raise IngestError(
                        "pubnub", "subscribe", f"{self._streams()}: refused ({listener.fatal[0]})"
                    )
                wait = min(self.options.idle_seconds, watch.remaining)
                if wait <= 0:
                    break
                try:
                    message = listener.messages.get(timeout=wait)
                except queue.Empty:
                    break
                taken += 1
                timetoken = int(message.timetoken)
                newest = max(newest, timetoken)
                self._add(message.channel, timetoken, message.message, datetime.now(UTC))
                if len(self.pending) >= self.options.batch_size:
                    self._flush()
            self.report.received += taken
            return newest
        finally:
            if pubnub.get_subscribed_channels():
                pubnub.unsubscribe_all()
            pubnub.remove_listener(listener)

    # -- history -------------------------------------------------------------------------------------------
    def _catch_up(self, pubnub: PubNub, high: int) -> None:
        """Fetch each channel's window (cursor, high] from history v3 and add what is not loaded yet."""
        for name, channel in self.channels.items():
            lower = self.cursors[name]
            if lower is not None and lower >= high:
                continue
            end = lower + 1 if lower is not None else None  # `end` is inclusive
            start = high + 1  # `start` is exclusive; pages go back from the newest
            while True:
                builder = pubnub.fetch_messages().channels([name]).maximum_per_channel(HISTORY_PAGE)
                builder = builder.start(start)
                if end is not None:
                    builder = builder.end(end)
                result = self._sync(builder, f"history of {channel.alias}").result
                items = result.channels.get(name, [])
                if not items:
                    break
                self.report.received += len(items)
                now = datetime.now(UTC)
                timetokens = [int(item.timetoken) for item in items]
                for item, timetoken in zip(items, timetokens, strict=True):
                    if timetoken <= high:
                        self._add(name, timetoken, item.message, now)
                if len(self.pending) >= self.options.batch_size:
                    self._flush()
                oldest = min(timetokens)
                if (end is not None and oldest <= end) or oldest >= start:
                    break  # reached the cursor (or a service that ignores `start`: no progress)
                start = oldest

    # -- rows ----------------------------------------------------------------------------------------------
    def _add(self, name: str, timetoken: int, message: Any, received_at: datetime) -> None:
        channel = self.channels.get(name)
        if channel is None:
            return
        lower = self.cursors[name]
        if (lower is not None and timetoken <= lower) or (name, timetoken) in self.seen:
            self.report.duplicates += 1
            return
        self.seen.add((name, timetoken))
        stream = channel.stream
        self.pending.append(
            plt_event(
                stream_id=stream.stream_id,
                channel_alias=channel.alias,
                channel_id=channel.identity,
                timetoken=timetoken,
                message=message,
                received_at=received_at,
                subscription_id=stream.subscription_id,
                tenant_id=stream.tenant_id,
            )
        )

    def _flush(self, cursors: dict[str, str] | None = None) -> None:
        self.loader.load(self.pending, cursors)
        self.pending = []

    # -- errors --------------------------------------------------------------------------------------------
    def _sync(self, endpoint: Any, what: str) -> Any:
        """Run a read, again after a transient failure (see the module docstring); then `IngestError`."""
        attempt = 1
        while True:
            try:
                return self._once(endpoint, what)
            except IngestError as exc:
                if not exc.transient or attempt >= self.options.read_attempts:
                    raise
                self.report.retries += 1
                time.sleep(self.retry.backoff(attempt))
                attempt += 1

    def _once(self, endpoint: Any, what: str) -> Any:
        """Run a request; failures become `IngestError` (transient unless PubNub refused it: 400, 403)."""
        try:
            envelope = endpoint.sync()
        except PubNubException as exc:
            status = getattr(exc, "_status_code", None) or 0
            raise IngestError(
                "pubnub",
                what,
                f"{self._streams()}: {self._scrub(str(exc))}",
                transient=status not in (400, 403),
            ) from None
        if envelope.status is not None and envelope.status.is_error():
            category = envelope.status.category
            detail = self._scrub(str(getattr(envelope.status, "error_data", None) or category))
            raise IngestError(
                "pubnub", what, f"{self._streams()}: {detail}", transient=category not in _FATAL
            )
        return envelope

    def _streams(self) -> str:
        ids = dict.fromkeys(ch.stream.stream_id for ch in self.channels.values())
        return "stream " + ", ".join(ids)

    def _scrub(self, text: str) -> str:
        """Replace every channel name (which holds the partner id) by its alias."""
        for name in sorted(self.channels, key=len, reverse=True):
            alias = self.channels[name].alias
            text = text.replace(name, alias)
            text = text.replace(name.replace("-", "%2D"), alias)
        partner_ids = {
            name[: -len(ch.alias) - 1] for name, ch in self.channels.items() if name.endswith(ch.alias)
        }
        for partner in partner_ids:
            if partner:
                text = text.replace(partner, "***")
        return text


__all__ = [
    "PubNubOptions",
    "PubNubStream",
    "channel_alias",
    "channel_aliases",
    "channel_id",
    "cursor_key",
    "drain_pubnub",
    "plt_streams",
    "sdk_config",
]
