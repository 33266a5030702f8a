"""Build an output from its YAML description, with errors that name the field the user got wrong.

The ensemble file says, per agent, e.g. ``{type: midi, port: "FluidSynth", channels: [1]}``; the
YAML schema checks the overall shape, and this is where each output kind's own fields are read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agents.outputs.base import Clock, Output

__all__ = ["OUTPUT_TYPES", "make_output"]

_COMMON = {
    "type": (str,), "name": (str,), "channels": (list, tuple), "programs": (dict,), "controls": (dict,),
}

_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "midi": {"port": (str,), "virtual": (bool,), "api": (str,), "client_name": (str,)},
    "osc": {"host": (str,), "port": (int,), "address": (str,), "timetag": (bool,), "channel_base": (int,)},
    "fluidsynth": {"soundfont": (str,), "gain": (int, float), "audio_driver": (str,), "sample_rate": (int,)},
    "null": {"keep": (int,)},
}

# Fields whose absence means "the default": no port for a virtual one, the distribution's soundfont,
# no audio driver (render only).
_NULLABLE = {("midi", "port"), ("fluidsynth", "soundfont"), ("fluidsynth", "audio_driver")}

#: The output kinds a spec's ``type`` may name.
OUTPUT_TYPES = tuple(_FIELDS)


def _checked(spec: Mapping[str, Any], where: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(spec, Mapping):
        raise TypeError(f"{where}: expected a mapping like {{type: midi, port: ...}}, "
                        f"got {type(spec).__name__}")
    kind = spec.get("type")
    if kind is None:
        raise ValueError(f"{where}.type: missing; one of {', '.join(OUTPUT_TYPES)}")
    if not isinstance(kind, str) or kind not in _FIELDS:
        raise ValueError(f"{where}.type: unknown output type {kind!r}; one of {', '.join(OUTPUT_TYPES)}")
    allowed = {**_COMMON, **_FIELDS[kind]}
    values: dict[str, Any] = {}
    for key, value in spec.items():
        if key not in allowed:
            known = ", ".join(sorted(allowed))
            raise ValueError(f"{where}.{key}: not a field of a {kind} output; its fields: {known}")
        types = allowed[key]
        if value is None and (kind, key) in _NULLABLE:
            values[key] = None
            continue
        # YAML's `true` is an int to Python: a bool is never a number here, and a number never a bool.
        if isinstance(value, bool) != (bool in types) or not isinstance(value, types):
            names = " or ".join(t.__name__ for t in types)
            raise TypeError(f"{where}.{key}: expected {names}, got {type(value).__name__} {value!r}")
        values[key] = value
    values.pop("type")
    return kind, values


def _fields_named(where: str, build: Callable[..., Output], values: dict[str, Any]) -> Output:
    """Let the constructors' own checks speak, but say which spec produced the complaint."""
    try:
        return build(**values)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: {exc}") from exc


def make_output(spec: Mapping[str, Any], *, where: str = "output", clock: Clock | None = None) -> Output:
    """An unopened output for ``spec``; ``where`` prefixes errors (e.g. ``agents.bass.output``).
    ``clock`` replaces the output's own (perf_counter) for an agent on virtual time."""
    kind, values = _checked(spec, where)
    if clock is not None:
        values["clock"] = clock
    if "programs" in values:
        values["programs"] = dict(values["programs"])
    if "controls" in values:
        values["controls"] = {c: dict(ccs) for c, ccs in values["controls"].items()}
    if kind == "midi":
        from protocol.midi_backend import load_rtmidi

        load_rtmidi(where)  # without the `midi` extra: one line naming the field and what to install
        from agents.outputs.midi import MidiPortOutput

        return _fields_named(where, MidiPortOutput, values)
    if kind == "osc":
        from agents.outputs.osc import OscOutput

        if "address" in values:
            values["address_pattern"] = values.pop("address")
        return _fields_named(where, OscOutput, values)
    if kind == "fluidsynth":
        from agents.outputs.fluid import FluidSynthOutput

        return _fields_named(where, FluidSynthOutput, values)
    from agents.outputs.null import NullOutput

    return _fields_named(where, NullOutput, values)
