"""MIDI ports through python-rtmidi, on whichever MIDI system this machine has.

Musicians run Linux (ALSA, or JACK for studio setups) and macOS (CoreMIDI); CI runs JACK's dummy
driver because it has no sound hardware. So nothing here assumes one API: ``api="auto"`` tries every
API compiled into rtmidi, in rtmidi's own order, and uses the first one that can do the job.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from typing import Literal

from protocol.midi_backend import load_rtmidi

# python-rtmidi is the optional `midi` extra: without it, importing this module is one clear line.
load_rtmidi("output: {type: midi}")
import rtmidi  # noqa: E402

from agents.outputs.base import (  # noqa: E402
    CC_ALL_NOTES_OFF,
    CC_ALL_SOUND_OFF,
    CC_SUSTAIN,
    CONTROL_CHANGE,
    NOTE_OFF,
    NOTE_ON,
    Clock,
    Output,
    OutputError,
    midi_bytes,
)
from agents.outputs.burst import Message, Write  # noqa: E402
from protocol.midi_ports import MidiPortError, candidate_apis, open_port  # noqa: E402

__all__ = ["Api", "MidiPortOutput", "PortNotFoundError", "available_apis", "list_ports"]

log = logging.getLogger(__name__)

Api = Literal["auto", "jack", "alsa", "coremidi"]


# JACK timing allowances, sized for a 1024-frame period (21 ms), the largest in common use.
# Fallback drain when JACK's cycle counter cannot be read (no loadable libjack): a wall-clock guess.
_JACK_DRAIN_S = 0.08
# Releases (note-offs, sustain/all-notes/all-sound off) sent this recently are sent once more at close.
_JACK_RESEND_WINDOW_S = 1.0


class PortNotFoundError(OutputError, LookupError):
    """The named port is not there; the message lists the ports that are, so the user can pick one."""


def _candidate_apis(api: str) -> list[int]:
    try:
        return candidate_apis(api, "output")
    except MidiPortError as exc:
        raise OutputError(str(exc)) from None


def _client(api_id: int, client_name: str) -> rtmidi.MidiOut:
    """Connect to one MIDI system; rtmidi raises here when it is absent (no /dev/snd/seq, no jackd)."""
    return rtmidi.MidiOut(api_id, client_name)


@contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Hide what libasound and libjack print to fd 2 while we probe a MIDI system that is absent.

    Probing is how "auto" works, so those lines are expected, not errors. Only for the listing
    calls (a CLI, one thread): muting fd 2 while other threads log would hide their messages.
    """
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # pytest capture, embedded interpreters
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(fd), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def available_apis() -> list[str]:
    """Names of the MIDI APIs that work right now (compiled in and their server/driver reachable)."""
    usable = []
    for api_id in _candidate_apis("auto"):
        try:
            with _quiet_native_stderr():
                _client(api_id, "barcelona-probe").delete()
        except rtmidi.RtMidiError:
            continue
        usable.append(rtmidi.get_api_name(api_id))
    return usable


def list_ports(api: Api | str = "auto") -> list[str]:
    """Output (destination) ports a MidiPortOutput could open, for ``--list-ports``.

    With ``auto`` an unusable API contributes nothing; a named API that cannot be reached raises,
    because the user asked for it specifically.
    """
    ports: list[str] = []
    for api_id in _candidate_apis(api):
        try:
            with _quiet_native_stderr():
                client = _client(api_id, "barcelona-list")
        except rtmidi.RtMidiError as exc:
            if api != "auto":
                raise OutputError(f"MIDI api {api!r} is not usable: {exc}") from exc
            continue
        try:
            ports.extend(p for p in client.get_ports() if p not in ports)
        finally:
            client.delete()
    return ports


def _is_release(message: tuple[int, ...]) -> bool:
    """Note-offs (either form), sustain up, all-sound-off and all-notes-off: what ends sound.

    Bounded: at most one entry per distinct message (16 channels x 128 keys, plus the CCs).
    """
    kind = message[0] & 0xF0
    if kind == NOTE_OFF or (kind == NOTE_ON and len(message) > 2 and message[2] == 0):
        return True
    if kind != CONTROL_CHANGE:
        return False
    control, value = message[1], message[2]
    return control in (CC_ALL_SOUND_OFF, CC_ALL_NOTES_OFF) or (control == CC_SUSTAIN and value == 0)




class MidiPortOutput(Output):
    """Notes to a hardware or software synth over a MIDI port (named, or a virtual port others join)."""

    def __init__(
        self,
        port: str | None = None,
        virtual: bool = False,
        api: Api | str = "auto",
        client_name: str = "barcelona",
        *,
        channels: Iterable[int] | None = None,
        programs: Mapping[int, int] | None = None,
        controls: Mapping[int, Mapping[int, int]] | None = None,
        name: str | None = None,
        clock: Clock = time.perf_counter,
    ) -> None:
        if port is not None and not isinstance(port, str):
            raise TypeError(f"port must be a str or None, got {type(port).__name__}")
        if not virtual and not port:
            raise ValueError("port: name the MIDI port to open, or set virtual=True to create one")
        if not isinstance(client_name, str) or not client_name:
            raise ValueError(f"client_name must be a non-empty str, got {client_name!r}")
        _candidate_apis(api)  # an unknown or uncompiled api fails here, when the part is built
        super().__init__(channels=channels, programs=programs, controls=controls,
                         name=name or port or client_name, clock=clock)
        self.port = port
        self.virtual = bool(virtual)
        self.api = api
        self.client_name = client_name
        self._midi: rtmidi.MidiOut | None = None
        # JACK only: release messages sent lately -> perf_counter time, to repeat at close.
        self._releases: dict[tuple[int, ...], float] = {}
        self.api_name: str | None = None
        self.port_name: str | None = None

    def _open_transport(self) -> None:
        try:
            opened = open_port("out", port=None if self.virtual else self.port, api=self.api,
                               client_name=self.client_name,
                               virtual_name=(self.port or "out") if self.virtual else "out", what="output")
        except MidiPortError as exc:
            raise PortNotFoundError(str(exc)) from None
        self._midi, self.api_name, self.port_name = opened.client, opened.api_name, opened.port_name
        log.info("%s: opened %s on %s", self.name, self.port_name, self.api_name)

    def _send(self, message: tuple[int, ...], due: float | None) -> None:
        assert self._midi is not None
        self._midi.send_message(list(message))
        if self.api_name == "jack" and _is_release(message):
            self._releases.pop(message, None)  # re-insert: the dict keeps send order for the repeat
            self._releases[message] = time.perf_counter()

    def _writes(self, messages: list[Message]) -> list[Write]:
        """The MIDI bytes made now, so at the due time each write is the port's own call; on JACK
        through `_send`, which also notes the releases to repeat at close."""
        assert self._midi is not None
        if self.api_name == "jack":
            return [(partial(self._send, midi_bytes(m), None), 1) for m in messages]
        return [(partial(self._midi.send_message, list(midi_bytes(m))), 1) for m in messages]

    def _close_transport(self) -> None:
        if self._midi is None:
            return
        try:
            if self.api_name == "jack":
                self._drain_jack()
                self._repeat_releases()
                self._drain_jack()
            self._midi.close_port()
        finally:
            self._midi.delete()
            self._midi = None

    def _repeat_releases(self) -> None:
        """Send the last second's releases once more, in their order, before the port goes.

        JACK hands MIDI to a receiver zero-copy, in the cycle it was sent in: a receiver that misses
        that cycle (an xrun; here the capture client missed the stop's cycles whenever the machine
        was busy) never sees it, and a missed note-off is a stuck note. The sender cannot see an
        xrun, so the releases go out twice, cycles apart; a release of a silent key is harmless.
        """
        assert self._midi is not None
        since = time.perf_counter() - _JACK_RESEND_WINDOW_S
        for message in [m for m, sent in self._releases.items() if sent >= since]:
            self._midi.send_message(list(message))
        self._releases.clear()

    def _drain_jack(self) -> None:
        """Keep the port until what was sent last has crossed the graph.

        rtmidi's JACK backend queues sends in a ringbuffer that the port's process callback copies
        into the port buffer once per cycle; ``close_port`` waits for one callback and then
        unregisters the port at once, so a receiver that has not run that cycle yet reads nothing.
        A few periods' wait lets the last note-offs cross. Every close path comes here (stop,
        SIGTERM/SIGINT through the agent's shutdown, a failed open, an exception in a ``with``).
        """
        time.sleep(_JACK_DRAIN_S)
