"""PLT events over PubNub: the real ``pubnub`` SDK against the PubNub emulator (replay window 100, like the
real service), into a real DuckDB file."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from ingestkit import wait_for
from pydantic import SecretStr

from streamkeeper.ingest import IngestError, PubNubOptions, PubNubStream, drain_pubnub, plt_streams
from streamkeeper.ingest.pubnub_source import channel_alias, channel_aliases, channel_id
from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.plt import DEFAULT_PARTNER_ID, PLTSandbox
from streamkeeper.sandbox.pubnub import PubNubEmulator
from streamkeeper.store import HistoryStore
from streamkeeper.vendors.plt import PLTClient

PARTNER = "0d9e8f7a-6b5c-4d3e-8f2a-1b0c9d8e7f6a"
SUB_KEY = "sub-c-ingest-test"
STREAM_A = PubNubStream("stream-a", SUB_KEY, (f"{PARTNER}_sub1", f"{PARTNER}_sub2"), "subs-a", "tenant-a")
STREAM_B = PubNubStream("stream-b", SUB_KEY, (f"{PARTNER}_sub3", f"{PARTNER}_sub4"), "subs-b", "tenant-b")
CHANNELS = [*STREAM_A.channels, *STREAM_B.channels]
STREAM_OF = {ch: s for s in (STREAM_A, STREAM_B) for ch in s.channels}


def event(n: int) -> dict[str, object]:
    return {"eventType": "isMute", "timeStamp": "2026-03-01T12:00:00.250000Z", "isMute": "true", "n": n}


def identity(channel: str) -> str:
    return channel_id(channel, channel_alias(channel))


def expected_ids(sent: list[tuple[str, int]]) -> set[tuple[str, str]]:
    return {(STREAM_OF[ch].stream_id, f"{identity(ch)}:{tt}") for ch, tt in sent}


def stored_ids(store: HistoryStore) -> list[tuple[str, str]]:
    frame = store.query("SELECT stream, event_id FROM events WHERE vendor = 'plt'")
    return list(zip(frame["stream"], frame["event_id"], strict=True))


def everything_stored(store: HistoryStore) -> str:
    """Every value of every column of events and cursors, as text (to look for secrets)."""
    events = store.query("SELECT * FROM events").astype(str).to_csv()
    cursors = store.query("SELECT * FROM cursors").astype(str).to_csv()
    return events + cursors


def test_10000_messages_across_channels_with_a_restart_land_exactly_once(
    pubnub: tuple[PubNubEmulator, str], store: HistoryStore
) -> None:
    emulator, origin = pubnub
    options = PubNubOptions(origin=origin, idle_seconds=0.5, max_events=2_500, batch_size=2_000)
    sent: list[tuple[str, int]] = []
    first_done = threading.Event()

    def publish() -> None:  # bursts across four channels of two streams, as PLT tenants would
        for n in range(10_000):
            channel = CHANNELS[n % len(CHANNELS)]
            sent.append((channel, emulator.publish(channel, event(n))))
            if n == 4_000:
                first_done.wait(30)  # the rest arrives while the consumer is down / restarting

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    first = drain_pubnub(store, [STREAM_A, STREAM_B], options)  # stops after 2,500 live messages
    first_done.set()
    assert first.loaded > 0 and first.batches >= 2
    after_first = len(stored_ids(store))

    # the consumer restarts: it resumes from the stored per-channel timetokens; messages published while it
    # was down (more than the 100 per channel a resuming subscribe gets) come from history
    second = drain_pubnub(store, [STREAM_A, STREAM_B], options.model_copy(update={"max_events": 100_000}))
    publisher.join(30)
    assert not publisher.is_alive()
    last = drain_pubnub(store, [STREAM_A, STREAM_B], options)

    ids = stored_ids(store)
    assert len(ids) == len(set(ids)) == 10_000
    assert set(ids) == expected_ids(sent)
    assert first.loaded + second.loaded + last.loaded == 10_000 and after_first == first.loaded
    assert second.duplicates + last.duplicates + first.duplicates > 0  # live and history overlapped
    history_calls = emulator.requests.snapshot()["by_route"]
    assert any("/v3/history/" in route for route in history_calls)

    # cursors: per channel, at or past the channel's newest message, and no secret anywhere
    cursors = store.cursors("pubnub:")
    assert set(cursors) == {
        f"pubnub:{s.stream_id}:{identity(ch)}" for s in (STREAM_A, STREAM_B) for ch in s.channels
    }
    for channel in CHANNELS:
        newest = max(tt for ch, tt in sent if ch == channel)
        assert int(cursors[f"pubnub:{STREAM_OF[channel].stream_id}:{identity(channel)}"]) >= newest
    assert PARTNER not in everything_stored(store)

    row = store.query("SELECT * FROM events WHERE vendor = 'plt' LIMIT 1").iloc[0]
    assert row["event_type"] == "isMute" and row["account"] in ("tenant-a", "tenant-b")
    assert str(row["occurred_at"]) == "2026-03-01 12:00:00.250000+00:00"


def test_a_gap_longer_than_the_replay_window_is_filled_from_history(
    pubnub: tuple[PubNubEmulator, str], store: HistoryStore
) -> None:
    emulator, origin = pubnub
    options = PubNubOptions(origin=origin, idle_seconds=0.3)
    before = [(ch, emulator.publish(ch, event(n))) for n, ch in enumerate(STREAM_A.channels)]
    assert drain_pubnub(store, [STREAM_A], options).loaded == 2
    cursors = store.cursors("pubnub:")

    # the consumer is down while 350 messages go by on one channel: a resume replays only the last 100
    missed = [(STREAM_A.channels[0], emulator.publish(STREAM_A.channels[0], event(n))) for n in range(350)]
    report = drain_pubnub(store, [STREAM_A], options)

    assert report.loaded == 350
    assert set(stored_ids(store)) == expected_ids(before + missed)
    moved = store.cursors("pubnub:")
    assert all(int(moved[k]) > int(cursors[k]) for k in cursors)

    # a rerun from older cursors (a crash before the cursors moved) loads nothing twice
    store.set_cursors(cursors)
    again = drain_pubnub(store, [STREAM_A], options)
    assert again.loaded == 0 and again.duplicates >= 350
    assert len(stored_ids(store)) == 352


def test_an_outage_while_listening_loses_and_repeats_nothing(store: HistoryStore) -> None:
    emulator = PubNubEmulator(long_poll_timeout=1.0)
    server = SandboxServer(emulator).start()
    port = server.port
    options = PubNubOptions(origin=f"http://127.0.0.1:{port}", idle_seconds=2.0, max_seconds=30)
    sent = [(ch, emulator.publish(ch, event(n))) for n, ch in enumerate(STREAM_A.channels)]
    assert drain_pubnub(store, [STREAM_A], options.model_copy(update={"idle_seconds": 0.3})).loaded == 2
    reports: list[object] = []
    drain = threading.Thread(target=lambda: reports.append(drain_pubnub(store, [STREAM_A], options)))
    restarted = None
    try:
        held = emulator.holds  # the first drain's last subscribe may still be held (its client left)
        drain.start()
        wait_for(lambda: emulator.holds > held, what="the second drain listening")
        sent += [(ch, emulator.publish(ch, event(n))) for n in range(40) for ch in STREAM_A.channels]
        server.stop()  # PubNub goes away mid-drain; 300 messages go by meanwhile
        sent += [(ch, emulator.publish(ch, event(n))) for n in range(150) for ch in STREAM_A.channels]
        restarted = SandboxServer(emulator, port=port).start()
        sent += [(ch, emulator.publish(ch, event(n))) for n in range(20) for ch in STREAM_A.channels]
        drain.join(60)
        assert not drain.is_alive() and len(reports) == 1
    finally:
        (restarted or server).stop()

    ids = stored_ids(store)
    assert len(ids) == len(set(ids)) == len(sent) == 422
    assert set(ids) == expected_ids(sent)


def test_plt_streams_from_the_plt_emulator_land_without_the_partner_id(
    serve: Callable[..., SandboxServer], pubnub: tuple[PubNubEmulator, str], store: HistoryStore
) -> None:
    emulator, origin = pubnub
    plt = PLTSandbox(pubnub=emulator, seed=3)
    server = serve(plt)
    with PLTClient(server.url, partner_id=SecretStr(DEFAULT_PARTNER_ID)) as client:
        summaries = client.list_streams()
        for summary in summaries:
            client.start_stream(summary.stream_id, summary.tenant_id)
        streams = plt_streams(client)
    assert {s.stream_id for s in streams} == {s.stream_id for s in summaries}
    emitted = {s.stream_id: len(plt.emit(s.stream_id, s.tenant_id, 25)) for s in summaries}

    report = drain_pubnub(store, streams, PubNubOptions(origin=origin, idle_seconds=0.3))

    assert report.loaded == sum(emitted.values()) == 100
    counts = store.query("SELECT stream, account, count(*) AS n FROM events GROUP BY ALL")
    assert {r.stream: r.n for r in counts.itertuples()} == emitted
    tenants = {s.stream_id: s.tenant_id for s in summaries}
    assert all(tenants[r.stream] == r.account for r in counts.itertuples())
    types = set(store.query("SELECT DISTINCT event_type FROM events")["event_type"])
    assert types <= {"isConnected", "isMute", "HEADSET_BUTTON_TALK", "HEADSET_BUTTON_REJECT", "CALL_EVENT"}
    assert store.query("SELECT count(*) AS n FROM events WHERE occurred_at IS NULL")["n"][0] == 0
    assert DEFAULT_PARTNER_ID not in everything_stored(store)
    assert DEFAULT_PARTNER_ID not in repr(streams)


def test_time_and_history_reads_that_fail_on_the_way_are_tried_again(
    pubnub: tuple[PubNubEmulator, str], store: HistoryStore
) -> None:
    emulator, origin = pubnub
    sent = [(ch, emulator.publish(ch, event(n))) for n in range(150) for ch in STREAM_A.channels]
    # 5xx, 429 and dropped connections on half the reads of the time and of history (4 pages of 100)
    emulator.faults.set(
        rate=0.5, kinds=["5xx", "429", "drop"], path="^/(time|v3/history)/", retry_after="0", seed=5
    )

    report = drain_pubnub(
        store, [STREAM_A], PubNubOptions(origin=origin, idle_seconds=0.3, read_backoff_seconds=0.05)
    )

    injected = sum(emulator.faults.injected.values())
    assert injected > 0 and report.retries == injected
    assert report.loaded == 300
    ids = stored_ids(store)
    assert len(ids) == len(set(ids)) == 300 and set(ids) == expected_ids(sent)


def test_a_read_that_keeps_failing_gives_up_after_its_attempts_and_moves_no_cursor(
    pubnub: tuple[PubNubEmulator, str], store: HistoryStore
) -> None:
    emulator, origin = pubnub
    for n in range(5):
        emulator.publish(STREAM_A.channels[0], event(n))
    emulator.faults.set(rate=1.0, kinds=["5xx"], path="^/v3/history/")
    options = PubNubOptions(origin=origin, idle_seconds=0.3, read_attempts=3, read_backoff_seconds=0.05)

    with pytest.raises(IngestError) as caught:
        drain_pubnub(store, [STREAM_A], options)

    assert emulator.faults.injected == {"5xx": 3}  # three attempts at the first page, then the error
    assert caught.value.transient and "history of sub1" in str(caught.value)
    assert PARTNER not in str(caught.value)
    assert store.cursors("pubnub:") == {} and stored_ids(store) == []


def test_an_unreachable_pubnub_raises_without_naming_a_channel(store: HistoryStore) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = PubNubOptions(origin=f"http://127.0.0.1:{port}", read_backoff_seconds=0.05)
    started = time.monotonic()
    with pytest.raises(IngestError) as caught:
        drain_pubnub(store, [STREAM_A], options)
    assert "stream-a" in str(caught.value) and PARTNER not in str(caught.value)
    assert caught.value.transient  # no answer: the task retries it
    assert time.monotonic() - started < 30
    assert store.cursors("pubnub:") == {}


def test_channel_aliases_never_carry_the_partner_id() -> None:
    assert channel_alias(f"{PARTNER}_sub12") == "sub12"
    odd = channel_alias(f"{PARTNER}-events")
    assert odd.startswith("ch-") and PARTNER not in odd
    clash = channel_aliases([f"{PARTNER}_sub1", "other_sub1"])
    assert len(set(clash.values())) == 2 and all(PARTNER not in a for a in clash.values())
