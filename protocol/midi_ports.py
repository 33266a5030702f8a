"""Finding and opening a MIDI port, the same way for every part that opens one.

An agent's `output: {type: midi}`, the human's `source: {type: midi}` and the conductor's
`midi_clock` each name a port the way a user reads it in their DAW or `aconnect -l`. One rule finds
it everywhere: the exact name first, else a case-insensitive part of the name that only one port
has (names carry client ids that change between boots: `Surge XT:Surge XT 130:0`); a part that
matches several ports is refused with their names, never a guess. `api="auto"` tries every MIDI
system compiled into python-rtmidi, in rtmidi's own order, and uses the first that has the port.
A failure is one line that names what was asked for and what each system has.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from protocol.midi_backend import load_rtmidi

__all__ = ["API_NAMES", "MidiPortError", "OpenPort", "candidate_apis", "match_port", "open_port"]

API_NAMES = ("jack", "alsa", "coremidi", "winmm")
_API_CONSTANTS = {"jack": "API_UNIX_JACK", "alsa": "API_LINUX_ALSA", "coremidi": "API_MACOSX_CORE",
                  "winmm": "API_WINDOWS_MM"}
# JACK makes a new connection live a cycle or two later (a 1024-frame period is 21 ms): what an
# output sends before then is lost, so an output waits this long after opening on JACK.
JACK_SETTLE_S = 0.05


class MidiPortError(OSError):
    """A port that cannot be found or opened; the message is the one line the user sees."""


@dataclass(frozen=True, slots=True)
class OpenPort:
    """An open rtmidi client, the MIDI system it runs on, and the port's full name."""

    client: Any
    api_name: str
    port_name: str


def _rtmidi(what: str) -> Any:
    return load_rtmidi(what)


def candidate_apis(api: str, what: str = "MIDI port") -> list[int]:
    """rtmidi's API ids to try for ``api`` (`auto` or one name), in rtmidi's order."""
    rtmidi = _rtmidi(what)
    compiled = [a for a in rtmidi.get_compiled_api() if a != rtmidi.API_RTMIDI_DUMMY]
    if api == "auto":
        return compiled
    if api not in API_NAMES:
        raise ValueError(f"api must be one of auto, {', '.join(API_NAMES)}; got {api!r}")
    wanted = getattr(rtmidi, _API_CONSTANTS[api])
    if wanted not in compiled:
        names = ", ".join(rtmidi.get_api_name(a) for a in compiled) or "none"
        raise MidiPortError(f"api {api!r} is not compiled into this python-rtmidi (compiled: {names})")
    return [wanted]


def match_port(wanted: str, ports: list[str]) -> int | None:
    """The index of the port ``wanted`` names: the exact name, else the one port whose name holds it
    (any case); None when none does; MidiPortError when several do."""
    if wanted in ports:
        return ports.index(wanted)
    hits = [i for i, p in enumerate(ports) if wanted.lower() in p.lower()]
    if len(hits) > 1:
        names = ", ".join(repr(ports[i]) for i in hits)
        raise MidiPortError(f"port {wanted!r} is ambiguous: it matches {names}; give more of the name")
    return hits[0] if hits else None


def open_port(
    direction: Literal["in", "out"],
    *,
    port: str | None,
    api: str = "auto",
    client_name: str = "barcelona",
    virtual_name: str = "out",
    what: str = "MIDI port",
) -> OpenPort:
    """Open ``port`` (found by `match_port`) or, with ``port`` None, a virtual port named
    ``virtual_name`` that other programs connect to. ``what`` names the YAML setting in messages."""
    rtmidi = _rtmidi(what)
    make = rtmidi.MidiIn if direction == "in" else rtmidi.MidiOut
    problems: list[str] = []
    for api_id in candidate_apis(api, what):
        api_name = rtmidi.get_api_name(api_id)
        try:
            client = make(api_id, client_name)
        except rtmidi.RtMidiError as exc:
            problems.append(f"{api_name}: not usable ({exc})")
            continue
        try:
            opened = _open_on(client, api_name, port, f"{client_name}:{virtual_name}", virtual_name, problems)
        except BaseException:
            client.delete()
            raise
        if opened is not None:
            if direction == "out" and api_name == "jack":
                time.sleep(JACK_SETTLE_S)
            return OpenPort(client, api_name, opened)
        client.delete()
    asked = f"virtual port {virtual_name!r}" if port is None else f"MIDI port {port!r}"
    detail = "; ".join(problems) or "no MIDI API compiled into python-rtmidi"
    raise MidiPortError(f"{what}: cannot open {asked} (api={api}): {detail}")


def _open_on(client: Any, api_name: str, port: str | None, virtual_full: str, virtual_name: str,
             problems: list[str]) -> str | None:
    """The opened port's name, or None (with the reason added to ``problems``)."""
    rtmidi = _rtmidi("MIDI port")
    if port is None:
        try:
            client.open_virtual_port(virtual_name)
        except (rtmidi.RtMidiError, NotImplementedError) as exc:
            problems.append(f"{api_name}: no virtual ports ({exc})")
            return None
        return virtual_full
    ports = client.get_ports()
    index = match_port(port, ports)
    if index is None:
        problems.append(f"{api_name} has {', '.join(map(repr, ports)) or 'no ports'}")
        return None
    try:
        client.open_port(index, virtual_name)
    except (rtmidi.RtMidiError, SystemError) as exc:  # listed, but gone or refused by the system
        problems.append(f"{api_name}: cannot open {ports[index]!r} ({exc})")
        return None
    return str(ports[index])
