"""How much of the time to its next note a part's note sounds: a player's articulation.

The model's note lengths, cut at the part's next onset by the voicing rules, ran every note into the
next (in 16 bars of the default ensemble, 83 of the bass's 90 notes and 156 of the piano's 165): a
bass that never lifts a finger and a piano held down like an organ. A bassist mutes each note just
before the next, so the line stays clear and the time sits in the gaps; a comping pianist plays the
chord on the beat nearly full and the off-beat one short, a stab that leaves the rhythm its space;
a horn tongues a legato line. So a note that would sound up to the part's next onset ends a little
before it: a gap of a share of the time between the two onsets (the role's, with a seeded spread),
within bounds in beats, as a player's release takes about the same time whatever the note's value.
A note the model ended earlier keeps its length: that rest was its choice. Everything is a
function of the beats and the seed, so the same performance gets the same lengths on any machine.
"""

from __future__ import annotations

import hashlib

from agents.dynamics import metric_position

__all__ = ["GAP", "OFFBEAT_STAB", "SPREAD", "sounding_length"]

# role -> (share of the time to the next onset left silent, the least and the most gap in beats):
# the bass detached, comping nearly full on the beat (its off-beats: OFFBEAT_STAB below), a horn legato
GAP = {"bass": (0.15, 0.05, 0.2), "comp": (0.1, 0.04, 0.2), "melody": (0.06, 0.03, 0.12)}
OFFBEAT_STAB = 0.5  # a comping part's off-beat chord sounds about half the time to its next onset
SPREAD = 0.05  # +- share of the time to the next onset, seeded per note


def sounding_length(role: str, start: float, to_next: float, *, beats_per_bar: int, seed: int,
                    pitch: int, together: int = 1) -> float:
    """How long a note starting at ``start`` sounds when the part's next onset is ``to_next`` beats
    later and the note would otherwise run into it; ``together``: the notes the part strikes with it
    (an off-beat chord is a stab, a single off-beat note of a comping line is not)."""
    if role not in GAP or to_next <= 0:
        return to_next
    share, least, most = GAP[role]
    if role == "comp" and together > 1 and metric_position(start, beats_per_bar) in ("eighth", "finer"):
        share, most = OFFBEAT_STAB, to_next * OFFBEAT_STAB + most
    digest = hashlib.blake2b(f"art:{seed}:{round(start * 64)}:{pitch}".encode(), digest_size=4).digest()
    share += (int.from_bytes(digest, "little") / 2**32 * 2 - 1) * SPREAD
    gap = min(max(share * to_next, least), most, to_next / 2)
    return to_next - gap

