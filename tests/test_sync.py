"""Clock-offset estimation, driven by simulated ping/pong legs: no sockets, no sleeps."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.sync import (
    REJECT_NEGATIVE_RTT,
    REJECT_NON_FINITE,
    REJECT_REPLY_BEFORE_RECEIPT,
    REJECT_RTT_TOO_LARGE,
    ClockMap,
    ClockSync,
    SyncSample,
)

PING_INTERVAL = 0.25


def ping(sync: ClockSync, i: int, offset: float, out_s: float, back_s: float, start: float = 100.0) -> bool:
    """One round trip: `out_s` to the conductor, which stamps its clock, and `back_s` home."""
    t_send = start + i * PING_INTERVAL
    return sync.add_sample(t_send, t_send + out_s + offset, t_send + out_s + back_s)


def test_sample_arithmetic() -> None:
    sample = SyncSample(10.0, 15.004, 10.010)
    assert sample.rtt_s == pytest.approx(0.010)
    assert sample.offset_s == pytest.approx(4.999)


def test_before_any_sample() -> None:
    sync = ClockSync()
    assert not sync.synced
    assert sync.offset_s == 0.0
    assert sync.rtt_s == math.inf
    assert sync.samples == ()
    assert sync.to_remote(3.0) == 3.0


def test_first_estimate_is_taken_at_once() -> None:
    sync = ClockSync(max_step_s=0.001)
    assert ping(sync, 0, offset=1234.5, out_s=0.002, back_s=0.002)
    assert sync.synced
    assert sync.offset_s == pytest.approx(1234.5, abs=1e-9)
    assert sync.rtt_s == pytest.approx(0.004)
    assert sync.to_remote(100.0) == pytest.approx(1334.5)
    assert sync.to_local(sync.to_remote(7.25)) == pytest.approx(7.25)


def test_a_queueing_backlog_is_left_out() -> None:
    """Most round trips are 2 ms; a stalled receiver queues a few pings for 60 ms one way only."""
    sync = ClockSync()
    for i in range(200):
        if i % 10 == 5:
            ping(sync, i, offset=5.0, out_s=0.061, back_s=0.001)  # alone, each is 30 ms off
        else:
            ping(sync, i, offset=5.0, out_s=0.001, back_s=0.001)
    assert sync.rtt_s == pytest.approx(0.002)
    assert sync.offset_s == pytest.approx(5.0, abs=1e-9)


def test_a_stalled_return_leg_is_left_out() -> None:
    """A lossy TCP stream holds back four replies in ten by 10-200 ms; pings are never held."""
    rng = random.Random(3)
    sync = ClockSync()
    for i in range(1000):
        back = 0.002 + (rng.uniform(0.010, 0.200) if i % 10 < 4 else 0.0)
        ping(sync, i, offset=5.0, out_s=0.002, back_s=back)
    assert sync.offset_s == pytest.approx(5.0, abs=1e-9)


def test_symmetric_jitter_averages_away() -> None:
    """5 +- 2 ms each way, independently: one sample is off by ~1.4 ms, thousands by a few microseconds."""
    rng = random.Random(7)
    sync = ClockSync()
    for i in range(4000):
        out_s, back_s = (max(0.0, rng.gauss(0.005, 0.002)) for _ in range(2))
        ping(sync, i, offset=-3.0, out_s=out_s, back_s=back_s)
    assert sync.offset_s == pytest.approx(-3.0, abs=1e-4)
    assert len(sync.samples) == 4000


def test_window_forgets_old_samples() -> None:
    sync = ClockSync(window=4)
    for i in range(10):
        ping(sync, i, offset=0.0, out_s=0.001 * (i + 1), back_s=0.001 * (i + 1))
    assert len(sync.samples) == 4
    assert sync.rtt_s == pytest.approx(0.014)  # best of the last four, not the first sample
    assert sync.accepted == 10


def test_step_is_limited_once_locked() -> None:
    sync = ClockSync(window=1, smoothing=1.0, max_step_s=0.001, relock_margin_s=0.010)
    ping(sync, 0, offset=2.0, out_s=0.001, back_s=0.001)
    ping(sync, 1, offset=2.004, out_s=0.001, back_s=0.001)  # 4 ms off: below the relock margin
    assert sync.offset_s == pytest.approx(2.001, abs=1e-9)
    for i in range(2, 10):
        ping(sync, i, offset=2.004, out_s=0.001, back_s=0.001)
    assert sync.offset_s == pytest.approx(2.004, abs=1e-9)
    assert sync.relocks == 0


def test_clock_jump_relocks_after_agreeing_samples_only() -> None:
    sync = ClockSync(relock_after=3)
    for i in range(5):
        ping(sync, i, offset=1.0, out_s=0.001, back_s=0.001)
    ping(sync, 5, offset=51.0, out_s=0.001, back_s=0.001)  # one contradicting sample is not enough
    ping(sync, 6, offset=1.0, out_s=0.001, back_s=0.001)
    assert sync.offset_s == pytest.approx(1.0)
    for i in range(7, 9):
        ping(sync, i, offset=51.0, out_s=0.001, back_s=0.001)
    assert sync.offset_s == pytest.approx(1.0)  # two so far: unchanged
    ping(sync, 9, offset=51.0, out_s=0.001, back_s=0.001)
    assert sync.offset_s == pytest.approx(51.0, abs=1e-9)
    assert sync.relocks == 1
    assert len(sync.samples) == 3


@pytest.mark.parametrize(
    ("sample", "reason"),
    [
        ((10.0, 10.0, 9.999), REJECT_NEGATIVE_RTT),
        ((10.0, math.nan, 10.01), REJECT_NON_FINITE),
        ((math.inf, 10.0, 10.01), REJECT_NON_FINITE),
        ((10.0, 10.0, 11.5), REJECT_RTT_TOO_LARGE),
    ],
)
def test_absurd_samples_are_rejected_and_counted(sample: tuple[float, float, float], reason: str) -> None:
    sync = ClockSync()
    ping(sync, 0, offset=3.0, out_s=0.001, back_s=0.001)
    assert sync.add_sample(*sample) is False
    assert sync.add_sample(*sample) is False
    assert sync.rejections == {reason: 2}
    assert sync.offset_s == pytest.approx(3.0)
    assert len(sync.samples) == 1


def test_bad_types_and_settings_raise() -> None:
    sync = ClockSync()
    with pytest.raises(TypeError, match="t_remote"):
        sync.add_sample(1.0, "2", 3.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="window"):
        ClockSync(window=0)
    with pytest.raises(ValueError, match="smoothing"):
        ClockSync(smoothing=0.0)
    with pytest.raises(ValueError, match="max_rtt_s"):
        ClockSync(max_rtt_s=math.nan)
    with pytest.raises(TypeError, match="relock_after"):
        ClockSync(relock_after=2.0)  # type: ignore[arg-type]


def test_reset_forgets_the_estimate_but_keeps_counts() -> None:
    sync = ClockSync()
    ping(sync, 0, offset=3.0, out_s=0.001, back_s=0.001)
    sync.add_sample(1.0, 1.0, 0.0)
    sync.reset()
    assert not sync.synced and sync.samples == () and sync.offset_s == 0.0
    assert sync.rejections == {REJECT_NEGATIVE_RTT: 1}
    ping(sync, 1, offset=-7.0, out_s=0.001, back_s=0.001)
    assert sync.offset_s == pytest.approx(-7.0)


def test_clock_map_value() -> None:
    mapping = ClockMap(2.5)
    assert mapping.to_remote(1.0) == 3.5
    assert mapping.to_local(3.5) == 1.0
    assert ClockMap() == ClockMap(0.0)
    with pytest.raises(ValueError, match="offset_s"):
        ClockMap(math.inf)
    with pytest.raises(TypeError, match="offset_s"):
        ClockMap("1")  # type: ignore[arg-type]
    sync = ClockSync()
    ping(sync, 0, offset=0.75, out_s=0.001, back_s=0.001)
    assert sync.clock_map.offset_s == sync.offset_s


offsets = st.floats(-1e5, 1e5, allow_nan=False)
legs = st.floats(0.0, 0.2, allow_nan=False)


@given(offsets, st.lists(legs, min_size=1, max_size=60))
def test_symmetric_delays_give_the_exact_offset(offset: float, delays: list[float]) -> None:
    sync = ClockSync()
    for i, d in enumerate(delays):
        ping(sync, i, offset, d, d)
        assert sync.offset_s == pytest.approx(offset, abs=1e-6)


@given(offsets, st.lists(st.tuples(legs, legs), min_size=1, max_size=80))
def test_error_never_exceeds_half_the_worst_round_trip(
    offset: float, trips: list[tuple[float, float]]
) -> None:
    sync = ClockSync()
    worst = 0.0
    for i, (out_s, back_s) in enumerate(trips):
        ping(sync, i, offset, out_s, back_s)
        worst = max(worst, out_s + back_s)
        assert abs(sync.offset_s - offset) <= worst / 2 + 1e-6


@given(
    offsets,
    st.lists(st.tuples(legs, legs), max_size=40),
    st.floats(0.0005, 0.05),
    st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=60, max_size=80),
)
def test_converges_within_half_the_recent_round_trip(
    offset: float, history: list[tuple[float, float]], rtt_cap: float, recent: list[tuple[float, float]]
) -> None:
    """Whatever came before, once round trips stay under a cap the estimate settles within cap/2."""
    sync = ClockSync()
    for i, (out_s, back_s) in enumerate(history):
        ping(sync, i, offset, out_s, back_s)
    for j, (a, b) in enumerate(recent):
        ping(sync, len(history) + j, offset, a * rtt_cap / 2, b * rtt_cap / 2)
    assert abs(sync.offset_s - offset) <= rtt_cap / 2 + 1e-6
    assert abs(sync.offset_s - offset) <= max(s.rtt_s for s in sync.samples) / 2 + 1e-6


def test_the_conductors_own_delay_is_no_leg_of_the_trip() -> None:
    """A busy conductor answers 40 ms after the ping arrived: with both its stamps the offset stays exact."""
    sync = ClockSync()
    for i in range(20):
        t_send = 100.0 + i * PING_INTERVAL
        arrived = t_send + 0.002 + 7.0  # 2 ms out; conductor clock = local + 7 s
        sync.add_sample(t_send, arrived, t_send + 0.002 + 0.040 + 0.002, arrived + 0.040)
    assert sync.offset_s == pytest.approx(7.0, abs=1e-9)
    assert sync.rtt_s == pytest.approx(0.004)
    alone = SyncSample(100.0, 107.002, 100.044)  # the same trip stamped once, at receipt: 20 ms off
    assert alone.offset_s == pytest.approx(6.98)
    assert sync.add_sample(100.0, 107.002, 100.044, 107.001) is False
    assert sync.rejections == {REJECT_REPLY_BEFORE_RECEIPT: 1}


def test_a_seeded_estimate_holds_until_samples_outweigh_it() -> None:
    """A restarted agent starts from its predecessor's offset: jittery first samples barely move it."""
    rng = random.Random(11)
    sync = ClockSync()
    sync.seed(2.0)
    assert not sync.synced and sync.offset_s == 2.0
    for i in range(50):  # 5 +- 2 ms legs: one sample alone is ~1.4 ms off
        out_s, back_s = (max(0.0, rng.gauss(0.005, 0.002)) for _ in range(2))
        ping(sync, i, offset=2.0, out_s=out_s, back_s=back_s)
        assert sync.offset_s == pytest.approx(2.0, abs=2e-4)
    assert sync.synced


def test_a_seed_from_another_clock_is_dropped_once_samples_disagree() -> None:
    sync = ClockSync(relock_after=3)
    sync.seed(9.0)  # the conductor has since moved to a machine whose clock reads 1 s
    for i in range(3):
        ping(sync, i, offset=1.0, out_s=0.001, back_s=0.001)
    assert sync.offset_s == pytest.approx(1.0, abs=1e-9)
    assert sync.relocks == 1
    with pytest.raises(ValueError, match="offset_s"):
        sync.seed(math.nan)
