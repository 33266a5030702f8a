"""Chord symbols and the chord plan: the harmony that conductor and agents must agree on.

pychord does the bulk of symbol parsing; a small alias table in front of it covers what it lacks or
misreads (`ø7`, `°7`, `+`, `7alt`, `C6/9` read as a slash chord, `-7`, `Δ`), and trailing alterations
it has no entry for (`m7b9`, `7#5#9`, `maj9#11`) are applied to its base quality. Conventions where
books differ: `13` and `maj13` omit the 11th (an avoid note over a major third), `11` omits the 3rd
(C11 ≈ C9sus4), and a root is read greedily (`Cb5` is C-flat power chord, `C#11` is C-sharp eleven).
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from pychord import QualityManager

NO_PITCH_CLASS = -1
"""Root and bass of N.C.: compares unequal to every pitch class, so bass logic simply finds no root."""

NO_CHORD_SYMBOLS = frozenset({"N.C.", "N.C", "NC", "n.c.", "nc"})
MAX_SYMBOL_LEN = 32
MAX_BARS = 4096  # cap on an expanded plan, so `x9999` in a control message cannot eat memory

_NOTE_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTAL = {"#": 1, "♯": 1, "b": -1, "♭": -1}
_ROOT_RE = re.compile(r"([A-G])([#b♯♭]{0,2})")
_KEY_RE = re.compile(r"([A-G])([#b]?)(m?)")
_REPEAT_RE = re.compile(r"x\d{1,4}")

# Whole-quality aliases, applied after minor / major-seventh spellings are normalised.
# fmt: off
_ALIASES = {
    "M": "", "maj": "", "Maj": "", "Ma": "", "ø": "m7b5", "ø7": "m7b5", "°": "dim", "o": "dim",
    "°7": "dim7", "o7": "dim7",
    "+": "aug", "+7": "7#5", "7+": "7#5", "aug7": "7#5", "+maj7": "maj7#5", "alt": "7alt",
    "6/9": "69", "6add9": "69", "m6/9": "m69", "m6add9": "m69", "sus": "sus4", "7sus": "7sus4",
    "9sus": "9sus4", "13sus": "13sus4", "2": "add9", "add2": "add9", "mmaj9": "mmaj7add9",
}
# Qualities pychord lacks or voices against common usage (semitones above the root).
_OWN_QUALITIES: dict[str, tuple[int, ...]] = {
    "7alt": (0, 4, 10), "11": (0, 7, 10, 14, 17), "13": (0, 4, 7, 10, 14, 21), "7sus2": (0, 2, 7, 10),
    "maj13": (0, 4, 7, 11, 14, 21), "m13": (0, 3, 7, 10, 14, 17, 21), "13sus4": (0, 5, 7, 10, 14, 21),
}
# Alteration -> (semitones added, pitch class it displaces or None).
_ALTERATIONS = {
    "b5": (6, 7), "#5": (8, 7), "b9": (13, 2), "#9": (15, 2), "#11": (18, 5), "b13": (20, 9),
    "add9": (14, None), "add11": (17, None), "add13": (21, None),
}
# fmt: on
_ALTERATION_RE = re.compile(r"(b5|#5|b9|#9|#11|b13|add9|add11|add13)$")


class ChordError(ValueError):
    """An unknown chord symbol; `bar` (1-based, as musicians count) is set when it came from a plan."""

    def __init__(self, symbol: str, bar: int | None = None, reason: str = "unknown chord symbol") -> None:
        where = f" in bar {bar}" if bar is not None else ""
        super().__init__(f"{reason} {symbol!r}{where}")
        self.symbol = symbol
        self.bar = bar
        self._reason = reason

    def __reduce__(self) -> tuple[type[ChordError], tuple[str, int | None, str]]:
        # Errors cross process boundaries (launcher, agents): keep them picklable.
        return (ChordError, (self.symbol, self.bar, self._reason))


class PitchRole(enum.Enum):
    """How a pitch sits against a chord; the decoder turns it into a logit bias."""

    CHORD_TONE = "chord_tone"
    TENSION = "tension"
    AVOID = "avoid"
    FREE = "free"  # no chord sounds (N.C.): the bias should leave the pitch alone


@dataclass(frozen=True, slots=True)
class Chord:
    """A parsed symbol as pitch classes, so agents never re-parse text in the decode loop.

    `tones` are the pitch classes the symbol names (root first, then in stacking order, a slash bass
    appended since it sounds); `tensions` are the further pitch classes that colour it without
    clashing. N.C. has empty tones and `NO_PITCH_CLASS` as root and bass.
    """

    symbol: str
    root: int
    bass: int
    tones: tuple[int, ...]
    tensions: tuple[int, ...]
    quality: str

    def __post_init__(self) -> None:
        for name, lo in (("root", NO_PITCH_CLASS), ("bass", NO_PITCH_CLASS), ("tones", 0), ("tensions", 0)):
            value = getattr(self, name)
            items = (value,) if lo < 0 else value if type(value) is tuple else (None,)
            if not all(type(v) is int and lo <= v <= 11 for v in items):
                raise ValueError(f"{name}: expected pitch classes {lo}..11, got {value!r}")

    @property
    def is_no_chord(self) -> bool:
        return not self.tones


def _root_pc(letter: str, accidentals: str) -> int:
    return (_NOTE_PC[letter] + sum(_ACCIDENTAL[a] for a in accidentals)) % 12


def _normalise(quality: str) -> str:
    """Map the many spellings of one quality onto one name, so tables need one entry each."""
    q = quality.replace("♯", "#").replace("♭", "b").replace("(", "").replace(")", "").replace(",", "")
    minor = ""
    for prefix in ("min", "mi", "-", "m"):
        if q.startswith(prefix) and not q.startswith("maj") and not q.startswith("ma"):
            minor, q = "m", q[len(prefix) :]
            break
    if minor and q.startswith("/"):  # m/maj7
        q = q[1:]
    q = re.sub(r"^(Maj|Ma|ma|M|j|Δ)(?=\d)", "maj", q)
    q = re.sub(r"^Δ(?!\d)", "maj7", q)
    q = minor + q[:1] + re.sub(r"\+(?=\d)", "#", re.sub(r"-(?=\d)", "b", q[1:]))
    return _ALIASES.get(q, q)


def _intervals(quality: str) -> tuple[int, ...] | None:
    """Intervals above the root; a natural 11 over a major third is kept only where it is named."""
    found = _lookup(quality)
    if found is None or 4 not in found or "add11" in quality or "add4" in quality or quality == "4":
        return found
    return tuple(i for i in found if i != 17)


def _lookup(quality: str) -> tuple[int, ...] | None:
    """pychord's table, our own entries, then trailing alterations applied to a base quality."""
    if quality in _OWN_QUALITIES:
        return _OWN_QUALITIES[quality]
    try:
        return tuple(QualityManager().get_quality(quality).components)
    except ValueError:
        pass
    match = _ALTERATION_RE.search(quality)
    if match is None:
        return None
    base = _lookup(_ALIASES.get(quality[: match.start()], quality[: match.start()]))
    if base is None:
        return None
    added, displaced = _ALTERATIONS[match.group(1)]
    kept = tuple(i for i in base if displaced is None or i % 12 != displaced)
    return (*kept, added) if added % 12 not in {i % 12 for i in kept} else kept


def _tension_intervals(quality: str, s: frozenset[int]) -> set[int]:
    """Chord-scale tensions by family (Berklee-style), before removing the chord's own tones."""
    if quality == "7alt":
        return {1, 3, 6, 8}
    flat5, sharp5 = 6 in s and 7 not in s, 8 in s and 7 not in s
    if 4 in s and 10 in s:  # dominant
        alt9, alt13 = bool(s & {1, 3}), 8 in s
        if alt9 and (alt13 or flat5):
            return {1, 3, 6, 8}
        if alt9:
            return {1, 3, 6, 9}
        return {2, 6, 8} if alt13 or flat5 else {2, 9}
    if 4 in s and sharp5:  # augmented: whole-tone colours
        return {2, 6} if 11 in s else {2, 6, 10}
    if 4 in s:
        return {2, 6, 9}
    if 3 in s:
        if flat5 and 10 in s:
            return {2, 5, 8}
        if flat5:
            return {2, 5, 8, 9, 11}
        return {2, 5, 9} if 11 in s else {2, 5}
    if 5 in s:
        return {2, 9}
    return {5, 9} if 2 in s else {2, 5}


@lru_cache(maxsize=1024)
def parse_chord(symbol: str) -> Chord:
    """Parse a chord symbol; cached, since plans repeat a handful of symbols over and over."""
    if not isinstance(symbol, str):
        raise TypeError(f"symbol: expected str, got {type(symbol).__name__}")
    text = symbol.strip()
    if len(text) > MAX_SYMBOL_LEN:
        raise ChordError(text[:MAX_SYMBOL_LEN] + "…", reason="over-long chord symbol")
    if text in NO_CHORD_SYMBOLS:
        return Chord(text, NO_PITCH_CLASS, NO_PITCH_CLASS, (), (), "N.C.")
    match = _ROOT_RE.match(text)
    if match is None or not text or any(c.isspace() for c in text):
        raise ChordError(symbol)
    root = _root_pc(match.group(1), match.group(2))
    quality, bass = text[match.end() :], root
    head, slash, tail = quality.rpartition("/")
    bass_match = _ROOT_RE.fullmatch(tail) if slash else None
    if bass_match is not None:
        quality, bass = head, _root_pc(bass_match.group(1), bass_match.group(2))
    quality = _normalise(quality)
    intervals = _intervals(quality)
    if intervals is None:
        raise ChordError(symbol)
    rel = tuple(dict.fromkeys(i % 12 for i in intervals))
    tones = tuple((root + i) % 12 for i in rel)
    if bass not in tones:
        tones = (*tones, bass)
    tension_rel = sorted(_tension_intervals(quality, frozenset(rel)) - set(rel))
    tensions = tuple(pc for pc in ((root + i) % 12 for i in tension_rel) if pc not in tones)
    return Chord(text, root, bass, tones, tensions, quality)


_ROLE = (PitchRole.AVOID, PitchRole.CHORD_TONE, PitchRole.TENSION)


@lru_cache(maxsize=256)
def pitch_class_roles(chord: Chord) -> tuple[PitchRole, ...]:
    """The role of each of the 12 pitch classes: a decoder builds its bias vector once per chord."""
    if chord.is_no_chord:
        return (PitchRole.FREE,) * 12
    tones, tensions = set(chord.tones), set(chord.tensions)
    return tuple(_ROLE[(pc in tones) + 2 * (pc in tensions)] for pc in range(12))


def classify_pitch(chord: Chord, pitch: int) -> PitchRole:
    """Chord tone, tension or avoid note for a MIDI pitch (0-127)."""
    if isinstance(pitch, bool) or not isinstance(pitch, int):
        raise TypeError(f"pitch: expected int, got {type(pitch).__name__}")
    if not 0 <= pitch <= 127:
        raise ValueError(f"pitch: {pitch} is outside MIDI range 0-127")
    return pitch_class_roles(chord)[pitch % 12]


@dataclass(frozen=True, slots=True)
class ChordSpan:
    """A chord with the beats it occupies, in the caller's beat frame (not folded into the loop)."""

    chord: Chord
    start_beat: float
    end_beat: float


def _bar_symbols(index: int, symbols: object) -> tuple[str, ...]:
    if isinstance(symbols, str):
        symbols = symbols.split()
    if not isinstance(symbols, (tuple, list)):
        raise TypeError(f"bars[{index}]: expected a sequence of chord symbols, got {type(symbols).__name__}")
    if not symbols:
        raise ValueError(f"bars[{index}]: a bar needs at least one chord symbol")
    if not all(isinstance(s, str) for s in symbols):
        raise TypeError(f"bars[{index}]: expected chord symbol strings, got {symbols!r}")
    return tuple(s.strip() for s in symbols)


@dataclass(frozen=True, slots=True)
class ChordPlan:
    """Chord symbols per bar (each bar split evenly among its chords), a loop flag and a key.

    The plan travels as symbols and is parsed on arrival, so every process holds the same pitch
    classes; parsed chords are kept beside the symbols so `chord_at` never parses in a hot loop.
    """

    bars: tuple[tuple[str, ...], ...]
    loop: bool = True
    key: str = "C"
    _chords: tuple[tuple[Chord, ...], ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        if not isinstance(self.bars, (tuple, list)):
            raise TypeError(f"bars: expected a sequence of bars, got {type(self.bars).__name__}")
        if not self.bars:
            raise ValueError("bars: a chord plan needs at least one bar")
        if len(self.bars) > MAX_BARS:
            raise ValueError(f"bars: {len(self.bars)} bars is over the limit of {MAX_BARS}")
        bars = tuple(_bar_symbols(i, b) for i, b in enumerate(self.bars))
        if not isinstance(self.loop, bool):
            raise TypeError(f"loop: expected bool, got {type(self.loop).__name__}")
        if not isinstance(self.key, str):
            raise TypeError(f"key: expected str, got {type(self.key).__name__}")
        if _KEY_RE.fullmatch(self.key) is None:
            raise ValueError(f"key: {self.key!r} is not a key like 'C', 'F#', 'Bb' or 'Am'")
        chords = []
        for i, bar in enumerate(bars):
            try:
                chords.append(tuple(parse_chord(s) for s in bar))
            except ChordError as exc:
                raise ChordError(exc.symbol, i + 1) from None
        object.__setattr__(self, "bars", bars)
        object.__setattr__(self, "_chords", tuple(chords))

    @classmethod
    def parse(cls, text: str, loop: bool = True, key: str = "C") -> ChordPlan:
        """Parse `Dm7 G7 | Cmaj7 | %` text; repeat marks are expanded into plain bars.

        - `|` separates bars; empty bars (`||`, leading or trailing `|`) are ignored.
        - `%` alone in a bar repeats the previous bar.
        - `xN` as the last word of a bar plays that bar N times.
        - `|: ... :|` plays the section twice; `:| xN` plays it N times. A `:|` with no `|:` repeats
          from the start, as in print. Sections do not nest.
        """
        if not isinstance(text, str):
            raise TypeError(f"text: expected str, got {type(text).__name__}")
        bars: list[tuple[str, ...]] = []
        open_at: int | None = None  # start of the open '|:' section
        closed: tuple[int, int] | None = None  # section just closed by ':|', expanded at the next part
        for i, part in enumerate(re.split(r"(\|:|:\||\|)", text)):
            if i % 2:  # a bar line
                if part == "|:" and open_at is not None:
                    raise ValueError("text: repeat sections '|: ... :|' do not nest")
                open_at = len(bars) if part == "|:" else open_at
                if part == ":|":
                    closed, open_at = (open_at or 0, len(bars)), None
                continue
            words = part.split()
            counted = bool(words) and _REPEAT_RE.fullmatch(words[-1]) is not None
            count = int(words.pop()[1:]) if counted else 1
            if count < 1 or (counted and not words and closed is None):
                raise ValueError(f"text: bad repeat count near bar {len(bars) + 1}")
            if closed is not None:  # ':| xN' plays the section N times, a plain ':|' twice
                _grow(bars, bars[closed[0] : closed[1]], (count if counted and not words else 2) - 1)
                closed = None
            if words == ["%"]:
                if not bars:
                    raise ValueError("text: '%' in the first bar has no previous bar to repeat")
                words = list(bars[-1])
            if words:
                _grow(bars, [tuple(words)], count)
        if open_at is not None:
            raise ValueError("text: '|:' has no closing ':|'")
        return cls(tuple(bars), loop=loop, key=key)

    def to_text(self) -> str:
        """Plain bars, no repeat marks: `ChordPlan.parse(p.to_text(), p.loop, p.key) == p`."""
        return " | ".join(" ".join(bar) for bar in self.bars)

    @property
    def chords(self) -> tuple[tuple[Chord, ...], ...]:
        return self._chords

    @property
    def key_tonic(self) -> int:
        return _root_pc(self.key[0], self.key[1:].removesuffix("m"))

    @property
    def key_is_minor(self) -> bool:
        return self.key.endswith("m")

    def length_beats(self, beats_per_bar: int) -> int:
        return len(self.bars) * _check_bpb(beats_per_bar)

    def chord_span_at(self, beat: float, beats_per_bar: int) -> ChordSpan | None:
        """The chord sounding at `beat` (0 = start of bar 0) and its extent; None past a non-looping end."""
        bpb = _check_bpb(beats_per_bar)
        if isinstance(beat, bool) or not isinstance(beat, (int, float)):
            raise TypeError(f"beat: expected a number, got {type(beat).__name__}")
        if not math.isfinite(beat):
            raise ValueError(f"beat: {beat} is not finite")
        bar_number = math.floor(beat / bpb)
        index = bar_number % len(self.bars) if self.loop else bar_number
        if not 0 <= index < len(self.bars):
            return None
        bar = self._chords[index]
        width = bpb / len(bar)
        bar_start = bar_number * bpb
        slot = min(int((beat - bar_start) / width), len(bar) - 1)
        start = bar_start + slot * width
        return ChordSpan(bar[slot], start, start + width)

    def chord_at(self, beat: float, beats_per_bar: int) -> Chord | None:
        """The chord at `beat`; looping plans are periodic over all beats, negative ones included."""
        span = self.chord_span_at(beat, beats_per_bar)
        return None if span is None else span.chord

    def with_bar(self, index: int, symbols: str | Sequence[str]) -> ChordPlan:
        """A copy with bar `index` replaced (`index == len(bars)` appends): a live edit is a new value."""
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"index: expected int, got {type(index).__name__}")
        if not 0 <= index <= len(self.bars):
            raise ValueError(f"index: {index} is outside 0..{len(self.bars)}")
        bar = _bar_symbols(index, symbols)
        bars = (*self.bars[:index], bar, *self.bars[index + 1 :])
        return ChordPlan(bars, loop=self.loop, key=self.key)


def _grow(bars: list[tuple[str, ...]], section: list[tuple[str, ...]], times: int) -> None:
    if len(bars) + len(section) * times > MAX_BARS:
        raise ValueError(f"text: the plan expands to over {MAX_BARS} bars")
    bars.extend(section * times)


def _check_bpb(beats_per_bar: int) -> int:
    if isinstance(beats_per_bar, bool) or not isinstance(beats_per_bar, int):
        raise TypeError(f"beats_per_bar: expected int, got {type(beats_per_bar).__name__}")
    if beats_per_bar < 1:
        raise ValueError(f"beats_per_bar: {beats_per_bar} is below 1")
    return beats_per_bar
