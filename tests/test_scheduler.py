"""The output scheduler, driven offline by a manual clock; one real-thread test checks only completion.

Timing precision is measured in bench/timing.py, never asserted here.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

from agents.offline_scheduler import ManualClock, OfflineScheduler
from agents.scheduler import ScheduledEvent, Scheduler
from protocol.messages import Note
from protocol.realtime import PRIORITY_FIFO, PRIORITY_NORMAL, set_switch_interval


@dataclass(frozen=True)
class Tempo:
    """Constant tempo from an anchor, optionally with a change at a later beat (as the conductor
    announces them), in local seconds."""

    bpm: float
    beat0: float = 0.0
    t0: float = 0.0
    playing: bool = True
    change_beat: float | None = None
    new_bpm: float = 0.0

    def time_at(self, beat: float) -> float | None:
        if self.change_beat is not None and beat > self.change_beat:
            tc = self.t0 + (self.change_beat - self.beat0) * 60.0 / self.bpm
            return tc + (beat - self.change_beat) * 60.0 / self.new_bpm
        return self.t0 + (beat - self.beat0) * 60.0 / self.bpm


class Capture:
    """Everything sent, with the clock reading at each send."""

    def __init__(self, clock: ManualClock | None = None) -> None:
        self.clock = clock
        self.sent: list[tuple[float, ScheduledEvent]] = []

    def __call__(self, ev: ScheduledEvent) -> None:
        self.sent.append((self.clock() if self.clock else 0.0, ev))

    def kinds(self) -> list[tuple[str, int]]:
        return [(e.kind, e.note_id) for _, e in self.sent]


def offline(bpm: float = 60.0) -> tuple[OfflineScheduler, Capture]:
    clock = ManualClock()
    cap = Capture(clock)
    sched = OfflineScheduler(cap, clock=clock)
    sched.set_timemap(Tempo(bpm))
    return sched, cap


def test_events_fire_in_beat_order_at_their_due_time_with_zero_lateness() -> None:
    sched, cap = offline(bpm=60.0)  # one beat per second
    b = sched.schedule(Note(2.0, 1.0, 62, 90, 0, "test"))
    a = sched.schedule(Note(1.0, 0.5, 60, 100, 0, "test"), tag="bass")
    sched.advance_to(10.0)
    assert [(t, e.kind, e.note_id) for t, e in cap.sent] == [
        (1.0, "on", a), (1.5, "off", a), (2.0, "on", b), (3.0, "off", b)]
    first = cap.sent[0][1]
    assert (first.pitch, first.velocity, first.tag, first.due) == (60, 100, "bass", 1.0)
    assert cap.sent[1][1].velocity == 0
    s = sched.stats()
    assert (s["count"], s["max"], s["late_count"], sched.pending()) == (4, 0.0, 0, 0)


def test_nothing_fires_before_its_time() -> None:
    sched, cap = offline()
    sched.schedule(Note(1.0, 1.0, 60, 100, 0, "test"))
    sched.advance_to(0.999)
    assert cap.sent == []
    sched.advance_to(1.0)
    assert cap.kinds() == [("on", 1)]


def test_note_off_goes_before_note_on_at_the_same_beat_so_a_repeated_pitch_is_restruck() -> None:
    sched, cap = offline()
    second = sched.schedule(Note(1.0, 1.0, 60, 100, 0, "test"))
    first = sched.schedule(Note(0.0, 1.0, 60, 100, 0, "test"))
    sched.advance_to(5.0)
    assert cap.kinds() == [("on", first), ("off", first), ("on", second), ("off", second)]


def test_every_note_off_follows_its_note_on_under_arbitrary_notes_and_tempo_changes() -> None:
    import random

    rng = random.Random(7)
    sched, cap = offline(bpm=120.0)
    for _ in range(200):
        start, dur = rng.uniform(0, 16), rng.uniform(0.01, 3)
        sched.schedule(Note(start, dur, rng.randrange(128), rng.randrange(1, 128), rng.randrange(16), "test"))
    t = 0.0
    for step in range(40):
        t += 0.25
        sched.advance_to(t)
        if step % 7 == 3:
            beat = t * 2.0  # any anchor; only the monotonic map matters here
            sched.set_timemap(Tempo(rng.uniform(60, 240), beat0=beat, t0=t))
    sched.advance_to(1e6)
    seen_on: set[int] = set()
    for _, ev in cap.sent:
        if ev.kind == "on":
            seen_on.add(ev.note_id)
        else:
            assert ev.note_id in seen_on
    assert len(cap.sent) == 400 and sched.pending() == 0
    times = [t for t, _ in cap.sent]
    assert times == sorted(times)


def test_stop_flushes_note_offs_of_started_notes_and_drops_unstarted_ones() -> None:
    sched, cap = offline()
    sounding = sched.schedule(Note(1.0, 4.0, 60, 100, 0, "test"))
    unstarted = sched.schedule(Note(3.0, 1.0, 64, 100, 0, "test"))
    sched.advance_to(2.0)
    assert sched.sounding() == [sounding]
    sched.stop()
    assert cap.kinds() == [("on", sounding), ("off", sounding)]
    assert cap.sent[-1][0] == 2.0 and cap.sent[-1][1].due is None
    assert sched.pending() == 0
    sched.advance_to(100.0)
    assert unstarted not in {e.note_id for _, e in cap.sent}
    assert sched.stats()["count"] == 1  # the forced note-off was not a scheduled send


def test_clear_releases_sounding_notes_drops_the_rest_and_keeps_scheduling() -> None:
    sched, cap = offline()
    sounding = sched.schedule(Note(1.0, 4.0, 60, 100, 0, "test"))
    sched.schedule(Note(3.0, 1.0, 64, 100, 0, "test"))
    sched.advance_to(2.0)
    sched.clear()
    assert cap.kinds() == [("on", sounding), ("off", sounding)] and sched.pending() == 0
    later = sched.schedule(Note(10.0, 1.0, 67, 100, 0, "test"))
    sched.advance_to(20.0)
    assert cap.kinds()[2:] == [("on", later), ("off", later)]


def test_replacing_the_timemap_retimes_pending_events() -> None:
    sched, cap = offline(bpm=60.0)
    n = sched.schedule(Note(4.0, 1.0, 60, 100, 0, "test"))
    sched.advance_to(1.0)
    sched.set_timemap(Tempo(120.0, beat0=1.0, t0=1.0))  # beat 4 now at 1 + 3 * 0.5 = 2.5 s
    sched.advance_to(10.0)
    assert [(t, e.kind, e.note_id) for t, e in cap.sent] == [(2.5, "on", n), (3.0, "off", n)]
    assert sched.stats()["max"] == 0.0


def test_a_clock_offset_change_moves_pending_notes() -> None:
    sched, cap = offline(bpm=60.0)
    sched.schedule(Note(2.0, 1.0, 60, 100, 0, "test"))
    sched.set_timemap(Tempo(60.0, t0=0.25))  # new offset estimate: conductor time is 0.25 s later here
    sched.advance_to(10.0)
    assert [t for t, _ in cap.sent] == [2.25, 3.25]


def test_tempo_change_announced_mid_note_moves_only_its_note_off() -> None:
    sched, cap = offline(bpm=60.0)
    n = sched.schedule(Note(0.0, 4.0, 60, 100, 0, "test"))
    sched.advance_to(1.5)
    assert cap.kinds() == [("on", n)]
    # Announced at 1.5 s for beat 2: the first half of the note keeps 60 bpm, the rest goes at 120.
    sched.set_timemap(Tempo(60.0, change_beat=2.0, new_bpm=120.0))
    sched.advance_to(10.0)
    assert [(t, e.kind) for t, e in cap.sent] == [(0.0, "on"), (3.0, "off")]
    assert sched.stats()["max"] == 0.0


def test_a_map_moved_into_the_past_sends_overdue_events_at_once_and_counts_them_late() -> None:
    sched, cap = offline(bpm=60.0)
    sched.schedule(Note(5.0, 1.0, 60, 100, 0, "test"))
    sched.advance_to(4.0)
    sched.set_timemap(Tempo(60.0, t0=-2.0))  # beat 5 is now due at 3.0 s: 1 s overdue
    assert [(t, e.kind, e.due) for t, e in cap.sent] == [(4.0, "on", 3.0), (4.0, "off", 4.0)]
    s = sched.stats()
    assert (s["max"], s["late_count"]) == (1000.0, 1)


def test_drop_after_drops_a_note_whose_start_is_too_late_but_never_an_off() -> None:
    clock = ManualClock()
    cap = Capture(clock)
    sched = OfflineScheduler(cap, clock=clock, drop_after_s=0.05)
    sched.set_timemap(Tempo(60.0))
    sched.schedule(Note(1.0, 10.0, 60, 100, 0, "test"))
    sched.advance_to(2.0)
    sched.schedule(Note(0.5, 1.0, 62, 100, 0, "test"))  # committed after its time: dropped, not blasted
    sched.set_timemap(Tempo(60.0, t0=-20.0))  # the sounding note's off is now overdue: still sent
    assert cap.kinds() == [("on", 1), ("off", 1)]
    assert sched.stats()["dropped"] == 1


def test_a_late_note_with_most_of_its_length_left_still_sounds() -> None:
    """A held chord that could only come in late (the last chord of a piece after a stall) sounds for
    what is left of it; a short note as late is dropped."""
    clock = ManualClock()
    cap = Capture(clock)
    sched = OfflineScheduler(cap, clock=clock, drop_after_s=0.25)
    sched.set_timemap(Tempo(60.0))
    sched.advance_to(4.3)
    sched.schedule(Note(4.0, 4.0, 60, 100, 0, "test"))  # 0.3 s late, 3.7 of 4 s left
    sched.schedule(Note(4.0, 0.5, 64, 100, 0, "test"))  # 0.3 s late, 0.2 of 0.5 s left
    sched.advance_to(4.31)
    assert [(e.kind, e.note.pitch) for _, e in cap.sent] == [("on", 60)]
    assert sched.stats()["dropped"] == 1


def test_a_stopped_timeline_holds_unstarted_notes_and_releases_sounding_ones() -> None:
    sched, cap = offline(bpm=60.0)
    sounding = sched.schedule(Note(1.0, 4.0, 60, 100, 0, "test"))
    held = sched.schedule(Note(3.0, 1.0, 64, 100, 0, "test"))
    sched.advance_to(2.0)
    sched.set_timemap(Tempo(60.0, playing=False))
    assert cap.kinds() == [("on", sounding), ("off", sounding)]
    sched.advance_to(50.0)
    assert len(cap.sent) == 2 and sched.pending() == 2
    sched.set_timemap(Tempo(60.0, beat0=2.0, t0=60.0))  # restart: beat 3 at 61 s
    sched.advance_to(100.0)
    assert [(t, e.kind, e.note_id) for t, e in cap.sent[2:]] == [(61.0, "on", held), (62.0, "off", held)]


@pytest.mark.parametrize("timemap", [None, "none-returning"])
def test_no_map_or_a_map_returning_none_holds_events(timemap: object) -> None:
    class Stopped:
        def time_at(self, beat: float) -> float | None:
            return None

    clock = ManualClock()
    cap = Capture(clock)
    sched = OfflineScheduler(cap, clock=clock)
    sched.set_timemap(None if timemap is None else Stopped())
    sched.schedule(Note(0.0, 1.0, 60, 100, 0, "test"))
    sched.advance_to(100.0)
    assert cap.sent == [] and sched.pending() == 2


def test_a_failing_output_is_counted_and_the_schedule_goes_on() -> None:
    clock = ManualClock()
    sent: list[ScheduledEvent] = []

    def flaky(ev: ScheduledEvent) -> None:
        if ev.pitch == 61:
            raise OSError("port gone")
        sent.append(ev)

    sched = OfflineScheduler(flaky, clock=clock)
    sched.set_timemap(Tempo(60.0))
    for i, pitch in enumerate((60, 61, 62)):
        sched.schedule(Note(float(i), 0.5, pitch, 100, 0, "test"))
    sched.advance_to(10.0)
    assert [e.pitch for e in sent] == [60, 60, 62, 62]
    assert sched.stats()["send_errors"] == 2


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((0.0, 0.0, 60, 100, 0), "duration_beats"),
        ((0.0, 1.0, 60, 100, 16), "channel"),
        ((0.0, 1.0, 128, 100, 0), "pitch"),
        ((0.0, 1.0, 60, 0, 0), "velocity"),
        ((float("nan"), 1.0, 60, 100, 0), "start_beat"),
        ((0.0, 1.0, 60.5, 100, 0), "pitch"),
        (("0", 1.0, 60, 100, 0), "start_beat"),
    ],
)
def test_bad_notes_never_reach_the_queue(args: tuple, field: str) -> None:
    """The scheduler takes only a Note, and a Note with a bad field cannot be made: the error names
    the field, and nothing is queued."""
    sched, _ = offline()
    with pytest.raises((ValueError, TypeError), match=rf"Note\.{field}"):
        sched.schedule(Note(*args, "test"))
    with pytest.raises(TypeError, match=r"protocol\.messages\.Note"):
        sched.schedule(args)  # five loose fields are not a note
    assert sched.pending() == 0


def test_stats_ring_buffer_is_bounded() -> None:
    clock = ManualClock()
    sched = OfflineScheduler(lambda ev: None, clock=clock, stats_capacity=8)
    sched.set_timemap(Tempo(60.0))
    for i in range(20):
        sched.schedule(Note(float(i), 0.5, 60, 100, 0, "test"))
    sched.advance_to(100.0)
    assert sched.lateness_ms().shape == (8,) and sched.stats()["count"] == 40


def test_switch_interval_is_set_only_when_asked_and_reversible() -> None:
    before = set_switch_interval(None)
    try:
        assert set_switch_interval(0.0005) == before
        assert set_switch_interval(None) == pytest.approx(0.0005)
    finally:
        set_switch_interval(before)
    with pytest.raises(ValueError):
        set_switch_interval(0.0)


def test_real_thread_sends_everything_in_order_and_stop_releases_sounding_notes() -> None:
    sent: list[ScheduledEvent] = []
    done = threading.Event()
    expected = 20 * 2 + 1  # 20 short notes, plus the note-on of one long note

    def send(ev: ScheduledEvent) -> None:
        sent.append(ev)
        if len(sent) == expected:
            done.set()

    sched = Scheduler(send, realtime=True)
    sched.start()
    try:
        assert sched.priority in (PRIORITY_FIFO, PRIORITY_NORMAL)
        # 6000 bpm: a beat every 10 ms, so the whole run takes about a quarter of a second.
        sched.set_timemap(Tempo(6000.0, t0=time.monotonic() + 0.02))
        for i in reversed(range(20)):
            sched.schedule(Note(float(i), 0.5, 60 + i, 100, 0, "test"))
        long_note = sched.schedule(Note(19.0, 1024.0, 40, 100, 1, "test"))  # the longest a Note is
        assert done.wait(timeout=10.0), f"only {len(sent)} of {expected} events sent"
    finally:
        sched.stop()
    assert [e.beat for e in sent[:-1]] == sorted(e.beat for e in sent[:-1])
    assert (sent[-1].kind, sent[-1].note_id) == ("off", long_note)
    assert sched.pending() == 0 and not sched.running
    assert sched.stats()["count"] == expected
