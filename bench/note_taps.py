"""Every note the fault soak hears on the bus, with its arrival time: over MQTT or OSC.

Rejoin times are measured from these: kill -> the first note the restarted agent commits, heard on
the bus (a plain paho subscriber to `barcelona/<ens>/note/+` on MQTT, which reconnects after the
broker restarts; the tests' BusMonitor on the OSC bus's monitor port).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any

from bench.soak_setup import HOST
from protocol import codec
from protocol.messages import Note


class MqttNotes:
    """Every note published on the broker, with its arrival time; reconnects after a broker restart."""

    def __init__(self, port: int, ensemble: str) -> None:
        import paho.mqtt.client as paho

        self.ensemble, self.lock = ensemble, threading.Lock()
        self.items: list[tuple[float, Note]] = []
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"soak-tap-{os.getpid()}")
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=0.5)  # type: ignore[arg-type]
        self.client.on_connect = lambda c, *_: c.subscribe(f"barcelona/{ensemble}/note/+", 0)
        self.client.on_message = self._on_message
        self.client.connect(HOST, port, keepalive=5)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        with contextlib.suppress(codec.DecodeError, TypeError, ValueError):
            note = codec.from_mqtt(self.ensemble, msg.topic, msg.payload)
            with self.lock:
                self.items.append((time.monotonic(), note))

    def notes(self, source: str, after: float) -> list[tuple[float, Note]]:
        with self.lock:
            return [(t, n) for t, n in self.items if t > after and n.source == source]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class OscNotes:
    """The OSC bus copies every message to its monitor port; the tests' BusMonitor decodes them."""

    def __init__(self, port: int, ensemble: str) -> None:
        from tests.support.monitor import BusMonitor

        self.mon = BusMonitor(ensemble, port)

    def notes(self, source: str, after: float) -> list[tuple[float, Note]]:
        return [(t, n) for t, n in self.mon.of(Note) if t > after and n.source == source]

    def close(self) -> None:
        self.mon.close()
