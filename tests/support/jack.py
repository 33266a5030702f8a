"""A private JACK server (dummy driver) and a MIDI capture, so tests use real ports on any machine.

The dummy driver needs no sound hardware and clocks itself like a real card (48 kHz, 64-frame
periods: a MIDI event crosses the graph within about one period, 1.3 ms).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import rtmidi

NOTE_ON = 0x90
NOTE_OFF = 0x80
CONTROL_CHANGE = 0xB0


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.01) -> None:
    """Poll ``condition`` until true; fail naming ``what`` instead of hanging or sleeping blindly."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)  # a poll step: the loop above is bounded by the deadline


@dataclass
class JackServer:
    """A running jackd; ``name`` is what JACK_DEFAULT_SERVER must say for clients to find it."""

    name: str
    sample_rate: int
    period: int
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(cls, sample_rate: int = 48000, period: int = 64, timeout: float = 10.0) -> JackServer:
        """Start ``jackd -d dummy`` (realtime as root) under a unique name; wait until clients can connect."""
        jackd = shutil.which("jackd")
        if jackd is None:
            raise FileNotFoundError("jackd is not installed (Debian: apt install jackd2)")
        name = f"bcn-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        # JACK_NO_START_SERVER: a client that misses our server must fail, not spawn one on a real card.
        env = {**os.environ, "JACK_DEFAULT_SERVER": name, "JACK_NO_START_SERVER": "1"}
        log_fd, log_name = tempfile.mkstemp(prefix=f"{name}-", suffix=".log")
        # As root (CI), the server runs realtime: a non-realtime dummy driver starved by a loaded
        # machine delivers MIDI late and in bursts, which is the test rig's lag, not the product's.
        realtime = ["-R"] if os.geteuid() == 0 else ["--no-realtime"]
        cmd = [jackd, "-n", name, *realtime, "-d", "dummy", "-r", str(sample_rate), "-p", str(period)]
        # A test run killed by a timeout skips fixture teardown; tying jackd to a pipe from this process
        # means the server still goes when we do (EOF on stdin -> the watcher kills it).
        # (fd 3: sh gives background jobs /dev/null as stdin, so the watcher reads the pipe through a dup.)
        watch = 'exec 3<&0; "$@" </dev/null 3<&- & j=$!; (read -r _ <&3; kill "$j") & wait "$j"'
        with os.fdopen(log_fd, "wb") as log_file:
            process = subprocess.Popen(
                ["sh", "-c", watch, "sh", *cmd], stdin=subprocess.PIPE, stdout=log_file,
                stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )
        server = cls(name, sample_rate, period, process, Path(log_name), env)
        try:
            wait_until(server.ready, timeout, f"jackd {name} to accept clients")
        except BaseException:
            server.stop()
            raise
        return server

    def ready(self) -> bool:
        """True once a client can connect; raises if jackd already died (a wait would be pointless)."""
        if self.process.poll() is not None:
            raise RuntimeError(f"jackd exited with {self.process.returncode}:\n{self.log()}")
        probe = subprocess.run(["jack_lsp", "-s", self.name], env=self.env, capture_output=True, check=False)
        return probe.returncode == 0

    def connections(self) -> dict[str, list[str]]:
        """Every port and what it is connected to, as ``jack_lsp -c`` reports them."""
        listing = subprocess.run(
            ["jack_lsp", "-c", "-s", self.name], env=self.env, capture_output=True, text=True, check=True
        ).stdout
        ports: dict[str, list[str]] = {}
        current = ""
        for line in listing.splitlines():
            if line.startswith((" ", "\t")):
                ports[current].append(line.strip())
            elif line:
                current = line
                ports[current] = []
        return ports

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 5.0) -> None:
        """Close the watcher's pipe (it stops jackd with SIGTERM); force the group only if that hangs."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)
        self.log_path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Captured:
    """One MIDI message as it arrived, with the perf_counter time of arrival."""

    message: tuple[int, ...]
    time: float
    # JACK's own reckoning: the first arrival's time plus rtmidi's frame-time deltas since, so a
    # poll thread starved by a loaded machine does not bunch what JACK delivered evenly
    stamp: float = 0.0

    @property
    def kind(self) -> int:
        return self.message[0] & 0xF0

    @property
    def channel(self) -> int:
        return self.message[0] & 0x0F

    @property
    def is_note_on(self) -> bool:
        return self.kind == NOTE_ON and self.message[2] > 0

    @property
    def is_note_off(self) -> bool:
        return self.kind == NOTE_OFF or (self.kind == NOTE_ON and self.message[2] == 0)

    def is_cc(self, control: int) -> bool:
        return self.kind == CONTROL_CHANGE and self.message[1] == control


class MidiCapture:
    """A JACK MIDI input that records everything it receives.

    With ``source`` it connects itself to that output port (substring of the JACK name, waited
    for, since the port may appear a moment later); without, it only offers its own input port
    (``port_name``) for an output to connect to.

    Messages are drained from rtmidi's queue by a Python thread, not taken in an rtmidi callback:
    a callback runs Python (and waits for the GIL) inside JACK's process cycle, and on a busy
    machine the late cycles garble messages (seen here: a burst arrived as copies of its first
    message). Arrival times are therefore accurate to the poll interval (0.25 ms).
    """

    POLL_S = 0.00025

    def __init__(self, source: str | None = None, client_name: str = "capture", timeout: float = 5.0) -> None:
        self._midi = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, client_name)
        self._midi.ignore_types(sysex=False, timing=False, active_sense=False)
        self._received: list[Captured] = []
        self._arrived = threading.Condition()
        self._stop = threading.Event()
        self.source: str | None = None
        try:
            if source is None:
                self._midi.open_virtual_port("in")
            else:
                wait_until(lambda: self._find(source) is not None, timeout, f"JACK MIDI port {source!r}")
                index = self._find(source)
                assert index is not None
                self.source = self._midi.get_ports()[index]
                self._midi.open_port(index, "in")
        except BaseException:
            self._midi.delete()
            raise
        self.port_name = f"{client_name}:in"
        self._stamp: float | None = None
        self._reader = threading.Thread(target=self._drain, name=f"midi-capture-{client_name}", daemon=True)
        self._reader.start()

    def _find(self, source: str) -> int | None:
        ports = self._midi.get_ports()
        hits = [i for i, p in enumerate(ports) if source in p]
        return hits[0] if hits else None

    def _drain(self) -> None:
        while not self._stop.is_set():
            event = self._midi.get_message()
            if event is None:
                time.sleep(self.POLL_S)  # rtmidi has no blocking read: a poll step until close()
                continue
            arrived = time.perf_counter()
            self._stamp = arrived if self._stamp is None else self._stamp + float(event[1])
            with self._arrived:
                self._received.append(Captured(tuple(event[0]), arrived, self._stamp))
                self._arrived.notify_all()

    @property
    def received(self) -> list[Captured]:
        with self._arrived:
            return list(self._received)

    def notes_on(self) -> list[Captured]:
        return [c for c in self.received if c.is_note_on]

    def notes_off(self) -> list[Captured]:
        return [c for c in self.received if c.is_note_off]

    def clear(self) -> None:
        with self._arrived:
            self._received.clear()

    def wait_for(
        self, count: int, timeout: float = 2.0, match: Callable[[Captured], bool] | None = None
    ) -> list[Captured]:
        """Wait until ``count`` messages (those passing ``match``, default note-ons) have arrived."""
        test = match or (lambda c: c.is_note_on)
        with self._arrived:
            ok = self._arrived.wait_for(lambda: sum(map(test, self._received)) >= count, timeout)
            hits = [c for c in self._received if test(c)]
            if not ok:
                raise TimeoutError(f"got {len(hits)} of {count} expected MIDI messages in {timeout} s; "
                                   f"all received: {[c.message for c in self._received]}")
            return hits

    def sync(self, probe: Callable[[], object], timeout: float = 5.0, each: float = 0.02) -> None:
        """Wait until a connection made by this side carries messages, then forget the probes.

        JACK makes a connection live at a later cycle and drops what was sent before. ``probe``
        sends one harmless message at the source; it is repeated, one at a time, until one arrives.
        """
        deadline = time.monotonic() + timeout
        while True:
            probe()
            with self._arrived:
                if self._arrived.wait_for(lambda: bool(self._received), each):
                    self._received.clear()
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"no message reached {self.port_name} from {self.source} in {timeout} s")

    def stuck_notes(self) -> set[tuple[int, int]]:
        """Keys a receiving synth would still hold: on without a later off or channel all-notes-off."""
        held: set[tuple[int, int]] = set()
        for c in self.received:
            if c.is_note_on:
                held.add((c.channel, c.message[1]))
            elif c.is_note_off:
                held.discard((c.channel, c.message[1]))
            elif c.is_cc(123) or c.is_cc(120):
                held = {k for k in held if k[0] != c.channel}
        return held

    def close(self) -> None:
        self._stop.set()
        self._reader.join()
        self._midi.close_port()
        self._midi.delete()

    def __enter__(self) -> MidiCapture:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
