"""MIDI clock out against a real JACK MIDI port: pulse rate, Start/Continue/Stop, tempo changes, the end."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from support.jack import Captured, JackServer, MidiCapture

from conductor.midi_clock import (
    CLOCK,
    CONTINUE,
    PPQN,
    SONG_POSITION,
    START,
    STOP,
    MidiClockError,
    MidiClockOut,
)
from protocol.timeline import Timeline

pytestmark = pytest.mark.network

_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}{next(_names)}"


def status(byte: int) -> Callable[[Captured], bool]:
    return lambda c: c.message[0] == byte


def song_position(c: Captured) -> int:
    return c.message[1] | (c.message[2] << 7)


def mean_interval(times: list[float]) -> float:
    """The pulse period as the median slope over pairs of pulses at least a quarter of the train apart
    (Theil-Sen): a delivery stall on a loaded machine delays a run of arrivals and then lets them
    through at once, which moves a mean or a least-squares line but not the median of pair slopes."""
    n = len(times)
    gap = max(1, n // 4)
    slopes = sorted((times[j] - times[i]) / (j - i) for i in range(n) for j in range(i + gap, n))
    return slopes[len(slopes) // 2]


@pytest.fixture
def capture(jack_server: JackServer) -> Iterator[MidiCapture]:
    with MidiCapture(client_name=unique("clockcap")) as cap:
        yield cap


@pytest.fixture
def clock_out(capture: MidiCapture) -> Iterator[MidiClockOut]:
    with MidiClockOut(capture.port_name, api="jack", client_name=unique("clock")) as out:
        capture.sync(lambda: out.locate(0.0))  # Song Position while stopped: harmless to any receiver
        yield out


def settle_stopped(capture: MidiCapture, out: MidiClockOut) -> list[Captured]:
    """Everything sent before a Song Position probe; JACK keeps order, so nothing sent earlier is missing."""
    probes = sum(1 for c in capture.received if c.message[0] == SONG_POSITION)
    assert out.locate(0.0), "the clock should be stopped"
    capture.wait_for(probes + 1, timeout=2.0, match=status(SONG_POSITION))
    return capture.received


def started(tempo: float, stop_beat: float = 0.0) -> Timeline:
    """As the conductor starts: beat 0 a little ahead; stop_beat as a `--bars` run announces it."""
    tl = Timeline(tempo_bpm=tempo).started(time.monotonic(), at_beat=0.0, delay_s=0.1)
    return replace(tl, stop_beat=stop_beat)


def test_24_clocks_per_beat_at_the_timeline_tempo(capture: MidiCapture, clock_out: MidiClockOut) -> None:
    tempo, beats = 150.0, 4
    tl = started(tempo)
    clock_out.set_timeline(tl)
    clocks = capture.wait_for(beats * PPQN + 1, timeout=5.0, match=status(CLOCK))
    got = capture.received
    kinds = [c.message[0] for c in got]
    first_clock = kinds.index(CLOCK)
    assert kinds[:first_clock] == [SONG_POSITION, START], "Song Position then Start, before any clock"
    assert song_position(got[0]) == 0
    # The pulse train keeps the timeline's rate: 60 / tempo / 24 s apart on average, within 2 %.
    period = 60.0 / tempo / PPQN
    times = [c.time for c in clocks[: beats * PPQN + 1]]
    assert mean_interval(times) == pytest.approx(period, rel=0.02)
    # Counted over one beat's window starting at beat 1: exactly one beat's worth of pulses.
    t1 = times[PPQN] - period / 2
    assert sum(1 for t in times if t1 <= t < t1 + PPQN * period) == PPQN
    # And the first pulse is beat 0 itself, not a pulse either side (perf_counter and monotonic are one
    # clock on Linux). Arrival times carry JACK's period and a loaded machine's polling delay, so the
    # train's median offset from its ideal times is compared against half a pulse, not one arrival.
    skew = time.perf_counter() - time.monotonic()
    offsets = sorted(t - skew - tl.time_at(k / PPQN) for k, t in enumerate(times))
    assert abs(offsets[len(offsets) // 2]) < period / 2


def test_a_tempo_change_bends_the_pulse_train_at_its_beat(
    capture: MidiCapture, clock_out: MidiClockOut
) -> None:
    tl = started(120.0)
    clock_out.set_timeline(tl)
    capture.wait_for(PPQN // 2, timeout=3.0, match=status(CLOCK))
    clock_out.set_timeline(tl.with_tempo(240.0, at_beat=2.0, now=time.monotonic()))
    times = [c.stamp for c in capture.wait_for(4 * PPQN + 1, timeout=5.0, match=status(CLOCK))]
    # Read by time, not by index: JACK's dummy driver may drop a pulse in an overrun on a loaded
    # machine, and one lost before the change would move an index-split window across it.
    assert mean_interval(times[: 5 * PPQN // 3]) == pytest.approx(60.0 / 120.0 / PPQN, rel=0.02)
    assert mean_interval(times[-5 * PPQN // 3 :]) == pytest.approx(60.0 / 240.0 / PPQN, rel=0.02)
    # the bend at beat 2: two beats at 120 and two at 240 from the first pulse to the last (give or
    # take the two pulses an overrun may drop)
    assert times[-1] - times[0] == pytest.approx(2 * 0.5 + 2 * 0.25, abs=2 * 60.0 / 120.0 / PPQN + 0.004)


def test_stop_sends_stop_and_the_clock_falls_silent(capture: MidiCapture, clock_out: MidiClockOut) -> None:
    tl = started(180.0)
    clock_out.set_timeline(tl)
    capture.wait_for(PPQN + 6, timeout=3.0, match=status(CLOCK))
    stopped = tl.stopped(time.monotonic())
    clock_out.set_timeline(stopped)
    capture.wait_for(1, timeout=2.0, match=status(STOP))
    got = [c.message[0] for c in settle_stopped(capture, clock_out)]
    after_stop = got[got.index(STOP) + 1 :]
    assert CLOCK not in after_stop and STOP not in after_stop
    assert not clock_out.running

    # Playing on from where it stopped: Song Position at the next sixteenth, then Continue (not Start).
    capture.clear()
    clock_out.set_timeline(stopped.started(time.monotonic(), delay_s=0.05))
    capture.wait_for(PPQN, timeout=3.0, match=status(CLOCK))
    got = capture.received
    kinds = [c.message[0] for c in got]
    assert kinds[:2] == [SONG_POSITION, CONTINUE]
    assert song_position(got[0]) * 0.25 == pytest.approx(stopped.beat_origin, abs=0.25)


def test_a_bars_run_stops_on_the_bar_line(capture: MidiCapture, clock_out: MidiClockOut) -> None:
    """stop_beat: exactly 24 pulses a beat up to the bar line, then Stop; no pulse into the next bar."""
    tl = started(240.0, stop_beat=4.0)
    clock_out.set_timeline(tl)
    capture.wait_for(1, timeout=5.0, match=status(STOP))
    got = [c.message[0] for c in settle_stopped(capture, clock_out)]
    # Exactly 96 sent; JACK's dummy driver (not realtime here) may lose a message or two in overruns
    # on a loaded machine, never add one, so the port never sees a pulse into the next bar.
    assert clock_out.stats()["clocks"] == 4 * PPQN
    assert 4 * PPQN - 3 <= got.count(CLOCK) <= 4 * PPQN
    assert got.index(STOP) > max(i for i, k in enumerate(got) if k == CLOCK)


def test_close_while_running_sends_stop(capture: MidiCapture) -> None:
    out = MidiClockOut(capture.port_name, api="jack", client_name=unique("clock")).start()
    try:
        capture.sync(lambda: out.locate(0.0))
        out.set_timeline(started(200.0))
        capture.wait_for(PPQN, timeout=3.0, match=status(CLOCK))
    finally:
        out.close()
    capture.wait_for(1, timeout=2.0, match=status(STOP))
    assert capture.received[-1].message == (STOP,)


def test_missing_port_is_named(jack_server: JackServer) -> None:
    with pytest.raises(MidiClockError, match="no-such-synth"):
        MidiClockOut("no-such-synth", api="jack", client_name=unique("clock")).start()


def test_needs_a_port_or_virtual() -> None:
    with pytest.raises(ValueError, match="port"):
        MidiClockOut(None)
