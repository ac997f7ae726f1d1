"""DMA sequence classification: repeats, gaps, late arrivals, restarts at 1, epochs; and its durable state."""

from __future__ import annotations

from pathlib import Path

from streamkeeper.receiver.landing import LandingArea
from streamkeeper.receiver.sequence import WINDOW, RunState, SequenceStates, Verdict, classify


def run(*steps: tuple[int, str], start: RunState | None = None, clock: int = 1_000) -> list[Verdict]:
    """Feed (sequence number, digest) pairs; each verdict's state feeds the next."""
    out = []
    state = start
    for seq, digest in steps:
        verdict = classify(state, seq, digest, clock)
        out.append(verdict)
        state = verdict.state
    return out


def test_in_order_notifications_share_one_epoch() -> None:
    verdicts = run((1, "a"), (2, "b"), (3, "c"))
    assert [v.event_id("7") for v in verdicts] == ["7:1000:1", "7:1000:2", "7:1000:3"]
    assert not any(v.gap or v.repeat or v.restart for v in verdicts)


def test_a_retry_of_the_same_notification_is_a_repeat_with_the_same_id() -> None:
    first, retry_of_first, second, third, retry, late_retry = run(
        (1, "a"), (1, "a"), (2, "b"), (3, "c"), (3, "c"), (2, "b")
    )
    assert (retry_of_first.repeat, retry_of_first.event_id("s")) == (True, first.event_id("s"))
    assert (retry.repeat, retry.event_id("s")) == (True, third.event_id("s"))
    assert retry.state is third.state  # nothing to save
    assert (late_retry.repeat, late_retry.event_id("s")) == (True, second.event_id("s"))


def test_restart_with_bodies_identical_to_the_first_run() -> None:
    """An UPDATE of an unchanged conference: the restarted run repeats the old bodies, number for number."""
    verdicts = run((1, "same"), (2, "same"), (3, "same"), (1, "same"), (2, "same"), (3, "same"), (4, "same"))
    assert [v.restart for v in verdicts] == [False, False, False, True, False, False, False]
    assert not any(v.repeat or v.gap for v in verdicts)
    assert len({v.event_id("s") for v in verdicts}) == 7


def test_a_skipped_number_is_a_gap_and_a_late_arrival_fills_it() -> None:
    _, jump, late, next_one = run((1, "a"), (4, "d"), (2, "b"), (5, "e"))
    assert jump.gap is not None and (jump.gap.expected, jump.gap.received) == (2, 4)
    assert jump.state.missing == ((2, 3),)
    assert (late.epoch, late.restart, late.gap) == (jump.epoch, False, None)
    assert late.state.missing == ((3, 3),)
    assert next_one.gap is None and next_one.state.last == 5


def test_restart_at_one_after_send_update_notification_now_is_a_new_epoch() -> None:
    verdicts = run((1, "a"), (2, "b"), (3, "c"), (1, "fresh"), (2, "fresh2"))
    restart, after = verdicts[3], verdicts[4]
    assert restart.restart and restart.gap is None
    assert restart.epoch > verdicts[0].epoch  # strictly later even when the clock did not move
    ids = [v.event_id("9") for v in verdicts]
    assert len(set(ids)) == 5  # no collision with the first run's 1 and 2
    assert after.epoch == restart.epoch and not after.restart


def test_a_restart_whose_first_notification_was_lost_is_a_gap_from_one() -> None:
    *_, restart = run((1, "a"), (2, "b"), (3, "c"), (2, "other"))
    assert restart.restart and restart.gap is not None
    assert (restart.gap.expected, restart.gap.received) == (1, 2)


def test_first_notification_above_one_is_a_gap_from_one() -> None:
    [first] = run((3, "c"))
    assert first.gap is not None and (first.gap.expected, first.gap.received) == (1, 3)
    [late] = run((1, "a"), start=first.state)
    assert (late.restart, late.epoch) == (False, first.epoch)  # the missing 1 arrived late


def test_epochs_increase_even_when_the_clock_goes_back() -> None:
    first = classify(None, 1, "a", now_ms=5_000)
    restart = classify(first.state, 1, "b", now_ms=4_000)
    assert restart.epoch == 5_001


def test_repeats_are_recognised_within_the_window_only() -> None:
    verdicts = run(*[(n, f"d{n}") for n in range(1, WINDOW + 10)])
    state = verdicts[-1].state
    assert len(state.seen) == WINDOW
    recent = classify(state, WINDOW, f"d{WINDOW}", 1_000)
    assert recent.repeat
    ancient = classify(state, 2, "d2", 1_000)
    assert ancient.restart  # beyond the window: taken for a restart (documented limit)


def test_state_survives_a_new_process(tmp_path: Path) -> None:
    landing = LandingArea(tmp_path / "landing")
    states = SequenceStates(landing)
    verdicts = run((1, "a"), (4, "d"))
    states.save("conf", "https://dma/api/rest/subscriptions/1?x", verdicts[-1].state)
    states.save("conf", "12", verdicts[0].state)
    landing.close()

    again = SequenceStates(LandingArea(tmp_path / "landing"))
    assert again.load("conf", "https://dma/api/rest/subscriptions/1?x") == verdicts[-1].state
    assert again.load("conf", "12") == verdicts[0].state
    assert again.load("conf", "13") is None
    assert not list((tmp_path / "landing").glob("*/*/*.json"))  # state is never a landing file
