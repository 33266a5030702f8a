"""The notes due at one moment, made ready before it and written together at it (`Output.prepare`,
`Output.send`).

A beat often carries several events: the note-offs of one chord and the note-ons of the next. Sent
one by one, each paid the whole way through the output (checks, locking, building MIDI bytes or an
OSC message) after its due time, and the last of a chord went out that much later. So the timing
thread prepares a beat's events while it still waits for the beat: which messages go out (a key that
another note still holds gets no note-off), their bytes, their OSC bundle; what is left at the due
time is one locked call that writes them and keeps the ledger of sounding notes. The ledger changes
only as each write succeeds, as with a single `note_on` or `note_off`, so a write that fails never
leaves a sounding note unaccounted for.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from protocol.messages import Note

__all__ = ["Burst", "BurstItem", "BurstSender", "Message", "SendResult", "Write", "plan_messages"]

BurstItem = tuple[bool, Note, float | None]
"""One event of a burst: True for the note's note-on (False: its note-off), the note, its due time
(`time.perf_counter` seconds, or None: now)."""

Message = tuple[bool, int, int, int, float | None]
"""A message to write: note-on?, channel, pitch, velocity (0 on a note-off), due time."""

Write = tuple[Callable[[], object], int]
"""A prepared write and how many of the burst's messages it carries (an OSC bundle carries many)."""

SendResult = float | Exception
"""Per event: the time it went out (read right after the write that carried it), or why not."""


@dataclass(frozen=True, slots=True)
class Burst:
    """Events made ready to go out together: per event, its ledger key, whether it is a note-on and
    whether a message goes out for it (False: a note-off of a key another note still holds);
    `writes` carry the messages of the events that send one, in order."""

    keys: tuple[tuple[int, int], ...]
    ons: tuple[bool, ...]
    sends: tuple[bool, ...]
    writes: tuple[Write, ...]


def plan_messages(ledger: Counter[tuple[int, int]], items: Sequence[BurstItem]
                  ) -> tuple[list[Message], list[bool]]:
    """Which messages the events send, read off the ledger as it will stand when each goes out:
    a note-off of a key that an overlapping note still holds sends nothing (a synth would cut both
    voices), as `Output.note_off` decides for a single event."""
    held: dict[tuple[int, int], int] = {}
    messages: list[Message] = []
    sends: list[bool] = []
    for on, note, due in items:
        key = (note.channel, note.pitch)
        count = held.get(key, ledger.get(key, 0))
        if on:
            held[key] = count + 1
            messages.append((True, note.channel, note.pitch, note.velocity, due))
            sends.append(True)
        elif count > 1:
            held[key] = count - 1
            sends.append(False)
        else:
            held[key] = 0
            messages.append((False, note.channel, note.pitch, 0, due))
            sends.append(True)
    return messages, sends


class BurstSender:
    """`prepare` and `send`, the two steps of a burst, for `agents.outputs.base.Output` (which holds
    the lock, the ledger and the transport's `_writes`)."""

    _lock: threading.RLock
    _ledger: Counter[tuple[int, int]]
    _channels: set[int]
    _clock: Callable[[], float]
    last_sent_at: float | None
    sent_count: int

    def _require_open(self) -> None:
        raise NotImplementedError

    def _writes(self, messages: list[Message]) -> list[Write]:
        raise NotImplementedError

    def prepare(self, items: Sequence[BurstItem]) -> Burst:
        """Make committed notes' note-ons and note-offs ready to `send` together, from the timing
        thread before their due time (agents/outputs/burst.py says why). The Notes checked their
        fields when they were made."""
        with self._lock:
            self._require_open()
            messages, sends = plan_messages(self._ledger, items)
            writes = self._writes(messages)
        keys = tuple((note.channel, note.pitch) for _, note, _ in items)
        return Burst(keys, tuple(on for on, _, _ in items), tuple(sends), tuple(writes))

    def send(self, burst: Burst) -> list[SendResult]:
        """Write a prepared burst in one locked call; per event, the time right after the write
        that carried it (a held key's note-off: the time of the decision) or the exception that
        kept it in. The ledger follows each write that succeeded, as `play` and `release` keep it."""
        with self._lock:
            self._require_open()
            clock, ledger, channels = self._clock, self._ledger, self._channels
            writes = iter(burst.writes)
            results: list[SendResult] = []
            carried = 0
            outcome: SendResult = 0.0
            for key, on, sends in zip(burst.keys, burst.ons, burst.sends, strict=True):
                if not sends:
                    held = ledger[key]
                    if held > 1:
                        ledger[key] = held - 1
                    else:  # a stop emptied the ledger since prepare: the key is silent already
                        ledger.pop(key, None)
                    results.append(clock())
                    continue
                if carried == 0:
                    write, carried = next(writes)
                    try:
                        write()
                        outcome = clock()
                    except Exception as exc:
                        outcome = exc
                    else:
                        self.last_sent_at = outcome
                carried -= 1
                results.append(outcome)
                if isinstance(outcome, Exception):
                    continue
                self.sent_count += 1
                if on:
                    ledger[key] += 1
                    channels.add(key[0])
                else:
                    ledger.pop(key, None)
            return results
