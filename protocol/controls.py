"""Every control a surface may send, once: the conductor's dispatcher, docs and tests read this table.

Addresses are `/barcelona/<ensemble>/<name>` for ensemble controls and
`/barcelona/<ensemble>/agent/<agent>/<name>` for per-agent ones; `<agent>` may be an OSC pattern
(`*`, `?`, `[ab]`, `{bass,piano}`). The `/barcelona/<ensemble>` prefix may be left out, which keeps
TouchOSC layouts short.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from protocol.fields import check_bool, check_float, check_int, check_str
from protocol.mix import dynamics_velocity
from protocol.rules import RULES


@dataclass(frozen=True, slots=True)
class ControlSpec:
    name: str
    scope: Literal["ensemble", "agent"]
    kind: Literal["float", "int", "bool", "text", "trigger", "bar", "dynamics"]
    lo: float | None
    hi: float | None
    doc: str

    @classmethod
    def ranged(cls, name: str, scope: Literal["ensemble", "agent"], doc: str,
               kind: Literal["float", "int", "dynamics"] | None = None) -> ControlSpec:
        """A numeric control whose range is the rule table's, so the surface and the file agree."""
        r = RULES[name]
        return cls(name, scope, kind or r.kind, r.lo, r.hi, doc)

    def coerce(self, args: list[Any]) -> Any:
        """Turn what Max/TouchOSC send (floats for everything, 0/1 toggles) into a checked value."""
        field = self.name
        if self.kind == "trigger":
            # A button sends 1 on press and 0 on release; act on press (or on a bare message).
            return 1.0 if not args else check_float(field, args[0])
        if not args:
            raise ValueError(f"{field}: needs a value")
        if self.kind == "float":
            value = check_float(field, args[0])
            # Surfaces send float32: 0.01 arrives as 0.0099999998. A hair outside a bound is the bound.
            for bound in (self.lo, self.hi):
                if bound is not None and abs(value - bound) <= 1e-6 * max(1.0, abs(bound)):
                    value = float(bound)
            return check_float(field, value, self.lo, self.hi)
        if self.kind == "int":
            return float(check_int(field, args[0], int(self.lo or 0), int(self.hi or 0)))
        if self.kind == "dynamics":
            # A marking from a text field (`f`) or a velocity from a fader, both to the velocity.
            level = args[0] if isinstance(args[0], str) else check_int(field, args[0], int(self.lo or 0),
                                                                         int(self.hi or 0))
            return float(dynamics_velocity(level))
        if self.kind == "bool":
            return 1.0 if check_bool(field, args[0]) else 0.0
        if self.kind == "text":
            return check_str(field, " ".join(str(a) for a in args), 4096)
        # bar: index then symbols, sent as "<index> <symbols…>" text on the bus
        if len(args) < 2:
            raise ValueError(f"{field}: needs a bar number and chord symbols")
        index = check_int(f"{field}.index", args[0], 1, 1024)  # bar numbers count from 1, as displays do
        symbols = check_str(f"{field}.symbols", " ".join(str(a) for a in args[1:]), 256)
        return f"{index} {symbols}"


CONTROLS: tuple[ControlSpec, ...] = (
    ControlSpec.ranged("tempo", "ensemble", "Tempo in BPM; takes effect at the next bar line."),
    ControlSpec("follow_tempo", "ensemble", "bool", None, None,
                "Follow the player's tempo (1) or hold the tempo where it is (0)."),
    ControlSpec("play", "ensemble", "trigger", None, None, "Start the transport at the next beat."),
    ControlSpec("stop", "ensemble", "trigger", None, None,
                "End at the next bar line agents can reach: every part holds the final chord for "
                "`timing.ending_beats`, then the transport stops (and a `--bars` run ends). "
                "A second stop cuts at once."),
    ControlSpec("plan", "ensemble", "text", None, None, "Replace the chord plan: `Dm7 G7 | Cmaj7 | ...`."),
    ControlSpec("bar", "ensemble", "bar", None, None, "Replace one bar: number (1 = first), chords."),
    ControlSpec("chords", "ensemble", "text", None, None, "`follow` the player's chords and key, or `plan`."),
    ControlSpec("substitutions", "ensemble", "bool", None, None,
                "On a written plan, play the chord the player holds against a written one (1), or the "
                "plan as written (0)."),
    ControlSpec("mute", "agent", "bool", None, None, "Silence an agent (1) or let it play (0)."),
    ControlSpec("solo", "agent", "bool", None, None, "Only soloed agents play while any is soloed."),
    ControlSpec.ranged("temperature", "agent", "Sampling temperature of the agent's model."),
    ControlSpec.ranged("density", "agent",
                       "How many notes the agent plays: 1 as written, 0 the sparsest, 4 the busiest."),
    ControlSpec.ranged("top_p", "agent", "Nucleus sampling threshold."),
    ControlSpec.ranged("top_k", "agent", "Keep only the k likeliest tokens (0 = all)."),
    ControlSpec.ranged("volume", "agent", "The part's level in the mix (CC7), sent at once."),
    ControlSpec.ranged("pan", "agent", "Left (-1) to right (1), centre 0 (CC10), at once."),
    ControlSpec.ranged("dynamics", "agent",
                       "How loud the part plays: a marking pp..ff or a centre velocity 1..127.",
                       kind="dynamics"),
)
BY_NAME: dict[tuple[str, str], ControlSpec] = {(c.scope, c.name): c for c in CONTROLS}
