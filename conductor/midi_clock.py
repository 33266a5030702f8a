"""MIDI clock out: drum machines, hardware sequencers and DAWs follow the ensemble's tempo and transport.

Clock is 24 pulses per quarter note (0xF8); Start (0xFA) or Continue (0xFB) after a Song Position
Pointer (0xF2) says where the transport begins, Stop (0xFC) halts it. A receiver plays its first step
on the first pulse after Start, so Start goes out one pulse early and the pulse at the start beat
lands on the beat itself.

Pulses are not counted off a period: each pulse k is sent at the conductor's time of beat k/24, read
from the current Timeline, so a tempo change at a bar line bends the pulse train exactly there and
rounding never accumulates. The timing thread sleeps to just before a pulse and spins the rest, as
the agents' scheduler does, because a timed wait can wake hundreds of microseconds late.

The conductor never imports the agents package, so the few lines that open an rtmidi port live here.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from protocol.midi_backend import midi_backend_error
from protocol.midi_ports import MidiPortError, open_port
from protocol.realtime import DEFAULT_RT_PRIORITY, PRIORITY_FIFO, request_realtime
from protocol.timeline import Timeline

if TYPE_CHECKING:  # python-rtmidi is the optional `midi` extra: imported when a clock port opens
    import rtmidi

__all__ = ["CLOCK", "CONTINUE", "PPQN", "SONG_POSITION", "START", "STOP", "MidiClockError", "MidiClockOut"]

log = logging.getLogger("barcelona.midi_clock")

CLOCK, START, CONTINUE, STOP, SONG_POSITION = 0xF8, 0xFA, 0xFB, 0xFC, 0xF2
PPQN = 24
PULSES_PER_SIXTEENTH = 6  # Song Position counts "MIDI beats": sixteenth notes
MAX_SONG_POSITION = 0x3FFF  # 14 bits: 1024 bars of 4/4; later positions are sent as the largest
_JACK_DRAIN_S = 0.08  # rtmidi's JACK ringbuffer drains once per period; closing earlier garbles it



class MidiClockError(OSError):
    """The clock port could not be opened; an OSError so the conductor reports it like a busy socket."""


def _open(port: str | None, api: str, virtual: bool, client_name: str) -> tuple[rtmidi.MidiOut, str, str]:
    """Open (midi, api name, port name), found as every MIDI port is (protocol/midi_ports.py)."""
    if (error := midi_backend_error()) is not None:
        raise MidiClockError(f"conductor.midi_clock: {error}")
    try:
        opened = open_port("out", port=None if virtual else port, api=api, client_name=client_name,
                           virtual_name=(port or "clock") if virtual else "clock", what="midi_clock")
    except MidiPortError as exc:
        raise MidiClockError(str(exc)) from None
    return opened.client, opened.api_name, opened.port_name


def _song_position(sixteenths: int) -> list[int]:
    pos = min(max(sixteenths, 0), MAX_SONG_POSITION)
    return [SONG_POSITION, pos & 0x7F, (pos >> 7) & 0x7F]


class MidiClockOut:
    """Sends MIDI clock on one port, following the Timeline handed to `set_timeline`.

    `clock` must be the clock the Timeline's times are on (the conductor's time.monotonic).
    """

    def __init__(
        self,
        port: str | None = None,
        api: str = "auto",
        *,
        virtual: bool = False,
        client_name: str = "barcelona-clock",
        clock: Callable[[], float] = time.monotonic,
        spin_s: float = 0.0005,
        realtime: bool = True,
    ) -> None:
        if not virtual and not port:
            raise ValueError("port: name the MIDI port to send clock to, or set virtual=True")
        if spin_s < 0.0:
            raise ValueError(f"spin_s: must be >= 0, got {spin_s}")
        self.port, self.api, self.virtual, self.client_name = port, api, virtual, client_name
        self._clock, self._spin_s, self._realtime = clock, spin_s, realtime
        self._cond = threading.Condition(threading.Lock())
        self._io = threading.Lock()  # rtmidi ports are not documented thread-safe: one sender at a time
        self._timeline: Timeline | None = None
        self._closing = False
        self._running = False
        self._thread: threading.Thread | None = None
        self._midi: rtmidi.MidiOut | None = None
        self.api_name: str | None = None
        self.port_name: str | None = None
        self.fifo = False
        self.counts = {"clocks": 0, "starts": 0, "continues": 0, "stops": 0, "resyncs": 0}
        self.late_max_ms = 0.0

    # -- from any thread ----------------------------------------------------------------------------
    def start(self) -> MidiClockOut:
        """Open the port and start the timing thread; nothing is sent until a playing timeline arrives."""
        if self._thread is not None:
            return self
        self._midi, self.api_name, self.port_name = _open(self.port, self.api, self.virtual, self.client_name)
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="barcelona-midi-clock", daemon=True)
        self._thread.start()
        log.info("MIDI clock on %s (%s)", self.port_name, self.api_name)
        return self

    def set_timeline(self, timeline: Timeline | None) -> None:
        """Follow `timeline` from now on; the same value again is a no-op, so callers need not check."""
        with self._cond:
            if timeline == self._timeline:
                return
            self._timeline = timeline
            self._cond.notify()

    def locate(self, beat: float) -> bool:
        """While stopped, tell receivers where the transport stands (a DAW moving its playhead).

        Returns False and sends nothing while the clock runs: Song Position is only meaningful stopped.
        """
        with self._cond:
            if self._running or self._midi is None:
                return False
            self._send(_song_position(math.ceil(beat * 4 - 1e-9)))
            return True

    def close(self, timeout: float = 2.0) -> None:
        """Stop (a running transport gets its Stop first) and close the port."""
        thread = self._thread
        if thread is not None:
            with self._cond:
                self._closing = True
                self._cond.notify()
            thread.join(timeout)
            self._thread = None
        midi, self._midi = self._midi, None
        if midi is not None:
            if self.api_name == "jack":
                time.sleep(_JACK_DRAIN_S)
            midi.close_port()
            midi.delete()

    def __enter__(self) -> MidiClockOut:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        """True between Start/Continue and Stop: what a receiver believes."""
        return self._running

    def stats(self) -> dict[str, float | int | bool]:
        return {**self.counts, "late_max_ms": round(self.late_max_ms, 3), "fifo": self.fifo}

    # -- the timing thread --------------------------------------------------------------------------
    def _send(self, message: list[int]) -> None:
        assert self._midi is not None
        with self._io:
            self._midi.send_message(message)

    def _plan(self, tl: Timeline, pulse: int) -> tuple[float, list[list[int]], int]:
        """The next thing to send for a running transport: (due time, messages, pulse after sending)."""
        beat = pulse / PPQN
        if tl.stop_beat > 0.0 and beat >= tl.stop_beat:
            # A --bars run ends here: Stop on the bar line, not a pulse into a bar that never plays.
            return tl.time_at(tl.stop_beat), [[STOP]], -1
        return tl.time_at(beat), [[CLOCK]], pulse + 1

    def _run(self) -> None:
        self.fifo = self._realtime and request_realtime(DEFAULT_RT_PRIORITY) == PRIORITY_FIFO
        clock, spin, cond = self._clock, self._spin_s, self._cond
        pulse = 0  # the next pulse to send; pulse / PPQN is its beat
        ended: int | None = None  # epoch of a timeline whose stop_beat has been reached
        while True:
            with cond:
                if self._closing:
                    break
                tl, now = self._timeline, clock()
                if tl is None or not tl.playing or tl.epoch == ended:
                    if self._running:
                        self._stop()
                    cond.wait()
                    continue
                beat_now = tl.beat_at(now)
                if self._running and abs(pulse / PPQN - beat_now) > 1.0 and now >= tl.time_origin:
                    # Fell a beat behind (a stalled machine) or the timeline jumped: a burst of pulses
                    # would make receivers race, so stop, re-locate and continue on the next sixteenth.
                    self.counts["resyncs"] += 1
                    self._stop()
                if not self._running:
                    sixteenth = max(math.ceil(tl.beat_origin * 4 - 1e-9), math.ceil(beat_now * 4 - 1e-9))
                    if 0.0 < tl.stop_beat <= sixteenth / 4:  # (re)joined after the end: nothing to play
                        ended = tl.epoch
                        continue
                    pulse = sixteenth * PULSES_PER_SIXTEENTH
                    first = tl.time_at(pulse / PPQN)
                    lead = 60.0 / tl.tempo_at_beat(pulse / PPQN) / PPQN
                    go = START if sixteenth == 0 else CONTINUE
                    due, messages, after = max(now, first - lead), [_song_position(sixteenth), [go]], pulse
                else:
                    due, messages, after = self._plan(tl, pulse)
                wait = due - clock() - spin
                if wait > 0.0:
                    cond.wait(min(wait, 1.0))  # re-plan on wake: the timeline may have changed
                    continue
            while clock() < due:  # the last fraction of a millisecond, outside the lock
                pass
            with cond:
                if self._timeline is not tl or self._closing:
                    continue  # changed while spinning: plan again against the new one
                sent_at = clock()
                for m in messages:
                    self._send(m)
                self.late_max_ms = max(self.late_max_ms, (sent_at - due) * 1000.0)
                if messages[-1][0] == CLOCK:
                    self.counts["clocks"] += 1
                elif messages[-1][0] in (START, CONTINUE):
                    self.counts["starts" if messages[-1][0] == START else "continues"] += 1
                    self._running = True
                elif messages[-1][0] == STOP:  # reached stop_beat
                    self.counts["stops"] += 1
                    self._running = False
                    ended = tl.epoch
                pulse = after
        with cond:
            if self._running:
                self._stop()

    def _stop(self) -> None:
        """Called with the condition held."""
        self._send([STOP])
        self.counts["stops"] += 1
        self._running = False
