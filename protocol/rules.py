"""Every tunable number's legal range, once.

The YAML schema (`protocol.ensemble`), the control surface (`protocol.controls`), the messages that
carry the values (`protocol.messages`), the timeline and the decoder's parameters all read their
bounds from this table, so a value is legal in all of them or in none: a `top_k: 0` that the file
accepts is not refused later by the model process, and a `/density 4` a fader sends is what the YAML
could have said. Bounds are inclusive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from protocol.fields import check_float, check_int


@dataclass(frozen=True, slots=True)
class Rule:
    """One number's kind and inclusive range, and what its ends mean to a musician."""

    name: str
    kind: Literal["int", "float"]
    lo: float
    hi: float
    doc: str

    def check(self, value: Any, field: str | None = None) -> Any:
        """The value as its kind, or TypeError/ValueError naming ``field`` (default: the rule's name)."""
        name = field or self.name
        if self.kind == "int":
            return check_int(name, value, int(self.lo), int(self.hi))
        return check_float(name, value, self.lo, self.hi)

    @property
    def bounds(self) -> tuple[Any, Any]:
        """(lo, hi) typed as the value is, for a schema's ge/le or a message's SPEC."""
        if self.kind == "int":
            return int(self.lo), int(self.hi)
        return float(self.lo), float(self.hi)

    @property
    def spec(self) -> tuple[str, Any, Any]:
        """The rule as a message field spec (`protocol.messages.Spec`)."""
        return ("i" if self.kind == "int" else "d", *self.bounds)


_TABLE = (
    Rule("tempo", "float", 20, 400, "Tempo in BPM."),
    Rule("meter", "int", 1, 32, "Beats per bar."),
    Rule("temperature", "float", 0.01, 5.0, "Sampling temperature: low is safe, high is adventurous."),
    Rule("top_p", "float", 0.01, 1.0, "Nucleus: keep the likeliest tokens holding this much probability."),
    Rule("top_k", "int", 0, 4096, "Keep only the k likeliest tokens (0 = all)."),
    Rule("density", "float", 0.0, 4.0,
         "How many notes the part plays: 1 as the model writes, 0 the sparsest it goes, 4 the busiest."),
    Rule("chord_bias", "float", 0.0, 20.0, "How strongly the model leans to the chord's tones (0 = off)."),
    Rule("weak_beat_bias", "float", 0.0, 1.0, "The share of chord_bias off the strong beats."),
    Rule("volume", "int", 0, 127, "The part's level in the mix (CC7)."),
    Rule("pan", "float", -1.0, 1.0, "Left (-1) to right (1), centre 0 (CC10)."),
    Rule("dynamics", "int", 1, 127, "The part's centre velocity; pp..ff are names for points on it."),
    Rule("pitch", "int", 0, 127, "A MIDI note number."),
    Rule("velocity", "int", 1, 127, "A sounding note's velocity (0 is a note-off in MIDI)."),
    Rule("channel", "int", 0, 15, "A MIDI channel, counted from 0."),
    Rule("program", "int", 0, 127, "A General MIDI program, counted from 0."),
)

RULES: dict[str, Rule] = {r.name: r for r in _TABLE}
