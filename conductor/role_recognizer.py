"""The player's roles with hysteresis, judged at each bar line and part-way through a bar.

Pure logic, no I/O and no clock, like the chord listener: the caller feeds the player's notes in
beats as it hears them (at note-on, then whole at note-off) and asks for a decision at each bar
line. A decision uses only what sounded before it (a note still held counts up to the bar line);
what a bar reads as is conductor/bar_parts.py's.

Hysteresis (`RoleRecognizer`): a role is the player's once it is heard for `take_bars` bars running,
and stays the player's until `return_bars` bars pass without it, so a rest or a fill does not bring
the agent back mid-phrase. Judged only at bar lines, a part would be taken a bar late: the agents
have committed past the bar line by then. So the bar is also judged part-way through, at the last
moment a change still reaches the agents before the next bar line: a part beyond doubt by then
(`early_roles`, on more evidence than a whole bar needs) is taken for that bar line, and dropped
at it if the whole bar does not bear it out; a part about to be handed back with no trace of it so
far is handed back there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conductor.bar_parts import MAX_HELD_BARS, PlayedNote, bar_roles, early_roles, heard_end, traces
from protocol.instruments import ROLES, Role

MAX_NOTES = 1024  # the most recent notes kept: a flood of notes cannot slow the conductor's loop
EARLY_SHARE = 0.5  # ... heard over at least this share of the bar


@dataclass
class RoleRecognizer:
    """The player's roles with hysteresis, decided at each bar line from the bar before it (and
    part-way through a bar where the evidence is already beyond doubt: `decide_early`)."""

    beats_per_bar: int
    return_bars: int = 2
    take_bars: int = 1
    roles: frozenset[Role] = frozenset()
    playing: bool = False  # anything heard, with the same hysteresis (for a fixed `human.role`)
    last_bar: frozenset[Role] = frozenset()
    _seen: dict[str, int] = field(default_factory=dict)  # role -> bars heard in a row
    _missed: dict[str, int] = field(default_factory=dict)  # role -> bars not heard in a row
    _notes: list[PlayedNote] = field(default_factory=list)
    _provisional: set[str] = field(default_factory=set)  # taken part-way through the bar now playing
    unconfirmed: int = 0  # parts taken part-way through a bar that the whole bar did not play

    # -- input ------------------------------------------------------------------------------------
    def note_on(self, pitch: int, velocity: int, beat: float, channel: int) -> None:
        """A note at its onset; it sounds until its whole `note` (or `note_off`) comes."""
        if velocity <= 0:
            self.note_off(pitch, beat)
        elif 0 <= pitch <= 127:
            self._keep(PlayedNote(beat, None, pitch, velocity, channel))

    def _keep(self, note: PlayedNote) -> None:
        self._notes.append(note)
        if len(self._notes) > MAX_NOTES:
            del self._notes[: len(self._notes) - MAX_NOTES]

    def note(self, start: float, duration: float, pitch: int, velocity: int, channel: int) -> None:
        """A whole note: from a file, or a live note at its note-off (closing its note-on)."""
        if duration <= 0 or not 0 <= pitch <= 127:
            return
        for n in self._notes:
            if n.end is None and n.pitch == pitch and abs(n.start - start) < 1e-6:
                n.end = start + duration
                return
        self._keep(PlayedNote(start, start + duration, pitch, velocity, channel))

    def note_off(self, pitch: int, beat: float) -> None:
        for n in reversed(self._notes):
            if n.end is None and n.pitch == pitch:
                n.end = max(beat, n.start)
                return

    # -- decisions --------------------------------------------------------------------------------
    def decide(self, bar_line: float) -> frozenset[Role]:
        """The player's roles after the bar that ends at `bar_line` (call once per bar line). A part
        taken part-way through this bar (`decide_early`) stays only if the whole bar plays it."""
        bpb = self.beats_per_bar
        heard = bar_roles(self._notes, bar_line - bpb, bar_line)
        self.last_bar = heard
        held = set(self.roles)
        for key in (*ROLES, "any"):
            seen = bool(heard) if key == "any" else key in heard
            if seen:
                self._seen[key] = self._seen.get(key, 0) + 1
                self._missed[key] = 0
            else:
                self._missed[key] = self._missed.get(key, 0) + 1
                self._seen[key] = 0
            on = self.playing if key == "any" else key in held
            if not on and self._seen[key] >= self.take_bars:
                on = True
            elif on and (self._missed[key] >= self.return_bars or (key in self._provisional and not seen)):
                on = False
                self.unconfirmed += key in self._provisional and key != "any"
            if key == "any":
                self.playing = on
            elif on:
                held.add(key)  # type: ignore[arg-type]
            else:
                held.discard(key)
        self.roles = frozenset(held)
        self._provisional = set()
        horizon = bar_line - (MAX_HELD_BARS + 1) * bpb
        self._notes = [n for n in self._notes if heard_end(n, bar_line, MAX_HELD_BARS * bpb) > horizon]
        return self.roles

    def decide_early(self, bar_start: float, now: float) -> frozenset[Role]:
        """Part-way through the bar that began at `bar_start`: a part already beyond doubt
        (`early_roles`) is taken now, for the bar line that ends this bar, and confirmed or dropped
        there; a part about to be given back (missing for `return_bars` - 1 bars) with no trace of
        it so far in this bar is given back now. Less than half a bar heard (`EARLY_SHARE`) is too
        little to judge: nothing changes."""
        if now - bar_start < EARLY_SHARE * self.beats_per_bar:
            return self.roles
        held = set(self.roles)
        if self.take_bars <= 1:  # a part taken on more than a bar's hearing waits for its bar lines
            heard = early_roles(self._notes, bar_start, now)
            for role in heard - held:
                held.add(role)
                self._provisional.add(role)
            if heard and not self.playing:
                self.playing = True
                self._provisional.add("any")
        trace = traces(self._notes, bar_start, now)
        for key in (*ROLES, "any"):
            on = self.playing if key == "any" else key in held
            if (on and key not in trace and key not in self._provisional
                    and self._missed.get(key, 0) >= self.return_bars - 1):
                if key == "any":
                    self.playing = False
                else:
                    held.discard(key)
        self.roles = frozenset(held)
        return self.roles
