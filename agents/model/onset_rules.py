"""Where a part's next onset may fall, and whether the model's answer there speaks for the part.

The decoder (agents/model/decoder.py) masks a note's time tokens with these rules before it samples
them: after the stream's last row in SkyTNT's order (time, then track), at or after the commit point
and past a time the model gave another part, on the part's onset grid, in a slot the part still has a
hand free for, and, where these start it inside a beat (a slot closed to re-strikes among them), with
the odds of that beat's earlier slots taken out. Kept apart from the sampling loop because each is a
rule about musical time, tested on its own.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from agents.model.checks import finite
from agents.model.live_context import _RANKS

if TYPE_CHECKING:
    from agents.model.decode_bias import DensityBias
    from agents.model.decode_params import DecodeParams
    from agents.model.live_context import LiveContext
    from agents.model.runtime import ModelRuntime
    from agents.model.vocab import Vocab
    from agents.model.voicing import Voicing

__all__ = ["MAX_DELTA", "OnsetRules"]

MAX_DELTA = 127  # largest time1 value: beats a single event can jump


class OnsetRules:
    """The Generator's rules for a note's time (a mixin: the state is the Generator's)."""

    context: LiveContext
    vocab: Vocab
    runtime: ModelRuntime
    track: int
    owner: int
    keep_order: bool
    onset_grid: int
    voicing: Voicing | None
    last_row: np.ndarray
    _time1: np.ndarray
    _time2: np.ndarray
    _after_slot: int
    _density_bias: DensityBias

    def _ordered(self, row: np.ndarray) -> bool:
        """Does the track the model names first at this draw's time say whether this part plays
        then? Only where the stream up to it keeps SkyTNT's order: the draw lies after the last
        event, or at its slot with that event's track not above this part's. Where it does not (the
        setup rows at a piece's start, or a later part's note already at that slot), the model
        expects only later tracks there and would shut the part out of that moment."""
        last = self.context.last_event()
        if last is None:
            return False
        slot = self.context.slot_of_next(row)
        return slot > last[0] or (slot == last[0] and last[1] <= self.track)

    def _time1_bias_from(
        self, i: int, t1: int, first: int, params: DecodeParams, bias: np.ndarray | None, n: int
    ) -> np.ndarray:
        """The time1 bias that keeps, for time1 = t1 (the earliest allowed, at index 0), only the odds
        of an onset at or after time2 = ``first`` (on the part's grid) in that beat.

        The rules can start a part's next onset inside a beat the model may have wanted earlier: a
        slot closed to re-strikes, a slot the model gave a later track (the piano's next note comes
        after the fourth chorale voice the model expects there), or a commit point inside the beat.
        The model's odds of time1 = t1 still hold its wish for the slots before ``first``; drawn as
        they are, they would be crammed into the rest of the beat (time2 is masked to it), an
        off-beat onset the model did not want: every re-plan put a note on its first slot, and the
        band's horns played eighths almost throughout.
        With this the next event follows the model's own P(time | not before ``first``), as
        rejecting every earlier draw would, for one extra token call."""
        out = np.zeros(n, np.float32) if bias is None else bias.astype(np.float32, copy=True)
        g = self.onset_grid
        if first > 16 - g:
            out[0] = -np.inf  # no onset left on the grid in that beat
            return out
        probe = self.last_row[: i + 1].copy()
        probe[i] = self._time1[t1]
        # the agent's temperature, though only the raw logits are read here: a rewritten token graph
        # then keeps its temperature input instead of switching it back and forth
        logits = self.runtime.token_logits(probe, temperature=params.temperature)[0]
        logits = logits[self._time2[0::g]].astype(np.float64)
        density = self._density_bias(params.density, 2, 0)
        if density is not None:
            logits += density[::g]
        logits /= params.temperature
        p = np.exp(logits - logits.max())
        later = float(p[first // g:].sum() / p.sum())
        # the sampler adds a bias to the raw logits before the temperature: times the temperature,
        # the tempered odds of that beat are multiplied by ``later`` itself
        out[0] += params.temperature * math.log(later) if later > 0 else -np.inf
        return out

    def _min_slot(self, rank: int, end16: int, not_before_beat: float | None) -> int:
        """Earliest slot the new event may take: after the last row in sort order, and at or after
        the commit point."""
        ctx = self.context
        lowest = end16
        last = len(ctx) - 1
        if self.keep_order and last >= ctx.n_prefix:
            last_slot = ctx.slot_of(ctx.beat_of_row(last))
            last_row = ctx.rows[last]
            last_key = (
                int(last_row[3]) - self.vocab.param_base["track"],
                _RANKS[self.vocab.event_names[int(last_row[0])]],
            )
            lowest = max(lowest, last_slot if (self.track, rank) >= last_key else last_slot + 1)
        if not_before_beat is not None:
            lowest = max(lowest, ctx.slot_of(finite("not_before_beat", not_before_beat)))
        if (self._after_slot + 1) // 16 - end16 // 16 <= MAX_DELTA:  # in one time token's reach
            lowest = max(lowest, self._after_slot + 1)
        g = self.onset_grid
        lowest = -(-lowest // g) * g  # the first slot on the part's onset grid
        if self.voicing is not None:
            # a slot holding as many of this part's notes as it has hands (or one, for a horn) is full
            while ctx.notes_owned_at(lowest, self.owner) >= self.voicing.polyphony:
                lowest += g
        if lowest // 16 - end16 // 16 > MAX_DELTA:
            raise ValueError(
                f"not_before_beat {not_before_beat} is more than {MAX_DELTA} beats after "
                "the context's last event: one time1 token cannot reach it"
            )
        return lowest
