"""The notes an agent has committed that the recorder has not yet acknowledged.

WHY: notes travel as fire-and-forget messages (a late note is worse than none for the players), so a
broker outage, or a conductor restarting, loses the ones sent meanwhile: the band played them, the
recording does not have them. The recorder acknowledges every note it holds (NoteAck); the agent keeps
each note until then and sends it again (NoteAgain, which only the recorder hears) once the conductor
is heard again, so the recording ends with every note that was played. Bounded: a conductor that never
answers costs at most `limit` notes of memory, and resends back off.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from protocol.messages import Note, note_key

__all__ = ["Unacked"]

LIMIT = 4096  # about three minutes of a busy part with no recorder at all
RESEND_AFTER_S = 1.0  # an ack comes within a broadcast period (0.2 s) plus the round trip
RESEND_MAX_S = 16.0  # the back-off's cap, for a recorder that hears but never acknowledges
HEARD_WITHIN_S = 1.0  # the conductor counts as reachable this long after its last message
BATCH = 64  # notes sent again per call: an outage's backlog goes out over a few heartbeats


@dataclass
class _Entry:
    note: Note
    sent_at: float
    wait_s: float = RESEND_AFTER_S


class Unacked:
    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._notes: OrderedDict[tuple[float, int], _Entry] = OrderedDict()
        self.resent = 0  # NoteAgain messages sent
        self.acked = 0
        self.evicted = 0  # pushed out unacknowledged by the limit: possibly missing from the recording
        self._heard_at: float | None = None

    def __len__(self) -> int:
        return len(self._notes)

    def add(self, note: Note, now: float) -> None:
        key = note_key(note.start_beat, note.pitch)
        self._notes[key] = _Entry(note, now)
        self._notes.move_to_end(key)
        while len(self._notes) > self.limit:
            self._notes.popitem(last=False)
            self.evicted += 1

    def ack(self, keys: Iterable[tuple[float, int]]) -> None:
        for key in keys:
            if self._notes.pop(key, None) is not None:
                self.acked += 1

    def heard_conductor(self, now: float) -> None:
        """Anything from the conductor over the bus: the path a resend takes is up."""
        self._heard_at = now

    def due(self, now: float) -> list[Note]:
        """The notes to send again now, oldest first; each waits twice as long before the next try.

        Nothing while the conductor is silent: an outage's notes wait, and go once it is back,
        rather than being thrown at a dead link (where a try would only be lost and its back-off spent).
        """
        if self._heard_at is None or now - self._heard_at > HEARD_WITHIN_S:
            return []
        out: list[Note] = []
        for entry in self._notes.values():
            if len(out) >= BATCH:
                break
            if now - entry.sent_at >= entry.wait_s:
                entry.sent_at, entry.wait_s = now, min(RESEND_MAX_S, entry.wait_s * 2)
                out.append(entry.note)
        self.resent += len(out)
        return out

    def stats(self) -> dict[str, int]:
        return {"pending": len(self._notes), "resent": self.resent, "acked": self.acked,
                "evicted": self.evicted}  # fmt: skip
