"""The listener's tuning (conductor/listener.py), and the template matcher's share of it
(conductor/harmony_match.py): one frozen set of numbers, so a bench run can try another whole."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Params:
    """The listener's tuning; defaults were chosen on bench/listening.py (Bach chorales)."""

    sounding: float = 1.0  # weight of a note sounding at the onset
    memory: float = 0.1  # weight of the recent past, per beat of sounding, before decay
    half_life: float = 1.0  # beats: how fast the past fades for chords
    window: float = 4.0  # beats of past considered for chords
    offbeat: float = 0.6  # metre: a note starting off the beat counts this much
    missing: float = 0.8  # penalty per template tone nobody plays
    bass_root: float = 0.3  # bonus when the lowest sounding note is the root
    bass_tone: float = 0.1  # the plain matcher's smaller bonus when it is another chord tone
    # the listener's bonus by the lowest note's place in the chord (chord_prior.bass_prior)
    bass_third: float = 0.2  # a first inversion is common
    bass_fifth: float = 0.0  # a six-four is rare
    bass_seventh: float = 0.1
    diatonic: float = 0.25  # prior for the commonest chords of the followed key
    bass_low: int = 55  # MIDI: a lowest note at or below G3 votes in full as a bass...
    bass_high: int = 67  # ...fading to no vote at G4: an alto or a melody alone is no bass
    function: float = 0.5  # how much rarer functions (iii, vii°) get less of it (chord_prior.key_prior)
    margin: float = 0.15  # a new chord must beat the current one by this much to win at once
    margin_one: float = 0.8  # ...and by this much when a single new pitch class is all that calls for it
    persist: int = 2  # ...or stay best this many decisions in a row
    key_half_life: float = 16.0  # beats: the profile match's memory
    key_scale_half_life: float = 2.0  # beats: the memory of notes outside a key's scale
    key_outside: float = 2.0  # penalty for the share of recent weight outside a key's scale
    key_margin: float = 0.04  # score a new key must gain over the current one
    key_persist: int = 2
    key_minor: float = 0.05  # K-S favours minor keys on short melodies: a major key wins a near tie
    key_modulation: float = 0.1  # share of recent notes outside the old key's scale that means a new one
    key_lookback: float = 2.0  # beats before a modulation the new key's memory starts
    key_switch_margin: float = 0.3  # score a key must gain over one whose scale still fits
    key_no_leading_tone: float = 0.1  # penalty for a minor key whose raised seventh is not heard
