"""The one contract every synth output honours: checked sends under a lock, and no stuck notes.

An agent process can die, restart, or be stopped mid-phrase. The synth on the other end keeps whatever
we told it last, so the output, not the caller, remembers which notes are sounding (the ledger) and
silences them on close. Subclasses carry four kinds of message (note-on, note-off, controller,
program) to their transport, each as its own call with its fields: MIDI bytes are made only for a
transport that carries MIDI bytes (a MIDI port, the null output's record), in the default hooks
here, never for an OSC host or FluidSynth, which would only take them apart again. The timing
thread sends a beat's notes as a burst (agents/outputs/burst.py): `_writes` makes a transport's
messages ready before their due time, so at it only the writes are left.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from numbers import Integral
from types import TracebackType
from typing import TypeVar

from agents.outputs.burst import BurstSender, Message, Write
from protocol.messages import Note

__all__ = [
    "CC_ALL_NOTES_OFF",
    "CC_ALL_SOUND_OFF",
    "CC_SUSTAIN",
    "CONTROL_CHANGE",
    "NOTE_OFF",
    "NOTE_ON",
    "PROGRAM_CHANGE",
    "Clock",
    "Output",
    "OutputClosedError",
    "OutputError",
    "check_int",
    "midi_bytes",
]

log = logging.getLogger(__name__)

NOTE_OFF = 0x80
NOTE_ON = 0x90
CONTROL_CHANGE = 0xB0
PROGRAM_CHANGE = 0xC0

CC_SUSTAIN = 64
CC_ALL_SOUND_OFF = 120
CC_ALL_NOTES_OFF = 123

Clock = Callable[[], float]
_O = TypeVar("_O", bound="Output")


class OutputError(Exception):
    """A synth output could not be opened or used (missing port, library, soundfont, host)."""


class OutputClosedError(OutputError, RuntimeError):
    """A send on an output that is not open: raised so a late scheduler tick is visible, not lost."""


def check_int(name: str, value: object, low: int, high: int) -> int:
    """Validate one MIDI field; numpy integers pass, bools do not (True is not a pitch)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    number = int(value)
    if not low <= number <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {number}")
    return number


def midi_bytes(message: Message) -> tuple[int, int, int]:
    """A burst's note message as MIDI bytes (a note-off as NOTE_OFF, velocity 0)."""
    on, channel, pitch, velocity, _ = message
    return (NOTE_ON | channel, pitch, velocity) if on else (NOTE_OFF | channel, pitch, 0)


def _check_due(due: object) -> float | None:
    if due is None:
        return None
    if isinstance(due, bool) or not isinstance(due, (int, float)):
        raise TypeError(f"due must be a float (perf_counter seconds) or None, got {type(due).__name__}")
    return float(due)


class Output(BurstSender):
    """Base for every synth output: validation, locking, the ledger of sounding notes, panic on close.

    Lifecycle: construct, ``open()`` (or ``with``), send, ``close()``. Opening silences the output's
    channels first, because a previous run of this agent may have died with notes held, then sends
    each channel's program and its ``controls`` (the part's volume and pan). Times are
    ``time.perf_counter()`` seconds (the clock the scheduler uses), so ``due`` and the returned send
    times can be compared directly.
    """

    #: True when the transport can carry a due time (OSC bundles), so a scheduler may send early.
    schedules_ahead: bool = False

    def __init__(
        self,
        *,
        channels: Iterable[int] | None = None,
        programs: Mapping[int, int] | None = None,
        controls: Mapping[int, Mapping[int, int]] | None = None,
        name: str | None = None,
        clock: Clock = time.perf_counter,
    ) -> None:
        chans = range(16) if channels is None else channels
        self._channels: set[int] = {check_int("channels", c, 0, 15) for c in chans}
        self._programs: dict[int, int] = {
            check_int("programs channel", c, 0, 15): check_int("program", p, 0, 127)
            for c, p in (programs or {}).items()
        }
        # channel -> [(controller, value)]: the part's mix (CC7 volume, CC10 pan), set after the program
        # because some synths reset controllers on a program change.
        self._controls: dict[int, list[tuple[int, int]]] = {
            check_int("controls channel", c, 0, 15): [
                (check_int("control", cc, 0, 127), check_int("control value", v, 0, 127))
                for cc, v in dict(ccs).items()
            ]
            for c, ccs in (controls or {}).items()
        }
        self._channels.update(self._programs)
        self._channels.update(self._controls)
        self.name = name or type(self).__name__
        self._clock = clock
        self._lock = threading.RLock()
        self._ledger: Counter[tuple[int, int]] = Counter()
        self._is_open = False
        self._was_opened = False
        self.last_sent_at: float | None = None
        self.sent_count = 0

    # ---- transport hooks (subclasses) -----------------------------------------------------------

    def _open_transport(self) -> None:
        """Acquire the port/socket/synth. Called once, under the lock."""

    def _close_transport(self) -> None:
        """Release what ``_open_transport`` acquired. Called once, under the lock."""

    def _note_on(self, channel: int, pitch: int, velocity: int, due: float | None) -> None:
        """Start a note on the transport; fields are checked and the lock is held."""
        self._send((NOTE_ON | channel, pitch, velocity), due)

    def _note_off(self, channel: int, pitch: int, due: float | None) -> None:
        """Release a note on the transport."""
        self._send((NOTE_OFF | channel, pitch, 0), due)

    def _control(self, channel: int, control: int, value: int, due: float | None) -> None:
        """Send a controller on the transport."""
        self._send((CONTROL_CHANGE | channel, control, value), due)

    def _program(self, channel: int, program: int) -> None:
        """Select a program on the transport."""
        self._send((PROGRAM_CHANGE | channel, program), None)

    def _writes(self, messages: list[Message]) -> list[Write]:
        """The writes that carry a burst's messages, with all their work but the write itself done
        now, before the due time. This default, one call of the message hooks per message, is right
        for any transport; a transport overrides it to make its bytes (or its bundle) here."""
        return [(partial(self._note_on, ch, k, vel, due) if on else partial(self._note_off, ch, k, due), 1)
                for on, ch, k, vel, due in messages]

    def _send(self, message: tuple[int, ...], due: float | None) -> None:
        """Deliver one raw MIDI message (status with channel, then data bytes): the one hook a
        transport of MIDI bytes implements; the others implement the four above instead."""
        raise NotImplementedError(f"{type(self).__name__} implements neither _send nor the message hooks")

    # ---- lifecycle -------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._is_open

    @property
    def channels(self) -> frozenset[int]:
        """Channels that all-notes-off covers: the configured ones plus any channel played since."""
        with self._lock:
            return frozenset(self._channels)

    def open(self: _O) -> _O:
        """Open the transport and start from silence on our channels; idempotent."""
        with self._lock:
            if self._is_open:
                return self
            if self._was_opened:
                raise OutputClosedError(f"{self.name}: closed outputs cannot be reopened; make a new one")
            self._open_transport()
            self._is_open = True
            self._was_opened = True
            try:
                self._panic_locked()
                for channel, program in sorted(self._programs.items()):
                    self._program(channel, program)
                    self._mark_sent()
                for channel, ccs in sorted(self._controls.items()):
                    for control, value in ccs:
                        self._control(channel, control, value, None)
                        self._mark_sent()
            except BaseException:
                self._is_open = self._was_opened = False  # a failed open may be retried
                self._close_transport()
                raise
        return self

    def close(self) -> None:
        """Release every sounding note, send all-notes-off, then close; safe to call twice."""
        with self._lock:
            if not self._is_open:
                return
            try:
                self._panic_locked()
            except Exception:
                # The transport may already be gone (port unplugged, synth quit): close it anyway.
                log.exception("%s: all-notes-off on close failed", self.name)
            finally:
                self._is_open = False
                self._ledger.clear()
                self._close_transport()

    def __enter__(self: _O) -> _O:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._is_open else "closed"
        return f"<{type(self).__name__} {self.name!r} {state} sounding={self.sounding()}>"

    # ---- sends -----------------------------------------------------------------------------------

    def note_on(self, channel: int, pitch: int, velocity: int, due: float | None = None) -> float:
        """Start a note; returns the perf_counter time right after the send, for lateness stats.

        ``due`` is the intended perf_counter time. Outputs that ``schedules_ahead`` stamp it on
        the message; the others send at once and ignore it (the scheduler waits for them).
        """
        channel = check_int("channel", channel, 0, 15)
        pitch = check_int("pitch", pitch, 0, 127)
        velocity = check_int("velocity", velocity, 1, 127)
        return self._start(channel, pitch, velocity, _check_due(due))

    def play(self, note: Note, due: float | None = None) -> float:
        """`note_on` for a committed Note from the timing thread: the Note checked its channel, pitch
        and velocity when it was made (protocol/messages.py), so they are not checked again on the
        way out, where every microsecond is lateness."""
        return self._start(note.channel, note.pitch, note.velocity, due)

    def release(self, note: Note, due: float | None = None) -> float:
        """`note_off` for a committed Note (see `play`)."""
        return self._stop(note.channel, note.pitch, due)

    def _start(self, channel: int, pitch: int, velocity: int, due: float | None) -> float:
        with self._lock:
            self._require_open()
            self._note_on(channel, pitch, velocity, due)
            sent = self._mark_sent()
            self._ledger[channel, pitch] += 1
            self._channels.add(channel)
            return sent

    def note_off(self, channel: int, pitch: int, due: float | None = None) -> float:
        """End a note; returns the send time.

        When the same pitch was started twice on a channel and is still held by the other note, the
        MIDI note-off is not sent (a synth would cut both voices): the key is released when the
        last overlapping note ends. A note-off for a key the ledger thinks is silent is still sent,
        because releasing a silent key is harmless and a stuck one is not. The return value is
        then the time of the decision.
        """
        channel = check_int("channel", channel, 0, 15)
        pitch = check_int("pitch", pitch, 0, 127)
        return self._stop(channel, pitch, _check_due(due))

    def _stop(self, channel: int, pitch: int, due: float | None) -> float:
        with self._lock:
            self._require_open()
            key = (channel, pitch)
            held = self._ledger[key]
            if held > 1:
                self._ledger[key] = held - 1
                return self._clock()
            self._ledger.pop(key, None)
            self._note_off(channel, pitch, due)
            return self._mark_sent()

    def control_change(self, channel: int, control: int, value: int, due: float | None = None) -> float:
        """Send a controller (sustain, volume, ...); returns the send time."""
        channel = check_int("channel", channel, 0, 15)
        control = check_int("control", control, 0, 127)
        value = check_int("value", value, 0, 127)
        due = _check_due(due)
        with self._lock:
            self._require_open()
            self._channels.add(channel)
            self._control(channel, control, value, due)
            return self._mark_sent()

    def program_change(self, channel: int, program: int) -> float:
        """Select a GM program (0-based, as on the wire: 0 = Acoustic Grand Piano)."""
        channel = check_int("channel", channel, 0, 15)
        program = check_int("program", program, 0, 127)
        with self._lock:
            self._require_open()
            self._programs[channel] = program
            self._channels.add(channel)
            self._program(channel, program)
            return self._mark_sent()

    def all_notes_off(self, *, sound_off: bool = False) -> float:
        """Silence our channels: note-offs for the ledger, sustain up, CC 123 (and CC 120 if asked).

        Explicit note-offs come first because some synths ignore CC 123, and sustain is lifted
        because CC 123 leaves pedal-held notes ringing. ``sound_off`` also cuts release tails.
        """
        with self._lock:
            self._require_open()
            return self._panic_locked(sound_off=sound_off)

    def sounding(self) -> int:
        """How many notes are sounding now (overlapping same-pitch notes count separately)."""
        with self._lock:
            return sum(self._ledger.values())

    def sounding_notes(self) -> dict[tuple[int, int], int]:
        """The ledger itself: (channel, pitch) -> how many overlapping notes hold that key."""
        with self._lock:
            return dict(self._ledger)

    # ---- internals -------------------------------------------------------------------------------

    def _require_open(self) -> None:
        if not self._is_open:
            raise OutputClosedError(f"{self.name}: output is not open")

    def _mark_sent(self) -> float:
        """Count a message that just went out; its send time, for lateness statistics."""
        sent = self._clock()
        self.last_sent_at = sent
        self.sent_count += 1
        return sent

    def _panic_locked(self, *, sound_off: bool = False) -> float:
        sent = self._clock()
        for channel, pitch in sorted(self._ledger):
            self._note_off(channel, pitch, None)
            sent = self._mark_sent()
        self._ledger.clear()
        for channel in sorted(self._channels):
            self._control(channel, CC_SUSTAIN, 0, None)
            self._mark_sent()
            if sound_off:
                self._control(channel, CC_ALL_SOUND_OFF, 0, None)
                self._mark_sent()
            self._control(channel, CC_ALL_NOTES_OFF, 0, None)
            sent = self._mark_sent()
        return sent
