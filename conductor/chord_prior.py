"""What a chord is likely to be before its notes are weighed: its function in the key, its inversion.

Two notes (a melody over a bass) fit several chords; these priors pick among them as a player's
harmony teacher would. They are small, so what sounds outweighs them wherever it says more.

Function: in a key, the tonic and dominant are the commonest chords, the subdominant, supertonic and
submediant next, the mediant rarest; a chord outside the key gets no prior at all.

Inversion: the lowest note is most often the root, often the third (a first inversion: I6, V6, ii6),
seldom the fifth (the six-four is kept for cadences and passing), sometimes the seventh (V4/2). A
diminished triad is the exception: it stands in first inversion (vii°6, ii°6), its root is seldom in
the bass, so for it the third takes the root's share and the root the third's. The lowest note
votes as a bass only as far as it is low: over a melody and an alto (no bass at all) the alto's
place in the chord says little, and a vote that read it as a bass would mislead.
"""

from __future__ import annotations

# The triad family of each template quality: the function tables name families.
FAMILY: dict[str, str] = {
    "": "maj", "7": "maj", "maj7": "maj", "m": "min", "m7": "min", "dim": "dim", "m7b5": "dim",
    "dim7": "dim", "sus4": "sus", "aug": "aug",
}  # fmt: skip

# Diatonic (interval above the tonic, quality): the key prior's vocabulary.
DIATONIC_MAJOR = frozenset({
    (0, ""), (0, "maj7"), (2, "m"), (2, "m7"), (4, "m"), (4, "m7"), (5, ""), (5, "maj7"), (7, ""),
    (7, "7"), (9, "m"), (9, "m7"), (11, "dim"), (11, "m7b5"), (11, "dim7"),
})  # fmt: skip
DIATONIC_MINOR = frozenset({
    (0, "m"), (0, "m7"), (2, "dim"), (2, "m7b5"), (3, ""), (3, "maj7"), (5, "m"), (5, "m7"), (7, ""),
    (7, "7"), (8, ""), (8, "maj7"), (10, ""), (10, "7"), (11, "dim"), (11, "dim7"),
})  # fmt: skip

# How common each diatonic function is, the commonest 1 (tiers from harmony textbooks, not fitted):
# I and V; IV and ii; vi; vii°; iii. In minor: i and V; iv; ii°, VI; III, vii°; VII.
FUNCTION_MAJOR: dict[tuple[int, str], float] = {
    (0, "maj"): 1.0, (7, "maj"): 1.0, (5, "maj"): 0.7, (2, "min"): 0.7, (9, "min"): 0.6,
    (11, "dim"): 0.5, (4, "min"): 0.2,
}  # fmt: skip
FUNCTION_MINOR: dict[tuple[int, str], float] = {
    (0, "min"): 1.0, (7, "maj"): 1.0, (5, "min"): 0.7, (2, "dim"): 0.6, (8, "maj"): 0.6,
    (3, "maj"): 0.5, (11, "dim"): 0.5, (10, "maj"): 0.4,
}  # fmt: skip


def key_prior(root: int, quality: str, tonic: int, minor: bool, weight: float, function: float) -> float:
    """The prior of a chord in a key: `weight` for the commonest functions, less for the rarer ones.

    `function` is how much the function's rank matters: 0 gives every diatonic chord `weight`, 1 scales
    it by the table's share.
    """
    degree = (root - tonic) % 12
    if (degree, quality) not in (DIATONIC_MINOR if minor else DIATONIC_MAJOR):
        return 0.0
    share = (FUNCTION_MINOR if minor else FUNCTION_MAJOR).get((degree, FAMILY[quality]), 0.0)
    return weight * (1.0 - function + function * share)


def bass_prior(
    root: int,
    intervals: tuple[int, ...],
    quality: str,
    bass: int | None,
    votes: tuple[float, float, float, float],
) -> float:
    """The lowest note's vote for a chord by its place in it: `votes` for root, third, fifth, seventh."""
    if bass is None:
        return 0.0
    place = (bass - root) % 12
    if place not in intervals:
        return 0.0
    index = min(intervals.index(place), 3)  # a tone above the seventh does not occur in the templates
    if quality == "dim" and index < 2:  # the diminished triad's root and third trade shares
        index = 1 - index
    return votes[index]


def bass_weight(pitch: int | None, low: int, high: int) -> float:
    """How far the lowest sounding note (MIDI) is a bass: 1 at or below `low`, 0 at or above `high`."""
    if pitch is None:
        return 0.0
    return min(1.0, max(0.0, (high - pitch) / (high - low)))
