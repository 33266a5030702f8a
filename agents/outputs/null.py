"""An output with no synth behind it, so an ensemble runs (and can be tested) on a machine without sound."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial

from agents.outputs.base import NOTE_OFF, NOTE_ON, Clock, Output, midi_bytes
from agents.outputs.burst import Message, Write

__all__ = ["NullOutput", "Sent"]


@dataclass(frozen=True, slots=True)
class Sent:
    """One message as it left the output: raw MIDI bytes, when it was meant for, when it went."""

    message: tuple[int, ...]
    due: float | None
    sent_at: float

    @property
    def kind(self) -> int:
        return self.message[0] & 0xF0

    @property
    def channel(self) -> int:
        return self.message[0] & 0x0F

    @property
    def is_note_on(self) -> bool:
        return self.kind == NOTE_ON and len(self.message) > 2 and self.message[2] > 0

    @property
    def is_note_off(self) -> bool:
        return self.kind == NOTE_OFF or (self.kind == NOTE_ON and self.message[2] == 0)


class NullOutput(Output):
    """Keeps the most recent sends in memory (bounded, so a long headless run cannot grow without end)."""

    def __init__(
        self,
        *,
        channels: Iterable[int] | None = None,
        programs: Mapping[int, int] | None = None,
        controls: Mapping[int, Mapping[int, int]] | None = None,
        name: str | None = None,
        keep: int = 100_000,
        clock: Clock = time.perf_counter,
    ) -> None:
        super().__init__(channels=channels, programs=programs, controls=controls, name=name, clock=clock)
        self._sent: deque[Sent] = deque(maxlen=keep)
        self._changed = threading.Condition(self._lock)

    def _send(self, message: tuple[int, ...], due: float | None) -> None:
        self._sent.append(Sent(message, due, self._clock()))
        self._changed.notify_all()

    def _writes(self, messages: list[Message]) -> list[Write]:
        """The bytes made now; at the due time each write only records its message."""
        return [(partial(self._send, midi_bytes(m), m[4]), 1) for m in messages]

    @property
    def sent(self) -> list[Sent]:
        """A snapshot of what was sent, oldest first."""
        with self._lock:
            return list(self._sent)

    def notes(self) -> list[Sent]:
        """Only the note-ons: what a listener would have heard start."""
        return [s for s in self.sent if s.is_note_on]

    def clear(self) -> None:
        with self._lock:
            self._sent.clear()

    def wait_for_notes(self, count: int, timeout: float) -> list[Sent]:
        """Block until ``count`` note-ons were sent; lets tests of a threaded scheduler avoid sleeps."""
        with self._changed:
            self._changed.wait_for(lambda: sum(s.is_note_on for s in self._sent) >= count, timeout)
            return [s for s in self._sent if s.is_note_on]
