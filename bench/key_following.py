"""How soon the conductor's listener follows a modulation: a synthetic melody in one key, then another.

The melody outlines I-IV-V-I in eighth notes, two bars per chord, first in one key and then the same
in the new one; what is measured is how many bars after the modulation the followed key becomes the
new one (first, and for good), and how steadily each key is held.
"""

from __future__ import annotations

from conductor.listener import Listener

# An eighth-note melody outlining I IV V I in C major, two bars per chord (scale degrees as semitones).
_MELODY_C = [
    [0, 4, 7, 4, 12, 11, 9, 7, 5, 4, 2, 4, 0, 2, 4, 5],
    [5, 9, 12, 9, 5, 4, 2, 0, 9, 7, 5, 4, 2, 4, 5, 9],
    [7, 11, 14, 11, 7, 5, 2, 5, 11, 9, 7, 5, 2, 0, 11, 2],
    [0, 4, 7, 12, 11, 7, 4, 2, 0, 2, 4, 7, 4, 2, 0, 0],
]


def key_follow_bars(
    from_tonic: int, to_tonic: int, minor_from: bool = False, minor_to: bool = False
) -> float:
    """Bars after the modulation until the followed key is the new one for good (inf if never)."""
    return key_follow(from_tonic, to_tonic, minor_from, minor_to)["settled"]


def key_follow(
    from_tonic: int, to_tonic: int, minor_from: bool = False, minor_to: bool = False
) -> dict[str, float]:
    """Key following over an 8-bar melody then the same melody in the new key.

    `first`: bars after the modulation until the new key is first followed; `settled`: until it is
    followed for good (inf if it never settles); `held`: the share of beats after the modulation's
    first bar heard in the new key; `steady`: the share of beats of the first melody, after its first
    bar, heard in its own key.
    """

    def melody(tonic: int, minor: bool) -> list[int]:
        flat = [d for bar in _MELODY_C for d in bar]
        if minor:  # the natural minor melody with its leading tone raised (harmonic minor)
            flat = [d - 1 if d % 12 in (4, 9) else d for d in flat]
        return [60 + tonic + d for d in flat]

    from conductor.harmony_match import key_name

    bpb = 4
    first, second = melody(from_tonic, minor_from), melody(to_tonic, minor_to)
    pitches = first + second
    listener = Listener(beats_per_bar=bpb)
    change = len(first) * 0.5
    target = key_name(to_tonic, minor_to)
    keys: list[tuple[float, str]] = []
    for i, p in enumerate(pitches):
        beat = i * 0.5
        if beat == int(beat):
            heard = listener.decide(beat)
            keys.append((beat, heard.key if heard else ""))
        listener.note(beat, 0.5, p, 80)
    settled = first_seen = None
    for beat, key in keys:
        if beat < change:
            continue
        if key == target and first_seen is None:
            first_seen = beat
        if key == target and settled is None:
            settled = beat
        elif key != target:
            settled = None
    after = [k for b, k in keys if b >= change + bpb]
    own = [k for b, k in keys if bpb <= b < change]
    return {
        "first": (first_seen - change) / bpb if first_seen is not None else float("inf"),
        "settled": (settled - change) / bpb if settled is not None else float("inf"),
        "held": sum(k == target for k in after) / len(after),
        "steady": sum(k == key_name(from_tonic, minor_from) for k in own) / len(own),
    }


MODULATIONS = [
    ("C -> Eb", 0, 3, False, False),
    ("C -> G", 0, 7, False, False),
    ("C -> Am", 0, 9, False, True),
    ("Eb -> E", 3, 4, False, False),
]
