"""A part's place in the mix: volume, pan and dynamic level, with one set of bounds for every way in.

The YAML schema, the OSC control surface and the `AgentParams` message all read their ranges from
here, so a value one of them accepts is never refused by another (a volume of 127 set in the file
can be set again from TouchOSC, and 128 is refused by both). Volume and pan reach the synth as the
General MIDI controllers CC7 and CC10 on the part's channel.
"""

from __future__ import annotations

from typing import Final

from protocol.fields import check_float, check_int
from protocol.instruments import DYNAMICS
from protocol.rules import RULES

CC_VOLUME = 7
CC_PAN = 10

VOLUME_RANGE: tuple[int, int] = RULES["volume"].bounds
PAN_RANGE: tuple[float, float] = RULES["pan"].bounds
#: A dynamic level as a centre velocity; the markings in DYNAMICS are names for points on it.
DYNAMICS_RANGE: tuple[int, int] = RULES["dynamics"].bounds

DEFAULT_VOLUME = 100
DEFAULT_PAN = 0.0
DEFAULT_DYNAMICS: Final = "mf"  # Final keeps the literal, so it types as a marking, not any str


def pan_cc(pan: float) -> int:
    """-1..1 (hard left .. hard right) as CC10's 0..127 with the centre at 64, both ends reachable:
    the left half has 64 steps and the right 63, as MIDI's own centre sits one above the middle."""
    pan = check_float("pan", pan, *PAN_RANGE)
    return round(64 + pan * (64 if pan < 0 else 63))


def dynamics_velocity(value: str | int | float) -> int:
    """A marking (`pp`..`ff`) or a velocity 1..127 as the part's centre velocity."""
    if isinstance(value, str):
        try:
            return DYNAMICS[value]
        except KeyError:
            raise ValueError(f"dynamics: {value!r} is not one of {', '.join(DYNAMICS)} or a velocity "
                             f"{DYNAMICS_RANGE[0]}..{DYNAMICS_RANGE[1]}") from None
    return check_int("dynamics", value, *DYNAMICS_RANGE)
