"""Field checks shared by every message and config value.

Every decoder funnels through these so that a wrong type raises TypeError and a bad range raises
ValueError, each naming the field: a rejected packet can then be counted under a precise reason.
Integral floats are accepted where ints are meant because Max/MSP and TouchOSC send floats for
everything.
"""

from __future__ import annotations

import math
from typing import Any


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """An int in range; integral floats pass because control surfaces send floats."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"{name}: expected an integer, got {value!r}")
        value = int(value)
    if not isinstance(value, int):
        raise TypeError(f"{name}: expected int, got {type(value).__name__}")
    if lo is not None and value < lo:
        raise ValueError(f"{name}: {value} is below {lo}")
    if hi is not None and value > hi:
        raise ValueError(f"{name}: {value} is above {hi}")
    return value


def check_float(name: str, value: Any, lo: float | None = None, hi: float | None = None) -> float:
    """A finite float in range: NaN and inf never enter the timeline or a note."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: {value} is not finite")
    if lo is not None and value < lo:
        raise ValueError(f"{name}: {value} is below {lo}")
    if hi is not None and value > hi:
        raise ValueError(f"{name}: {value} is above {hi}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """A flag; 0/1 (int or float) pass since OSC toggles send numbers."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{name}: expected a boolean (0/1), got {value!r}")


def check_str(name: str, value: Any, max_len: int = 256, *, empty_ok: bool = False) -> str:
    """A bounded string: absurd sizes are refused before they reach a parser."""
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise ValueError(f"{name}: {len(value)} characters is over the limit of {max_len}")
    if not value and not empty_ok:
        raise ValueError(f"{name}: must not be empty")
    return value


def check_name(name: str, value: Any) -> str:
    """A part or ensemble name: it becomes an OSC address and an MQTT topic level."""
    value = check_str(name, value, 64)
    if not all(c.isalnum() or c in "-_" for c in value):
        raise ValueError(f"{name}: {value!r} may hold only letters, digits, '-' and '_'")
    return value
