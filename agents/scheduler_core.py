"""The core of the agent's output scheduler: committed notes in beats, sent at the exact local moment.

Clock domain: every time here is LOCAL `time.monotonic()` seconds (CLOCK_MONOTONIC on Linux, the same
clock `perf_counter` reads there), the domain of `protocol.timeline.LocalTimeMap`.

Events are stored in beats and turned into seconds only when they are about to go out, through the
current `TimeMap`. The agent builds that map from the conductor timeline plus its clock offset and
replaces it whole whenever either changes, so a tempo change announced after a note was committed
still moves that note (and its note-off) to the right moment.

One core (`SchedulerCore`, here: no threads, no clock) holds the queue, the notes that are sounding and
the timing statistics; thin drivers run it: `agents.scheduler.Scheduler`, a realtime timing thread
that sleeps to just before the due time and spins the rest, `agents.loop_scheduler.LoopScheduler` on an
event loop's timers, and `agents.offline_scheduler.OfflineScheduler`, driven by a `ManualClock` for tests
and rendering, where every event goes out with lateness exactly 0.

Stopped timeline: while the map is None, says `playing=False`, or its `time_at` returns None, nothing
is due: unstarted notes are held (not dropped) and go out once a playing map arrives; notes already
sounding are released at once (their note-off is sent immediately), so a stop never leaves a stuck
note.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

import numpy as np

from agents.lateness import LatenessStats
from protocol.messages import Note

__all__ = [
    "CoreQueries",
    "Dispatch",
    "EventKind",
    "LatenessStats",
    "PrepareFn",
    "ScheduledEvent",
    "SchedulerCore",
    "SendFn",
    "TimeMap",
]

log = logging.getLogger(__name__)

EventKind = Literal["on", "off"]


class TimeMap(Protocol):
    """Beats to local monotonic seconds. None means "not playing": events wait.

    An object may also carry `playing: bool`; False holds events just as None does.
    """

    def time_at(self, beat: float) -> float | None: ...


@dataclass(frozen=True, slots=True)
class ScheduledEvent:
    """One end of a scheduled note: its start (`on`) or its end (`off`) at `beat`, with the very Note
    the agent committed, so no field of it is copied out and put back together on the way to the
    output. `beat` is the note's start or end, unless a cut moved the end (`cut_at`). `due` is
    filled in on the copy handed to `send` (local seconds) so outputs that take timestamps (OSC
    bundles) can stamp it; it is None on a note-off forced by a stop."""

    beat: float
    kind: EventKind
    note: Note
    tag: object
    note_id: int
    due: float | None = None

    @property
    def channel(self) -> int:
        return self.note.channel

    @property
    def pitch(self) -> int:
        return self.note.pitch

    @property
    def velocity(self) -> int:
        """The note's velocity on its note-on; 0 on its note-off, as MIDI releases a key."""
        return self.note.velocity if self.kind == "on" else 0


SendFn = Callable[[ScheduledEvent], float | None]
"""Called from the timing thread only. May return the time it actually sent (local seconds); None
means "now", read just before the call."""


Dispatch = Callable[[], Sequence[float | Exception]]
"""Writes events made ready before their due time; per event, the time it actually went out (local
seconds, read right after the write that carried it) or the exception that kept it in."""

PrepareFn = Callable[[list[ScheduledEvent]], Dispatch]
"""Called from the timing thread only, before the events' due time: does all of their output work
but the write (agents/outputs/burst.py) and returns the write."""


@dataclass(slots=True)
class _Note:
    on_seq: int
    off_seq: int
    off_event: ScheduledEvent
    started: bool = False
    on_beat: float = 0.0


def _check_beat(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name}: must be finite, got {value}")
    return float(value)


class SchedulerCore:
    """Queue, sounding notes and statistics; no threads and no clock, so both drivers share it.

    Not thread-safe: the threaded driver holds its lock around every call. The heap is ordered by
    beat, never by seconds: a TimeMap is monotonic, so the earliest beat is always the earliest due
    time, and replacing the map re-times everything pending without touching the heap. At one beat a
    note-off goes before a note-on, so a repeated pitch is re-struck rather than cut.
    """

    _ORDER: ClassVar[dict[str, int]] = {"off": 0, "on": 1}

    def __init__(self, *, late_ms: float = 5.0, stats_capacity: int = 65536,
                 drop_after_s: float | None = None) -> None:
        self._heap: list[tuple[float, int, int, ScheduledEvent]] = []
        self._dead: set[int] = set()
        self._notes: dict[int, _Note] = {}
        self._forced: list[ScheduledEvent] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self._timemap: TimeMap | None = None
        self.drop_after_s = drop_after_s
        self.lateness = LatenessStats(stats_capacity, late_ms)
        self.dropped = 0
        self.onset_max_s = 0.0  # the latest a note-on went out (note-offs of a stalled note go late)
        self.send_errors = 0
        self._error_types: set[type] = set()

    # -- commands ----------------------------------------------------------------------------------
    def schedule(self, note: Note, tag: object = None) -> int:
        """Queue the note's note-on and note-off; returns its id. The Note checked its own fields
        when it was made (protocol/messages.py), so only its type is checked here."""
        if not isinstance(note, Note):
            raise TypeError(f"note: expected a protocol.messages.Note, got {type(note).__name__}")
        start = note.start_beat
        note_id = next(self._ids)
        on = ScheduledEvent(start, "on", note, tag, note_id)
        off = ScheduledEvent(note.end_beat, "off", note, tag, note_id)
        on_seq, off_seq = self._push(on), self._push(off)
        self._notes[note_id] = _Note(on_seq, off_seq, off, on_beat=start)
        return note_id

    def cut_at(self, beat: float) -> int:
        """End everything at `beat`: notes that would start there or later are dropped, and notes
        that would still sound then get their note-off moved to it (the end of a piece: whatever
        rings into the final downbeat is cut so the last chord sounds alone). Returns how many
        notes changed."""
        beat = _check_beat("beat", beat)
        changed = 0
        for nid, note in list(self._notes.items()):
            if not note.started and note.on_beat >= beat:
                self._dead.update((note.on_seq, note.off_seq))
                del self._notes[nid]
                changed += 1
            elif note.off_event.beat > beat:
                old = note.off_event
                self._dead.add(note.off_seq)
                note.off_event = ScheduledEvent(beat, "off", old.note, old.tag, old.note_id)
                note.off_seq = self._push(note.off_event)
                changed += 1
        return changed

    def set_timemap(self, timemap: TimeMap | None) -> None:
        self._timemap = timemap
        if not self._playing():
            self._release_sounding()

    def clear(self) -> None:
        """Drop every unstarted note and queue the note-offs of sounding ones to go out at once."""
        self._release_sounding()
        self._heap.clear()
        self._dead.clear()
        self._notes.clear()

    def flush(self) -> list[ScheduledEvent]:
        """`clear`, then hand over the queued note-offs for the caller to send now."""
        self.clear()
        out, self._forced = self._forced, []
        return out

    # -- queries -----------------------------------------------------------------------------------
    @property
    def timemap(self) -> TimeMap | None:
        return self._timemap

    def pending(self) -> int:
        """Events not yet sent (note-ons and note-offs), including forced note-offs."""
        return len(self._heap) - len(self._dead) + len(self._forced)

    def sounding(self) -> list[int]:
        return [nid for nid, n in self._notes.items() if n.started]

    def head_beat(self) -> float | None:
        self._prune()
        return self._heap[0][0] if self._heap else None

    def next_due(self) -> float | None:
        """Local seconds of the next send; -inf when forced note-offs wait; None when nothing is due."""
        if self._forced:
            return -math.inf
        beat = self.head_beat()
        if beat is None or not self._playing():
            return None
        assert self._timemap is not None
        return self._timemap.time_at(beat)

    def _mostly_gone(self, ev: ScheduledEvent, due: float, now: float) -> bool:
        """Whether less than half of a late note's length is left: a held chord that comes in late
        still sounds (the end of a piece must not lose its last chord); a short note is dropped."""
        assert self._timemap is not None
        end = self._timemap.time_at(ev.note.end_beat)
        return end is None or end - now < (end - due) / 2

    # -- the two steps a driver takes --------------------------------------------------------------
    def pop_due(self, now: float) -> list[ScheduledEvent]:
        """Remove and return every event due at or before `now`, in order, with `due` filled in."""
        out, self._forced = self._forced, []
        tm = self._timemap
        while self._heap and tm is not None and self._playing():
            self._prune()
            if not self._heap:
                break
            beat = self._heap[0][0]
            due = tm.time_at(beat)
            if due is None or due > now:
                break
            ev = heapq.heappop(self._heap)[3]
            note = self._notes.get(ev.note_id)
            if note is None:
                continue
            if ev.kind == "on":
                late = self.drop_after_s is not None and now - due > self.drop_after_s
                if late and self._mostly_gone(ev, due, now):
                    self._dead.add(note.off_seq)
                    del self._notes[ev.note_id]
                    self.dropped += 1
                    continue
                note.started = True
            else:
                del self._notes[ev.note_id]
            # Built directly: dataclasses.replace costs ~12 µs here, all of it added to the lateness.
            out.append(ScheduledEvent(ev.beat, ev.kind, ev.note, ev.tag, ev.note_id, due))
        return out

    def deliver(self, events: list[ScheduledEvent], send: SendFn, clock: Callable[[], float]) -> None:
        """Send each event and record its lateness; a failing output never stops the clock."""
        for ev in events:
            t = clock()
            try:
                r = send(ev)
            except Exception as exc:
                self._failed(ev, exc)
                continue
            self._sent(ev, t if r is None else r)

    def prepare(self, events: list[ScheduledEvent], prepare: PrepareFn) -> Dispatch:
        """The first of `deliver`'s two steps for a batch: `prepare` before the due time. An output
        that cannot prepare (closed under us) fails each event when the write would have gone."""
        try:
            return prepare(events)
        except Exception as exc:
            failure = exc
            return lambda: [failure] * len(events)

    def dispatch(self, events: list[ScheduledEvent], dispatch: Dispatch) -> None:
        """The second step, at the due time: write, and record each event's lateness from the time
        it actually went out."""
        try:
            results = dispatch()
            if len(results) != len(events):
                raise ValueError(f"an output answered {len(results)} results for {len(events)} events")
        except Exception as exc:
            results = [exc] * len(events)
        for ev, r in zip(events, results, strict=True):  # lengths checked above
            if isinstance(r, Exception):
                self._failed(ev, r)
            else:
                self._sent(ev, r)

    def stats(self) -> dict[str, float | int]:
        s = self.lateness.summary()
        s["dropped"] = self.dropped
        s["onset_max"] = self.onset_max_s * 1000.0
        s["send_errors"] = self.send_errors
        return s

    # -- internals ---------------------------------------------------------------------------------
    def _push(self, ev: ScheduledEvent) -> int:
        seq = next(self._seq)
        heapq.heappush(self._heap, (ev.beat, self._ORDER[ev.kind], seq, ev))
        return seq

    def _prune(self) -> None:
        while self._heap and self._heap[0][2] in self._dead:
            self._dead.discard(heapq.heappop(self._heap)[2])

    def _playing(self) -> bool:
        tm = self._timemap
        return tm is not None and getattr(tm, "playing", True) is not False

    def _sent(self, ev: ScheduledEvent, sent: float) -> None:
        if ev.due is not None:
            late = sent - ev.due
            self.lateness.add(late)
            if ev.kind == "on" and late > self.onset_max_s:
                self.onset_max_s = late

    def _failed(self, ev: ScheduledEvent, exc: Exception) -> None:
        self.send_errors += 1
        if type(exc) not in self._error_types:
            self._error_types.add(type(exc))
            log.error("output failed on %s (further %s errors only counted)", ev, type(exc).__name__,
                      exc_info=exc)

    def _release_sounding(self) -> None:
        for nid in [nid for nid, n in self._notes.items() if n.started]:
            note = self._notes.pop(nid)
            self._dead.add(note.off_seq)
            self._forced.append(note.off_event)


class CoreQueries:
    """What every driver answers straight from its `SchedulerCore` (``self._core``)."""

    _core: SchedulerCore

    def pending(self) -> int:
        return self._core.pending()

    def sounding(self) -> list[int]:
        return self._core.sounding()

    def stats(self) -> dict[str, float | int]:
        """Lateness in ms (p50, p99, max over the last `stats_capacity` sends), count, late_count,
        dropped, send_errors."""
        return self._core.stats()

    def lateness_ms(self) -> np.ndarray:
        return self._core.lateness.values_ms()
