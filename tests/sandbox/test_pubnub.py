"""The PubNub emulator against the real, unmodified ``pubnub`` SDK (threaded client) over loopback."""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pollkit import wait_for
from pubnub.callbacks import SubscribeCallback
from pubnub.enums import PNStatusCategory
from pubnub.models.consumer.pubsub import PNMessageResult
from pubnub.pnconfiguration import PNConfiguration
from pubnub.pubnub import PubNub

from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.pubnub import PubNubEmulator

SUB_KEY = "sub-c-streamkeeper-test"
PARTNER = "e69130ce-64db-4d9d-805e-e3738bde4dd5"
CH1 = f"{PARTNER}_sub1"
CH2 = "odd/name,with comma"  # proves channel names are unquoted and the list split on literal commas
DEADLINE = 10.0


class Listener(SubscribeCallback):
    """Hands every message to a queue and signals the first connect."""

    def __init__(self) -> None:
        self.messages: queue.Queue[PNMessageResult] = queue.Queue()
        self.connected = threading.Event()

    def status(self, pubnub: PubNub, status: Any) -> None:
        if status.category == PNStatusCategory.PNConnectedCategory:
            self.connected.set()

    def message(self, pubnub: PubNub, message: PNMessageResult) -> None:
        self.messages.put(message)

    def take(self, count: int, timeout: float = DEADLINE) -> list[PNMessageResult]:
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"got {len(out)} of {count} messages in {timeout} s")
            try:
                out.append(self.messages.get(timeout=remaining))
            except queue.Empty:
                continue
        return out


@pytest.fixture
def emulator() -> PubNubEmulator:
    return PubNubEmulator(long_poll_timeout=2.0)


@pytest.fixture
def server(serve: Callable[..., SandboxServer], emulator: PubNubEmulator) -> SandboxServer:
    return serve(emulator)


@pytest.fixture
def sdk(server: SandboxServer) -> Iterator[Callable[[], PubNub]]:
    """Real SDK clients pointed at the emulator; unsubscribed and stopped at the end."""
    clients: list[PubNub] = []

    def make() -> PubNub:
        config = PNConfiguration()
        config.subscribe_key = SUB_KEY
        config.publish_key = "pub-c-streamkeeper-test"
        config.user_id = f"streamkeeper-test-{len(clients)}"
        config.origin = f"127.0.0.1:{server.port}"
        config.ssl = False
        config.daemon = True
        client = PubNub(config)
        clients.append(client)
        return client

    yield make
    for client in clients:
        if client.get_subscribed_channels():  # the SDK's unsubscribe_all fails when called twice
            client.unsubscribe_all()
        client.stop()


def subscribe(pubnub: PubNub, channels: list[str], timetoken: int | None = None) -> Listener:
    listener = Listener()
    pubnub.add_listener(listener)
    builder = pubnub.subscribe().channels(channels)
    if timetoken is not None:
        builder = builder.with_timetoken(timetoken)
    builder.execute()
    assert listener.connected.wait(DEADLINE), "the SDK never connected"
    return listener


# -- subscribe -------------------------------------------------------------------------------------------
def test_sdk_receives_injected_messages_on_two_channels(
    emulator: PubNubEmulator, sdk: Callable[[], PubNub]
) -> None:
    client = sdk()
    listener = subscribe(client, [CH1, CH2])

    sent = [(ch, emulator.publish(ch, {"n": n})) for n in range(10) for ch in [(CH1, CH2)[n % 2]]]
    got = listener.take(10)

    assert [(m.channel, m.timetoken) for m in got] == sent  # each once, in order
    assert [m.message for m in got] == [{"n": n} for n in range(10)]
    assert all(len(str(tt)) == 17 for _, tt in sent)

    client.unsubscribe_all()  # the SDK says goodbye with a presence leave
    wait_for(lambda: any(r.endswith("/leave") for r in emulator.requests.snapshot()["by_route"]))


def test_throughput_of_injected_messages(emulator: PubNubEmulator, sdk: Callable[[], PubNub]) -> None:
    emulator.replay_limit = None  # measure the pipe, not the replay window
    listener = subscribe(sdk(), [CH1, CH2])
    count = 4000

    started = time.perf_counter()
    sent = [emulator.publish((CH1, CH2)[n % 2], {"n": n}) for n in range(count)]
    got = listener.take(count)
    elapsed = time.perf_counter() - started

    assert [m.timetoken for m in got] == sent
    print(f"\nreal SDK, 2 channels: {count / elapsed:,.0f} injected messages/s received")


def test_resume_from_a_stored_timetoken_gets_what_was_missed(
    emulator: PubNubEmulator, sdk: Callable[[], PubNub]
) -> None:
    first = sdk()
    listener = subscribe(first, [CH1, CH2])
    stored = emulator.publish(CH1, {"n": 0})
    [message] = listener.take(1)
    assert message.timetoken == stored
    first.unsubscribe_all()
    first.stop()

    missed = [emulator.publish((CH1, CH2)[n % 2], {"n": n}) for n in range(1, 151)]  # 75 per channel

    resumed = subscribe(sdk(), [CH1, CH2], timetoken=stored)
    got = resumed.take(150)
    assert [m.timetoken for m in got] == missed  # more than one answer of 100, all once, in order
    assert resumed.messages.empty()


def test_resume_after_a_long_gap_needs_history(emulator: PubNubEmulator, sdk: Callable[[], PubNub]) -> None:
    stored = emulator.publish(CH1, {"n": 0})
    missed = [emulator.publish(CH1, {"n": n}) for n in range(1, 151)]

    resumed = subscribe(sdk(), [CH1], timetoken=stored)
    got = resumed.take(100)

    # like the real service, only the last ~100 messages of a channel are replayed
    assert [m.timetoken for m in got] == missed[-100:]
    # the rest comes from history: newer than the stored timetoken (end, inclusive) and older than the
    # first replayed one (start, exclusive)
    fetched = sdk().fetch_messages().channels([CH1]).start(got[0].timetoken).end(stored).sync()
    assert not fetched.status.is_error()
    items = fetched.result.channels[CH1]
    assert [int(m.timetoken) for m in items] == [stored, *missed[:50]]


def test_subscribe_with_tt_0_answers_at_once_and_a_hold_times_out(
    emulator: PubNubEmulator, server: SandboxServer
) -> None:
    emulator.long_poll_timeout = 0.3
    with httpx.Client(base_url=server.url, timeout=5) as http:
        now = http.get(f"/v2/subscribe/{SUB_KEY}/{CH1}/0", params={"tt": 0, "uuid": "u", "pnsdk": "x"}).json()
        assert now["m"] == [] and len(now["t"]["t"]) == 17 and isinstance(now["t"]["r"], int)

        started = time.monotonic()
        held = http.get(f"/v2/subscribe/{SUB_KEY}/{CH1}/0", params={"tt": now["t"]["t"]}).json()
        assert time.monotonic() - started >= 0.3
        assert held == {"t": now["t"], "m": []}


def test_a_publish_wakes_a_held_long_poll(emulator: PubNubEmulator, server: SandboxServer) -> None:
    emulator.long_poll_timeout = 30.0
    tt = emulator.timetoken()
    answers: queue.Queue[dict[str, Any]] = queue.Queue()

    def poll() -> None:
        with httpx.Client(timeout=10) as http:
            answers.put(
                http.get(f"{server.url}/v2/subscribe/{SUB_KEY}/other,{CH1}/0", params={"tt": tt}).json()
            )

    threading.Thread(target=poll, daemon=True).start()
    wait_for(lambda: emulator.long_polls == 1)
    emulator.publish("unrelated", {"n": 0})  # another channel does not release it
    published = emulator.publish(CH1, {"n": 1}, publisher="pub-uuid", meta={"k": "v"})

    answer = answers.get(timeout=5)
    [message] = answer["m"]
    assert answer["t"]["t"] == str(published)
    assert message["c"] == CH1 and message["d"] == {"n": 1} and message["k"] == SUB_KEY
    assert message["p"]["t"] == str(published) and message["i"] == "pub-uuid" and message["u"] == {"k": "v"}
    assert isinstance(message["f"], int)


def test_accepted_sockets_have_tcp_nodelay(emulator: PubNubEmulator, server: SandboxServer) -> None:
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/time/0").status_code == 200
        sockets = [c.transport.get_extra_info("socket") for c in server._server.server_state.connections]
        assert sockets
        assert all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in sockets)


# -- publish, time -------------------------------------------------------------------------------------
def test_sdk_publish_get_and_post_and_time(emulator: PubNubEmulator, sdk: Callable[[], PubNub]) -> None:
    client = sdk()
    listener = subscribe(client, [CH1])
    before = int(client.time().sync().result)

    via_get = client.publish().channel(CH1).message({"via": "GET", "text": "a/b?c=d&e"}).sync()
    via_post = client.publish().channel(CH1).message({"via": "POST"}).use_post(True).sync()
    not_stored = client.publish().channel(CH1).message({"via": "no store"}).should_store(False).sync()

    got = listener.take(3)
    assert [m.message for m in got] == [
        {"via": "GET", "text": "a/b?c=d&e"},
        {"via": "POST"},
        {"via": "no store"},
    ]
    assert [m.timetoken for m in got] == [r.result.timetoken for r in (via_get, via_post, not_stored)]
    assert before < got[0].timetoken < got[1].timetoken < got[2].timetoken
    assert [m.payload for m in emulator.history(CH1)] == [
        {"via": "GET", "text": "a/b?c=d&e"},
        {"via": "POST"},
    ]


# -- history -------------------------------------------------------------------------------------------
def test_history_v3_start_is_exclusive_end_inclusive(
    emulator: PubNubEmulator, sdk: Callable[[], PubNub]
) -> None:
    client = sdk()
    tts = [emulator.publish(CH1, {"n": n}) for n in range(30)]
    emulator.publish(CH2, {"n": "other"})

    def fetch(**window: int) -> list[int]:
        builder = client.fetch_messages().channels([CH1])
        if "start" in window:
            builder = builder.start(window["start"])
        if "end" in window:
            builder = builder.end(window["end"])
        if "count" in window:
            builder = builder.maximum_per_channel(window["count"])
        return [int(m.timetoken) for m in builder.sync().result.channels.get(CH1, [])]

    assert fetch(start=tts[20], end=tts[10]) == tts[10:20]
    assert fetch(start=tts[20], end=tts[10], count=5) == tts[15:20]  # the newest of the window, oldest first
    assert fetch(start=tts[15], end=tts[10], count=5) == tts[10:15]  # the next page back
    assert fetch(start=tts[5]) == tts[:5]
    assert fetch(end=tts[25]) == tts[25:]
    assert fetch(count=3) == tts[27:]
    assert fetch(start=tts[0]) == []

    both = client.fetch_messages().channels([CH1, CH2]).sync().result.channels
    assert len(both[CH1]) == 25 and [m.message for m in both[CH2]] == [{"n": "other"}]  # 25 per channel


def test_history_v2_windows_and_reverse(emulator: PubNubEmulator, sdk: Callable[[], PubNub]) -> None:
    client = sdk()
    tts = [emulator.publish(CH2, {"n": n}) for n in range(30)]

    window = client.history().channel(CH2).start(tts[20]).end(tts[10]).include_timetoken(True).sync().result
    assert [m.timetoken for m in window.messages] == tts[10:20]
    assert [m.entry for m in window.messages] == [{"n": n} for n in range(10, 20)]
    assert (window.start_timetoken, window.end_timetoken) == (tts[10], tts[19])

    newest = client.history().channel(CH2).count(3).sync().result
    assert [m.entry for m in newest.messages] == [{"n": 27}, {"n": 28}, {"n": 29}]
    oldest = client.history().channel(CH2).count(3).reverse(True).include_timetoken(True).sync().result
    assert [m.timetoken for m in oldest.messages] == tts[:3]


def test_history_cap_keeps_the_newest(sdk: Callable[[], PubNub], emulator: PubNubEmulator) -> None:
    emulator.history_limit = 5
    tts = [emulator.publish(CH1, {"n": n}) for n in range(12)]

    items = sdk().fetch_messages().channels([CH1]).sync().result.channels[CH1]

    assert [int(m.timetoken) for m in items] == tts[-5:]


def test_admin_publish_route(emulator: PubNubEmulator, server: SandboxServer) -> None:
    answer = httpx.post(f"{server.url}/_sandbox/publish", json={"channel": CH1, "message": {"n": 1}})

    assert answer.status_code == 200
    assert [m.timetoken for m in emulator.history(CH1)] == [int(answer.json()["timetoken"])]
    assert httpx.post(f"{server.url}/_sandbox/publish", json={"nope": 1}).status_code == 400
