"""python-rtmidi is optional: only a part that opens a real MIDI port needs it (the `midi` extra).

WHY optional: it is a compiled extension, and where no wheel fits the Python (3.13, for one) pip
builds it from source, which stops without ALSA's or JACK's headers. The default ensemble plays
without any MIDI port, so it must install and run without it. Every place that opens a port (an
agent's `output: {type: midi}`, a human `source: {type: midi}`, the conductor's `midi_clock`) asks
here first and fails with one line that names the extra and what it takes to build it.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

__all__ = ["INSTALL_HINT", "MidiBackendError", "load_rtmidi", "midi_backend_error", "midi_ports_error",
           "midi_ports_needed"]

INSTALL_HINT = "pip install 'barcelona[midi]' (and ALSA's libasound2-dev / JACK to build it)"


class MidiBackendError(ImportError):
    """No usable python-rtmidi; the message is the one line the user sees."""


def midi_backend_error() -> str | None:
    """Why MIDI ports cannot open on this install, in one line, or None when python-rtmidi imports."""
    try:
        import rtmidi  # noqa: F401
    except ImportError as exc:  # not installed, or its shared library (libasound, libjack) is missing
        detail = "" if isinstance(exc, ModuleNotFoundError) and exc.name == "rtmidi" else f" ({exc})"
        return f"MIDI ports need the 'midi' extra: {INSTALL_HINT}{detail}"
    return None


def load_rtmidi(where: str) -> ModuleType:
    """The rtmidi module for a port about to open at `where` (a YAML path such as
    ``agents.bass.output``), or MidiBackendError saying, for that field, what to install."""
    error = midi_backend_error()
    if error is not None:
        raise MidiBackendError(f"{where}: {error}")
    import rtmidi

    return rtmidi


def midi_ports_needed(ens: Any, host: str | None = None) -> list[str]:
    """The YAML fields of an ensemble (a protocol.ensemble.Ensemble) that open a MIDI port, on `host`
    (None: every host), so a check can say before anything starts that this install cannot play it.
    The human part's input is read by the conductor, so it is on the conductor's host."""
    fields = [f"agents.{a.name}.output" for a in ens.agents
              if a.output.type == "midi" and host in (None, a.host)]
    if host in (None, ens.conductor.host):
        if ens.human is not None and ens.human.source.type == "midi":
            fields.append("human.source")
        if ens.conductor.midi_clock is not None:
            fields.append("conductor.midi_clock")
    return fields


def midi_ports_error(ens: Any, host: str | None = None) -> str | None:
    """One line when the ensemble opens a MIDI port on `host` and this install cannot, else None."""
    fields = midi_ports_needed(ens, host)
    error = midi_backend_error() if fields else None
    return None if error is None else f"{', '.join(fields)}: {error}"
