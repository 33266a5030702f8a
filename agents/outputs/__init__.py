"""Synth outputs: where an agent's notes leave the process (MIDI port, OSC host, FluidSynth, nowhere).

Every output shares one base (checked, locked sends; a ledger of sounding notes; all-notes-off on
open and close), so the scheduler never has to know which kind it drives. FluidSynth's library is
loaded only when a FluidSynth output opens, so agents that send MIDI or OSC never need it; the MIDI
names below are imported on first use, so python-rtmidi (the `midi` extra) is needed only for them.
"""

from typing import TYPE_CHECKING, Any

from agents.outputs.base import (
    CC_ALL_NOTES_OFF,
    CC_ALL_SOUND_OFF,
    CC_SUSTAIN,
    Output,
    OutputClosedError,
    OutputError,
)
from agents.outputs.factory import OUTPUT_TYPES, make_output
from agents.outputs.fluid import FluidSynthOutput, find_soundfont
from agents.outputs.null import NullOutput, Sent
from agents.outputs.osc import OscOutput, wall_time_of

if TYPE_CHECKING:
    from agents.outputs.midi import MidiPortOutput, PortNotFoundError, available_apis, list_ports

__all__ = [
    "CC_ALL_NOTES_OFF",
    "CC_ALL_SOUND_OFF",
    "CC_SUSTAIN",
    "OUTPUT_TYPES",
    "FluidSynthOutput",
    "MidiPortOutput",
    "NullOutput",
    "OscOutput",
    "Output",
    "OutputClosedError",
    "OutputError",
    "PortNotFoundError",
    "Sent",
    "available_apis",
    "find_soundfont",
    "list_ports",
    "make_output",
    "wall_time_of",
]

_MIDI_NAMES = ("MidiPortOutput", "PortNotFoundError", "available_apis", "list_ports")


def __getattr__(name: str) -> Any:
    if name in _MIDI_NAMES:
        from agents.outputs import midi

        return getattr(midi, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
