"""Notes as OSC messages, for synth hosts that speak OSC (a Max patch, SuperCollider, a DAW bridge).

With ``timetag=True`` every message travels in a bundle stamped with its due time, so the host can
play it sample-accurately and the agent may send it early (``schedules_ahead``): network jitter is
then absorbed by the host's scheduler instead of ours. A beat's notes sent together (`Output.send`)
share one bundle, one datagram; without timetags each note stays a plain message, as hosts that
take no bundles expect.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Iterable, Mapping
from functools import partial
from itertools import groupby
from typing import Any

from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from agents.outputs.base import Clock, Output, OutputError, check_int
from agents.outputs.burst import Message, Write

__all__ = ["OscOutput", "wall_time_of"]


def wall_time_of(due: float, clock: Clock = time.perf_counter) -> float:
    """Map a local monotonic time to Unix wall time, which is what OSC timetags count.

    The offset is sampled now, bracketing ``time.time()`` between two clock reads, so a wall clock
    that NTP has slewed since the agent started is accounted for: the receiving host reads the
    timetag with today's wall clock, not the one we had at start-up.
    """
    before = clock()
    wall = time.time()
    after = clock()
    return due + (wall - (before + after) / 2.0)


class OscOutput(Output):
    """Sends ``<base>/note channel pitch velocity`` (velocity 0 releases), all ints.

    ``address_pattern`` is where notes go when it ends in ``/note`` (the default ``/note`` gives
    ``/note``, ``/cc``, ``/program``: one ``route /note /cc /program`` in Max), and otherwise the
    folder they go in (``/synth/bass`` gives ``/synth/bass/note``, ``/synth/bass/cc``, ...).
    Controllers carry ``channel control value``, programs ``channel program``. Channels go out
    1-based by default, as Max's ``noteout`` and synth UIs number them (``channel_base=0``: as on
    the wire).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 57120,
        address_pattern: str = "/note",
        timetag: bool = False,
        *,
        channel_base: int = 1,
        channels: Iterable[int] | None = None,
        programs: Mapping[int, int] | None = None,
        controls: Mapping[int, Mapping[int, int]] | None = None,
        name: str | None = None,
        clock: Clock = time.perf_counter,
    ) -> None:
        if not isinstance(host, str) or not host:
            raise ValueError(f"host must be a non-empty str, got {host!r}")
        check_int("port", port, 1, 65535)
        if not isinstance(address_pattern, str) or not address_pattern.startswith("/"):
            raise ValueError(f"address_pattern must be a str starting with '/', got {address_pattern!r}")
        if any(c in address_pattern for c in " #*?,[]{}"):
            raise ValueError(f"address_pattern must be a plain OSC address, got {address_pattern!r}")
        self.channel_base = check_int("channel_base", channel_base, 0, 1)
        super().__init__(channels=channels, programs=programs, controls=controls,
                         name=name or f"osc://{host}:{port}", clock=clock)
        self.host = host
        self.port = int(port)
        self.address_pattern = address_pattern
        trimmed = address_pattern.rstrip("/")
        base = trimmed.removesuffix("/note") if trimmed.endswith("/note") else trimmed
        self.note_address = f"{base}/note"
        self.cc_address = f"{base}/cc"
        self.program_address = f"{base}/program"
        self.timetag = bool(timetag)
        self.schedules_ahead = self.timetag
        self._sock: socket.socket | None = None
        self._target: Any = None

    def _open_transport(self) -> None:
        # Resolve once here: a name lookup per note (python-osc's UDPClient) would sit in the timing path.
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
            family, kind, proto, _, target = infos[0]
            self._sock = socket.socket(family, kind, proto)
            # Connecting picks the local address by route (127.0.0.1 for a loopback synth), so the
            # socket never sits on every interface the way an unbound sendto socket would.
            self._sock.connect(target)
        except OSError as exc:
            raise OutputError(f"OSC output: cannot resolve host {self.host!r}: {exc}") from exc
        self._target = target

    def _close_transport(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _note_on(self, channel: int, pitch: int, velocity: int, due: float | None) -> None:
        self._deliver(self._message(self.note_address, channel + self.channel_base, pitch, velocity), due)

    def _note_off(self, channel: int, pitch: int, due: float | None) -> None:
        self._deliver(self._message(self.note_address, channel + self.channel_base, pitch, 0), due)

    def _control(self, channel: int, control: int, value: int, due: float | None) -> None:
        self._deliver(self._message(self.cc_address, channel + self.channel_base, control, value), due)

    def _program(self, channel: int, program: int) -> None:
        self._deliver(self._message(self.program_address, channel + self.channel_base, program), None)

    def _writes(self, messages: list[Message]) -> list[Write]:
        """Datagrams made now, so at the due time each write is one `send`. With timetags, the
        messages due at one moment travel in one bundle stamped with it."""
        oscs = [(self._message(self.note_address, ch + self.channel_base, pitch, vel if on else 0), due)
                for on, ch, pitch, vel, due in messages]
        if not self.timetag:
            return [(partial(self._write, osc.dgram), 1) for osc, _ in oscs]
        writes: list[Write] = []
        for due, same in groupby(oscs, key=lambda pair: pair[1]):
            contents = [osc for osc, _ in same]
            writes.append((partial(self._write, self._bundle(contents, due)), len(contents)))
        return writes

    def _deliver(self, osc: OscMessage, due: float | None) -> None:
        self._write(self._bundle([osc], due) if self.timetag else osc.dgram)

    def _bundle(self, contents: list[OscMessage], due: float | None) -> bytes:
        # python-osc annotates the timestamp as int, but its own docstring and write_date take the
        # float system time this passes.
        bundle = OscBundleBuilder(
            IMMEDIATELY if due is None else wall_time_of(due, self._clock)  # type: ignore[arg-type]
        )
        for osc in contents:
            bundle.add_content(osc)
        dgram: bytes = bundle.build().dgram
        return dgram

    def _write(self, dgram: bytes) -> None:
        assert self._sock is not None
        try:
            self._sock.send(dgram)
        except OSError as exc:  # the kernel's word on an earlier datagram: name where it went
            hint = "; is the synth listening there?" if exc.errno == errno.ECONNREFUSED else ""
            raise OutputError(f"OSC output {self.host}:{self.port}: {exc.strerror or exc}{hint}") from None

    def _message(self, address: str, *ints: int) -> OscMessage:
        builder = OscMessageBuilder(address)
        for value in ints:
            builder.add_arg(int(value), OscMessageBuilder.ARG_TYPE_INT)
        return builder.build()
