"""An agent making room for the player: no new note while the player holds its part.

The conductor says which beats (bar lines) a part yields between (RoleState). The agent then
starts no note in them; a note already started ends as it was planned, so nothing is cut and
nothing hangs. The part's engine is told it is muted for the time, as a muted part is: the model
draws nothing but goes on hearing the band and the player, so it comes back in the harmony and the
style the others played meanwhile. It is unmuted `lead_beats` before the return, so by the bar
line the model has drawn ahead again and the part re-enters on the beat, not behind.

A message that comes late (its bar line already committed) takes effect at the first bar line
not yet played: a part never stops or starts mid-bar because a packet was slow.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from protocol.messages import AgentParams, RoleState


class Yielding:
    def __init__(self, name: str, beats_per_bar: int, lead_beats: float) -> None:
        self.name = name
        self.bpb = beats_per_bar
        self.lead_beats = lead_beats
        self.announced: tuple[float, float | None] | None = None  # the conductor's latest item
        self.start: float | None = None  # effective: no note starts in [start, until)
        self.until: float | None = None
        self.seen_until = -math.inf  # the latest note start this part has played or left out
        self.epoch = -1
        self.dropped = 0  # notes the engine planned in the yielded bars and the part left out

    def _bar_after(self, beat: float) -> float:
        """The first bar line after `beat` (a note there may still be decided)."""
        return float(math.floor(beat / self.bpb + 1e-9) + 1) * self.bpb

    def update(self, msg: RoleState) -> None:
        """The conductor's RoleState; repeated messages change nothing."""
        if msg.epoch == self.epoch:
            return
        if 0 < msg.epoch < self.epoch:
            return  # an older copy that arrived late: a later decision already stands
        item = msg.yields_of().get(self.name)  # a malformed message raises here and changes nothing
        if msg.epoch < self.epoch:
            self.seen_until = -math.inf  # a restarted conductor counts from epoch 0 and beat 0 again
        self.epoch = msg.epoch
        if item == self.announced:
            return
        before, self.announced = self.announced, item
        if item is None:
            # no longer yielding: back at the next bar line still to play (at once if not begun)
            if self.start is not None and self.start <= self.seen_until:
                if self.until is None:
                    self.until = self._bar_after(self.seen_until)
            else:
                self.start = self.until = None
            return
        begin, until = item
        if before is None or before[0] != begin or self.start is None:
            late = self.seen_until >= begin
            self.start = self._bar_after(self.seen_until) if late else begin
        if until is None:
            self.until = None
        else:
            self.until = self._bar_after(self.seen_until) if self.seen_until >= until else until
            self.until = max(self.until, self.start)

    def yielded_at(self, beat: float) -> bool:
        return self.start is not None and self.start <= beat and (self.until is None or beat < self.until)

    def plays(self, start_beat: float) -> bool:
        """Whether a note starting at `start_beat` is played; call for every note, in order."""
        self.seen_until = max(self.seen_until, start_beat)
        if self.yielded_at(start_beat):
            self.dropped += 1
            return False
        return True

    def params(self, params: AgentParams, window_start: float) -> AgentParams:
        """The parameters the engine plans the window from: muted while yielded, until `lead_beats`
        before the return so the model has drawn the bar it comes back in."""
        if params.muted or self.start is None or window_start < self.start:
            return params
        if self.until is not None and window_start >= self.until - self.lead_beats:
            return params
        return replace(params, muted=True)

    def stats(self) -> dict[str, Any]:
        return {"from": self.start, "until": self.until, "dropped": self.dropped}
