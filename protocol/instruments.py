"""What an instrument is to the band: its GM program, where it can play, how many notes at once, and
its role. Both sides read it: agents voice and shape their part by it, the conductor knows which part
is the bass, and the YAML schema fills an agent's unset fields from it (`instrument: bass`).

Ranges are sounding MIDI pitches, the practical (not the extreme) range of the instrument, so a part
stays where the instrument sounds like itself: a 4-string bass E1-G3, most lines lower; a trumpet's
comfortable 58-79; comping in the middle register, below the melody. `span` is the widest interval
one hand (or one guitar chord shape) holds at once; 0 means no limit (a monophonic part needs none).
`lengths` are typical note lengths in beats (shortest, longest), which bound what a model may hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["bass", "comp", "melody", "drums"]
ROLES: tuple[Role, ...] = ("bass", "comp", "melody", "drums")


@dataclass(frozen=True, slots=True)
class Instrument:
    name: str
    program: int
    range: tuple[int, int]
    polyphony: int
    role: Role
    span: int = 0
    lengths: tuple[float, float] = (0.25, 4.0)
    channel: int | None = None  # the channel the instrument needs (GM drums: 9); None: any


INSTRUMENTS: dict[str, Instrument] = {
    i.name: i
    for i in (
        Instrument("bass", 33, (28, 52), 1, "bass", lengths=(0.25, 2.0)),
        Instrument("upright_bass", 32, (28, 52), 1, "bass", lengths=(0.25, 2.0)),
        Instrument("synth_bass", 38, (28, 52), 1, "bass", lengths=(0.25, 2.0)),
        Instrument("piano", 0, (48, 76), 4, "comp", span=16, lengths=(0.25, 4.0)),
        Instrument("electric_piano", 4, (48, 76), 4, "comp", span=16, lengths=(0.25, 4.0)),
        Instrument("organ", 16, (48, 76), 4, "comp", span=16, lengths=(0.5, 8.0)),
        Instrument("guitar", 25, (40, 72), 4, "comp", span=14, lengths=(0.25, 2.0)),
        Instrument("electric_guitar", 27, (40, 72), 4, "comp", span=14, lengths=(0.25, 2.0)),
        Instrument("strings", 48, (48, 79), 3, "comp", span=19, lengths=(1.0, 8.0)),
        Instrument("trumpet", 56, (58, 79), 1, "melody", lengths=(0.25, 2.0)),
        Instrument("trombone", 57, (40, 70), 1, "melody", lengths=(0.25, 2.0)),
        Instrument("alto_sax", 65, (49, 77), 1, "melody", lengths=(0.25, 2.0)),
        Instrument("sax", 66, (46, 72), 1, "melody", lengths=(0.25, 2.0)),  # tenor, the band's sax
        Instrument("tenor_sax", 66, (46, 72), 1, "melody", lengths=(0.25, 2.0)),
        Instrument("clarinet", 71, (52, 84), 1, "melody", lengths=(0.25, 2.0)),
        Instrument("flute", 73, (60, 93), 1, "melody", lengths=(0.25, 2.0)),
        Instrument("violin", 40, (55, 96), 1, "melody", lengths=(0.25, 4.0)),
        Instrument("cello", 42, (36, 69), 1, "melody", lengths=(0.25, 4.0)),
        Instrument("voice", 52, (55, 79), 1, "melody", lengths=(0.5, 4.0)),
        Instrument("drums", 0, (35, 81), 8, "drums", lengths=(0.25, 0.25), channel=9),
    )
}


def instrument(name: str) -> Instrument:
    """The instrument called `name`; a ValueError that lists the known ones otherwise."""
    try:
        return INSTRUMENTS[name]
    except KeyError:
        raise ValueError(f"unknown instrument {name!r}; known: {', '.join(sorted(INSTRUMENTS))}") from None


def guess_role(channel: int, pitch_range: tuple[int, int], bass_flag: bool = False) -> Role:
    """The role of a part the YAML names no instrument for: GM channel 10 drums, a part marked
    `bass: true` or one whose range tops out at middle C or below the bass, anything else comping
    (a melody part says so with `instrument:` or `role:`). Old ensemble files keep working, and still
    get the band's voicing rules."""
    if channel == 9:
        return "drums"
    if bass_flag or pitch_range[1] <= 60:
        return "bass"
    return "comp"


DYNAMICS: dict[str, int] = {"pp": 36, "p": 52, "mp": 68, "mf": 82, "f": 98, "ff": 114}
"""A dynamic marking's centre velocity; a part's notes spread around it by accent and phrase."""
