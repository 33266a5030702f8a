"""A bus listener for tests: a real UDP socket on the ensemble's monitor port, decoding every message.

The OSC bus sends each message to the monitor port too (`bus.osc.monitor_port`), so a test sees what
the agents see: the timeline, the plan and every committed note, each with its arrival time.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from pythonosc.osc_packet import OscPacket

from protocol import codec
from protocol.messages import Note
from protocol.timeline import Timeline


class BusMonitor:
    def __init__(self, ensemble: str, port: int, host: str = "127.0.0.1") -> None:
        self.ensemble = ensemble
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, Any]] = []
        self.cond = threading.Condition()
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data, _ = self.sock.recvfrom(65536)
            except (TimeoutError, OSError):
                continue
            t = time.monotonic()
            try:
                for m in OscPacket(data).messages:
                    msg = codec.from_osc(self.ensemble, m.message.address, m.message.params)
                    with self.cond:
                        self.messages.append((t, msg))
                        self.cond.notify_all()
            except Exception:
                continue

    def of(self, cls: type, where: Callable[[Any], bool] | None = None) -> list[tuple[float, Any]]:
        with self.cond:
            return [(t, m) for t, m in self.messages if isinstance(m, cls) and (where is None or where(m))]

    def notes(self, source: str | None = None, after: float = 0.0) -> list[Note]:
        return [m for t, m in self.of(Note) if t >= after and (source is None or m.source == source)]

    def wait(self, cond: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                self.cond.release()
                try:
                    value = cond()
                finally:
                    self.cond.acquire()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
                self.cond.wait(min(left, 0.05))

    def timeline(self) -> Timeline | None:
        tls = self.of(Timeline)
        return max((m for _, m in tls), key=lambda m: m.epoch) if tls else None

    def close(self) -> None:
        self._stop = True
        self.thread.join(1.0)
        self.sock.close()
