"""The drummer's vocabulary: grooves by style and meter, their variations, and fill pieces.

Patterns are step strings, one character per grid step over the bar (spaces are only for the eye),
the way drum machines and drummers' charts write them, so a groove can be read and changed by eye.
The engine (agents/engines/drums.py) decides which bar gets which variation, fill and crash; this
module only says what each style plays.

Lanes and their characters (`.` is a rest):
- `kick`:  `X` accent, `x` normal, `g` feathered (a jazz drummer's barely-heard quarter notes)
- `snare`: `X` backbeat, `x` normal, `g` ghost note
- `stick`: `x` side stick (cross-stick)
- `hat`:   the time-keeping cymbal: `x` closed hat, `X` accented, `o` open hat; in a B section of a
           groove with `b_ride` the drummer moves this lane to the ride cymbal
- `ride`:  `x` ride, `X` accented (styles that keep time on the ride whatever the section)
- `pedal`: `x` hi-hat played with the foot

A variation (or the B-section overlay) is a partial set of lanes: a character there replaces the
step, `-` clears it, `.` leaves it as it was; a lane written `=...` replaces the whole lane.

Fill pieces use their own characters: `S` accented snare, `s` snare, `K` kick, and the toms from
high to low `1` (50) `2` (48) `3` (47) `4` (45) `5` (43) `6` (41).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import get_args

from protocol.ensemble import DrumStyle

KICK, SNARE, SIDE_STICK = 36, 38, 37
CLOSED_HAT, PEDAL_HAT, OPEN_HAT = 42, 44, 46
CRASH, CRASH_2, RIDE = 49, 57, 51
TOMS = {"1": 50, "2": 48, "3": 47, "4": 45, "5": 43, "6": 41}
GM_DRUM_PITCHES = frozenset(
    {KICK, SNARE, SIDE_STICK, CLOSED_HAT, PEDAL_HAT, OPEN_HAT, CRASH, CRASH_2, RIDE, *TOMS.values()}
)

STYLES: tuple[str, ...] = get_args(DrumStyle)  # what the YAML accepts; FALLBACK covers each
TRIPLET_STYLES = frozenset({"jazz", "shuffle"})
LANES = ("kick", "snare", "stick", "hat", "ride", "pedal")


def steps(text: str) -> str:
    """A step string without the spaces that group it into beats."""
    return text.replace(" ", "")


@dataclass(frozen=True)
class Groove:
    """One style's bar in one meter.

    `groups` is how the bar's beats are felt (4/4: 2+2, 6/8 counted in eighths: 3+3, 7/8: 3+2+2):
    group starts carry the accents. `backbeat` lists the beats whose snare (or side stick, or in
    jazz the pedal hat) is the backbone that thinning never drops. `pulse` is how many beats a
    felt pulse spans (3 when the beats are the eighths of a compound meter): fills last whole
    pulses.
    """

    beats: int
    steps_per_beat: int
    lanes: Mapping[str, str]
    variations: tuple[Mapping[str, str], ...] = ()
    b_section: Mapping[str, str] = field(default_factory=dict)
    b_ride: bool = True
    groups: tuple[int, ...] = ()
    backbeat: tuple[int, ...] = ()
    pulse: int = 1
    timekeeper: str = "hat"

    def __post_init__(self) -> None:
        n = self.beats * self.steps_per_beat
        if not self.groups:
            object.__setattr__(self, "groups", (self.beats,))
        if sum(self.groups) != self.beats:
            raise ValueError(f"groups {self.groups} do not add up to {self.beats} beats")
        for where, lanes in (("lanes", self.lanes), ("b_section", self.b_section),
                             *((f"variations[{i}]", v) for i, v in enumerate(self.variations))):
            for lane, text in lanes.items():
                if lane not in LANES:
                    raise ValueError(f"{where}.{lane}: unknown lane (one of {', '.join(LANES)})")
                if len(text.removeprefix("=")) != n:
                    raise ValueError(f"{where}.{lane}: {len(text.removeprefix('='))} steps, the bar has {n}")

    @property
    def n_steps(self) -> int:
        return self.beats * self.steps_per_beat


def _lanes(lanes: Mapping[str, str]) -> dict[str, str]:
    return {k: v[0] + steps(v[1:]) if v.startswith("=") else steps(v) for k, v in lanes.items()}


def _g(beats: int, spb: int, lanes: dict[str, str], *variations: dict[str, str],
       b_section: dict[str, str] | None = None, b_ride: bool = True, groups: tuple[int, ...] = (),
       backbeat: tuple[int, ...] = (), pulse: int = 1, timekeeper: str = "hat") -> Groove:
    return Groove(beats, spb, _lanes(lanes), tuple(_lanes(v) for v in variations), _lanes(b_section or {}),
                  b_ride, groups, backbeat, pulse, timekeeper)


# fmt: off
GROOVES: dict[tuple[str, int], Groove] = {
    # ---- 4/4, sixteenth grid -------------------------------------------------------------------
    ("rock", 4): _g(4, 4,
        {"kick": "x... .... x.x. ....", "snare": ".... X... .... X...", "hat": "x.x. x.x. x.x. x.x."},
        {"kick": ".... ..x. .... ...."},                      # the "and" of 2
        {"kick": ".... .... .... ..x."},                      # the "and" of 4 pushes the next bar
        {"snare": ".... ...g ...g ...."},                     # ghosts before 3 and after it
        {"hat": ".... .... .... ..o."},                       # open hat on the "and" of 4
        {"kick": "..x. .... .... ....", "snare": ".... .... .g.. ...."},
        b_section={"hat": "X.x. X.x. X.x. X.x."}, groups=(2, 2), backbeat=(1, 3)),
    ("pop", 4): _g(4, 4,
        {"kick": "x... ..x. x... ....", "snare": ".... X... .... X...", "hat": "x.x. x.x. x.x. x.x."},
        {"kick": ".... .... ..x. ...."},
        {"hat": ".... .... .... ..o."},
        {"snare": ".... .... ...g ...."},
        {"kick": "...x .... .... ...."},
        b_section={"kick": "x... x... x... x...", "hat": "x.o. x.o. x.o. x.o."},  # four on the floor
        b_ride=False, groups=(2, 2), backbeat=(1, 3)),
    ("funk", 4): _g(4, 4,
        {"kick": "x..x ..x. ..x. ....", "snare": ".... X..g .g.. X..g", "hat": "xxxx xxxx xxxx xxxx"},
        {"hat": "..o. .... .... ...."},
        {"kick": ".... .... .... ...x"},
        {"snare": ".g.. .... .... .g.."},
        {"kick": ".... .x.. .... ...."},
        {"hat": ".... .... .... ..o."},
        b_section={"hat": ".... ..o. .... ..o."}, b_ride=False, groups=(2, 2), backbeat=(1, 3)),
    ("jazz", 4): _g(4, 3,
        {"ride": "x.. x.x x.. x.x", "pedal": "... x.. ... x..", "kick": "g.. g.. g.. g.."},
        {"snare": "... ... ..g ..."},
        {"snare": "... ..g ... ..."},
        {"kick": "... ... ..x ..."},                          # a "bomb" on the last triplet of 3
        {"snare": "..g ... ... ..g"},
        {"ride": "..x ... ... ..."},
        b_section={"snare": "... ..g ... ..g"}, b_ride=False, groups=(2, 2), backbeat=(1, 3),
        timekeeper="ride"),
    ("shuffle", 4): _g(4, 3,
        {"kick": "x.. ... x.. ...", "snare": "... X.. ... X..", "hat": "x.x x.x x.x x.x"},
        {"kick": "... ..x ... ..."},
        {"snare": "..g ... ..g ..."},
        {"hat": "... ... ... ..o"},
        {"kick": "... ... ... ..x"},
        b_section={"hat": "X.x X.x X.x X.x"}, groups=(2, 2), backbeat=(1, 3)),
    ("bossa", 4): _g(4, 4,
        {"kick": "x..x x..x x..x x..x", "stick": "x..x ..x. ..x. .x..", "hat": "x.x. x.x. x.x. x.x."},
        {"stick": "=..x. x... x..x ..x."},                   # the clave turned around (2-3)
        {"kick": "=x... x..x x... x..x"},
        {"kick": ".... .... .... ...-"},
        {"hat": "X... X... X... X..."},
        b_section={"hat": "X.x. X.x. X.x. X.x."}, groups=(2, 2), backbeat=()),
    ("ballad", 4): _g(4, 4,
        {"kick": "x... .... x... ....", "stick": ".... x... .... x...", "hat": "x.x. x.x. x.x. x.x."},
        {"kick": ".... .... ..x. ...."},
        {"hat": ".... .... .... ..o."},
        {"kick": ".... ...x .... ...."},
        {"hat": "...x .... .... ...."},
        b_section={"stick": ".... -... .... -...", "snare": ".... X... .... X..."},
        groups=(2, 2), backbeat=(1, 3)),
    # ---- 3/4 -----------------------------------------------------------------------------------
    ("rock", 3): _g(3, 4,
        {"kick": "x... .... ....", "snare": ".... .... X...", "hat": "x.x. x.x. x.x."},
        {"kick": ".... ..x. ...."},
        {"kick": ".... .... ..x."},
        {"snare": ".... ...g ...."},
        {"hat": ".... .... ..o."},
        b_section={"hat": "X.x. x.x. x.x."}, groups=(3,), backbeat=(2,)),
    ("waltz", 3): _g(3, 4,
        {"kick": "x... .... ....", "stick": ".... x... x...", "hat": "x... x... x..."},
        {"hat": ".... ..x. ..x."},
        {"kick": ".... .... ..x."},
        {"hat": "..x. .... ...."},
        {"kick": ".... ..x. ...."},
        b_section={"stick": ".... -... -...", "snare": ".... x... x..."},
        groups=(3,), backbeat=(1, 2)),
    ("ballad", 3): _g(3, 4,
        {"kick": "x... .... ....", "stick": ".... .... x...", "hat": "x.x. x.x. x.x."},
        {"kick": ".... ..x. ...."},
        {"hat": ".... .... ..o."},
        {"kick": ".... .... ..x."},
        b_section={"stick": ".... .... -...", "snare": ".... .... X..."}, groups=(3,), backbeat=(2,)),
    ("jazz", 3): _g(3, 3,
        {"ride": "x.. x.x x..", "pedal": "... x.. x..", "kick": "g.. ... ..."},
        {"snare": "... ... ..g"},
        {"kick": "... ..x ..."},
        {"snare": "..g ... ..."},
        {"ride": "... ... ..x"},
        b_section={"snare": "... ..g ..."}, b_ride=False, groups=(3,), backbeat=(1, 2),
        timekeeper="ride"),
    ("shuffle", 3): _g(3, 3,
        {"kick": "x.. ... ...", "snare": "... ... X..", "hat": "x.x x.x x.x"},
        {"kick": "... ..x ..."},
        {"snare": "... ..g ..."},
        {"hat": "... ... ..o"},
        b_section={"hat": "X.x x.x x.x"}, groups=(3,), backbeat=(2,)),
    # ---- 6/8 counted in six eighth-note beats (sixteenth grid), felt in two -------------------
    ("rock", 6): _g(6, 2,
        {"kick": "x. .. .. .. .. ..", "snare": ".. .. .. X. .. ..", "hat": "x. x. x. x. x. x."},
        {"kick": ".. .. x. .. .. .."},
        {"kick": ".. .. .. .. .. x."},
        {"kick": ".. .. .. .. x. .."},
        {"snare": ".. .. .g .. .. .g"},
        {"hat": ".. .. .. .. .. o."},
        b_section={"hat": "X. x. x. X. x. x."}, groups=(3, 3), backbeat=(3,), pulse=3),
    ("ballad", 6): _g(6, 2,
        {"kick": "x. .. .. .. .. ..", "stick": ".. .. .. x. .. ..", "hat": "x. x. x. x. x. x."},
        {"kick": ".. .. .. .. .. x."},
        {"kick": ".. .. x. .. .. .."},
        {"hat": ".. .. .. .. .. o."},
        b_section={"stick": ".. .. .. -. .. ..", "snare": ".. .. .. X. .. .."},
        groups=(3, 3), backbeat=(3,), pulse=3),
    ("jazz", 6): _g(6, 2,
        {"ride": "X. x. x. X. x. x.", "pedal": ".. .. .. x. .. ..", "kick": "g. .. .. g. .. .."},
        {"snare": ".. .. g. .. .. .."},
        {"snare": ".. .. .. .. .. g."},
        {"kick": ".. .. .. .. x. .."},
        b_section={"snare": ".. g. .. .. g. .."}, b_ride=False, groups=(3, 3), backbeat=(3,), pulse=3,
        timekeeper="ride"),
    # ---- 2/4, and 6/8 felt in two (triplet styles) ---------------------------------------------
    ("rock", 2): _g(2, 4,
        {"kick": "x... ....", "snare": ".... X...", "hat": "x.x. x.x."},
        {"kick": "..x. ...."},
        {"kick": ".... ..x."},
        {"snare": "...g ...."},
        {"hat": ".... ..o."},
        b_section={"hat": "X.x. X.x."}, groups=(2,), backbeat=(1,)),
    ("shuffle", 2): _g(2, 3,
        {"kick": "x.. ...", "snare": "... X..", "hat": "xxx xxx"},
        {"kick": "..x ..."},
        {"kick": "... ..x"},
        {"snare": ".g. ..."},
        {"hat": "... ..o"},
        b_section={"hat": "X.x X.x"}, groups=(1, 1), backbeat=(1,)),
    ("jazz", 2): _g(2, 3,
        {"ride": "x.. x.x", "pedal": "... x..", "kick": "g.. g.."},
        {"snare": "..g ..."},
        {"snare": "... ..g"},
        {"kick": "... ..x"},
        b_ride=False, groups=(1, 1), backbeat=(1,), timekeeper="ride"),
}
# fmt: on

# Where a style has no groove of its own in a meter, the nearest that has one.
FALLBACK: dict[str, tuple[str, ...]] = {
    "rock": (),
    "pop": ("rock",),
    "funk": ("rock",),
    "jazz": ("shuffle", "rock"),
    "shuffle": ("rock",),
    "bossa": ("ballad", "rock"),
    "waltz": ("ballad", "rock"),
    "ballad": ("waltz", "rock"),
}

# Fill pieces by grid (steps per beat): one-beat pieces, two-beat pieces, and the cells a longer fill
# builds up with before its last two beats.
FILL_ONE: dict[int, tuple[str, ...]] = {
    4: ("ssSS", "1133", "ss12", "s135", "S.sS", "3355", "s.11", "ssss"),
    3: ("sss", "135", "s.S", "113", "s13", "356"),
    2: ("ss", "13", "56", "s1", "S.", "35"),
}
FILL_TWO: dict[int, tuple[str, ...]] = {
    4: ("ssss 1133", "ss11 3355", "S.sS .sS.", "1133 5566", "sSsS 1155", "s.ss 1356", "K.sS K.SS",
        "ssss ssSS", "1.1. 3.5."),
    3: ("sss 135", "s.s 113", "113 355", "sss sss", "s1s 356", "S.s S.S"),
    2: ("ss 13", "13 56", "ss ss", "s1 36", "S. 15", "11 55"),
}
FILL_LEAD: dict[int, tuple[str, ...]] = {
    4: ("s.s.", "ssss", "s.ss", "1.1.", "S..s"),
    3: ("s.s", "sss", "1.1", "S.s"),
    2: ("s.", "ss", "1.", "S."),
}


def groove_for(style: str, beats_per_bar: int) -> Groove:
    """The style's groove in this meter, a related style's, or one built for the meter."""
    if style not in FALLBACK:
        raise ValueError(f"style: {style!r} is not one of {', '.join(STYLES)}")
    for name in (style, *FALLBACK[style]):
        found = GROOVES.get((name, beats_per_bar))
        if found is not None:
            return found
    return generic_groove(beats_per_bar, style)


def beat_groups(beats: int) -> tuple[tuple[int, ...], bool]:
    """How a drummer feels an uncommon meter: compound (3+3+...) when it divides into threes from
    6 up, else twos with one three leading an odd count (5 = 3+2, 7 = 3+2+2)."""
    if beats >= 6 and beats % 3 == 0:
        return (3,) * (beats // 3), True
    if beats <= 3:
        return (beats,), False
    if beats % 2:
        return (3, *(2,) * ((beats - 3) // 2)), False
    return (2,) * (beats // 2), False


def generic_groove(beats: int, style: str) -> Groove:
    """A groove for any meter, built from how its beats group: kick on the accents, snare on the
    backbeats, the cymbal on every beat (and the off-beats in a simple meter); the variations add a
    kick and a ghost note before a backbeat, a kick on a free beat, an open hat."""
    groups, compound = beat_groups(beats)
    triplet = style in TRIPLET_STYLES and not compound
    spb = 3 if triplet else (2 if compound else 4)
    n = beats * spb
    starts = [sum(groups[:i]) for i in range(len(groups))]
    if compound:  # the pulses trade kick and snare, as 6/8 and 12/8 do
        strong = [b for i, b in enumerate(starts) if i % 2 == 0]
        backbeat = [b for i, b in enumerate(starts) if i % 2 == 1] or [starts[-1] + 1]
    else:  # each group's first beat the kick, its last the snare: 5/4 is K . S K S, 8/4 K S K S ...
        strong = starts
        backbeat = [b + g - 1 for b, g in zip(starts, groups, strict=True) if g >= 2]

    def lane(hits: dict[int, str]) -> str:
        return "".join(hits.get(i, ".") for i in range(n))

    off = 2 if triplet else spb // 2  # the off-beat: the swung triplet, or half the beat
    kick = lane({b * spb: "x" for b in strong})
    back = lane({b * spb: "X" for b in backbeat})
    time_hits = {b * spb: "x" for b in range(beats)}
    if not compound:
        time_hits |= {b * spb + off: "x" for b in range(beats)}
    time = lane(time_hits)
    last_off = (beats - 1) * spb + off
    free_beats = [b for b in range(beats) if b not in strong and b not in backbeat]
    variations: list[dict[str, str]] = []
    if backbeat and backbeat[0] > 0:
        before = (backbeat[0] - 1) * spb + (0 if compound else off)  # compound: the eighth before
        variations.append({"kick": lane({before: "x"})})
        variations.append({"snare": lane({backbeat[0] * spb - 1: "g"})})
    if free_beats:
        variations.append({"kick": lane({free_beats[-1] * spb: "x"})})
    if style == "jazz":
        feathered = lane({b * spb: "g" for b in range(beats)})
        lanes = {"ride": time, "pedal": back.replace("X", "x"), "kick": feathered}
        return Groove(beats, spb, lanes, tuple(variations), b_ride=False, groups=groups,
                      backbeat=tuple(backbeat), pulse=3 if compound else 1, timekeeper="ride")
    if not compound and last_off < n:
        variations.append({"hat": lane({last_off: "o"})})
    lanes = {"kick": kick, "snare": back, "hat": time}
    return Groove(beats, spb, lanes, tuple(variations), groups=groups, backbeat=tuple(backbeat),
                  pulse=3 if compound else 1)
