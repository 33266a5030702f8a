"""A whole ensemble in one event loop on virtual time: the conductor, every agent and a control surface
on an in-memory loopback (protocol/bus_memory.py), played as fast as the CPU allows.

The parts are the real Conductor and Agent objects, their real loops, bus codec and OSC parser; what
is left out is the kernel (sockets, processes, threads) and the wall clock. So the note walk, the
commit window, mute/solo, plan edits and re-planning can be checked to the note in milliseconds,
beside the subprocess tests that keep the rest honest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from agents.agent import Agent
from agents.outputs.null import NullOutput
from conductor.conductor import Conductor
from protocol import codec
from protocol.bus_memory import MemoryNetwork, MemoryTransport
from protocol.ensemble import Ensemble, parse_ensemble
from protocol.virtual_time import ManualClock, run
from support.until import until

ENSEMBLES = Path(__file__).resolve().parents[2] / "ensembles"
START_S = 1000.0  # the virtual clock's start: a monotonic clock is never near 0 either
SURFACE = ("127.0.0.1", 9000)  # where the test's control surface sends from (the YAML allows loopback)

Script = Callable[["InProcessEnsemble"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Played:
    """One note as it left an agent's output: the beat its note-on went out at, and what it was."""

    beat: float
    pitch: int
    velocity: int
    channel: int
    due: float | None  # the virtual time it was meant for
    sent_at: float  # the virtual time it went


def patterns_data() -> dict[str, Any]:
    """ensembles/patterns.yaml: a replayed melody, bass, piano and drums on written rhythms."""
    data: dict[str, Any] = yaml.safe_load((ENSEMBLES / "patterns.yaml").read_text())
    return data


def mixed_data(seed: int = 7) -> dict[str, Any]:
    """ensembles/default.yaml's model bass (models/default) beside patterns.yaml's piano, under the
    replayed melody: a conductor, a human, an onnx agent and a pattern agent."""
    data: dict[str, Any] = yaml.safe_load((ENSEMBLES / "default.yaml").read_text())
    data["agents"] = [data["agents"][0], patterns_data()["agents"][1]]
    data["seed"] = seed
    return data


# What runs on its own thread against the real clock, or needs a device: none of it can follow a
# virtual clock, so an in-process ensemble refuses it by the field that asks for it.
REAL_TIME_ONLY = {
    "human.source.type: midi": lambda d: (d.get("human") or {}).get("source", {}).get("type") == "midi",
    "conductor.midi_clock": lambda d: (d.get("conductor") or {}).get("midi_clock") is not None,
    "conductor.link.enabled": lambda d: bool(((d.get("conductor") or {}).get("link") or {}).get("enabled")),
}


def ensemble(data: dict[str, Any]) -> Ensemble:
    """An ensemble from YAML data, made to run in-process: every output `null` (it keeps what it
    sends, stamped on the virtual clock), no realtime priority to ask for, and a bus monitor port
    (every process copies its bus traffic there) for the harness to listen on."""
    for field, asks in REAL_TIME_ONLY.items():
        if asks(data):
            raise ValueError(f"{field}: runs on the real clock (a thread or a device); not in-process")
    bus = data.get("bus", {})
    osc = {"base_port": 57400, **bus.get("osc", {})}
    osc.setdefault("monitor_port", osc["base_port"] - 1)
    agents = [{**a, "output": {"type": "null"}} for a in data.get("agents", [])]
    data = {**data, "timing": {**data.get("timing", {}), "realtime": False}, "bus": {**bus, "osc": osc},
            "agents": agents}
    return parse_ensemble(data, "<in-process>")


class InProcessEnsemble:
    """The conductor and agents of `ens` on one MemoryNetwork and one ManualClock."""

    def __init__(self, ens: Ensemble, base_dir: Path, *, bars: int, latency_s: float = 0.0,
                 wait_agents_s: float = 5.0) -> None:
        self.ens = ens
        self.clock = ManualClock(START_S)
        self.network = MemoryNetwork(self.clock, latency_s)
        self.conductor = Conductor(ens, base_dir=base_dir, bars=bars, wait_agents_s=wait_agents_s,
                                   clock=self.clock, network=self.network)
        # Built before the loop runs, as the agent processes build theirs: a model loads here.
        self.agents = {a.name: Agent(ens, a.name, base_dir=base_dir, clock=self.clock, network=self.network)
                       for a in ens.agents}
        self.surface: MemoryTransport | None = None
        self.heard: list[tuple[float, Any]] = []  # (virtual time, message): the bus monitor's log
        self.wall_s = 0.0

    # -- running -----------------------------------------------------------------------------------
    def play(self, script: Script | None = None) -> float:
        """Play until the conductor's run ends (its bars, or a stop); returns the wall seconds taken.
        `script` runs beside the band (it may wait for beats and steer through `control`)."""
        t0 = time.perf_counter()
        run(self._play(script), self.clock)
        self.wall_s = time.perf_counter() - t0
        return self.wall_s

    async def _play(self, script: Script | None) -> None:
        agents = [asyncio.create_task(a.run(), name=f"agent {n}") for n, a in self.agents.items()]
        ctl = self.ens.control
        monitor_port = self.ens.bus.osc.monitor_port
        assert monitor_port is not None, "bus.osc.monitor_port: build the ensemble with ensemble()"
        async with (
            self.network.transport(SURFACE, [(ctl.bind_host, ctl.port)]) as surface,
            self.network.transport((self.ens.conductor.address, monitor_port)) as monitor,
        ):
            self.surface = surface
            listening = asyncio.create_task(self._monitor(monitor), name="monitor")
            conductor = asyncio.create_task(self.conductor.run(), name="conductor")
            side = asyncio.create_task(script(self), name="script") if script is not None else None
            try:
                await conductor
                if side is not None:
                    await side
            finally:
                for a in self.agents.values():
                    a.request_stop()
                # An agent's failure is the test's failure: raise it rather than leave it in a task.
                await asyncio.gather(*agents)
                if side is not None and not side.done():
                    side.cancel()
                listening.cancel()

    async def _monitor(self, monitor: MemoryTransport) -> None:
        """Everything the processes send on the bus, decoded as any process would decode it."""
        async for packet in monitor.incoming():
            msg = codec.from_osc(self.ens.name, packet.address, packet.args)
            self.heard.append((packet.received_at, msg))

    def messages(self, kind: type) -> list[tuple[float, Any]]:
        """(virtual time, message) of every `kind` message the bus carried, in order."""
        return [(t, m) for t, m in self.heard if isinstance(m, kind)]

    # -- steering, from a script ------------------------------------------------------------------
    def beat(self) -> float:
        """The conductor's beat now (frozen while stopped)."""
        return self.conductor.state.timeline.beat_at(self.clock())

    async def until_beat(self, beat: float, timeout: float = 600.0) -> None:
        """Return once the conductor's timeline has reached `beat`, looking each virtual millisecond (a
        control sent next lands within 1 ms of it); fail if the run ends first, or after `timeout`
        virtual seconds (a transport left stopped), rather than poll for ever."""

        def reached() -> bool:
            if self.conductor.state.timeline.playing and self.beat() >= beat:
                return True
            if self.conductor.finished.is_set():
                raise AssertionError(f"the run ended at beat {self.beat():.2f}, before beat {beat}")
            return False

        await until(reached, timeout, f"the conductor's beat {beat}", every=0.001)

    def control(self, address: str, *args: Any) -> None:
        """Send one OSC control from the surface, as TouchOSC would (the conductor's allowlist, parser
        and dispatcher all see it): `control("agent/bass/mute", 1)`."""
        assert self.surface is not None, "control() is for a script, while the band plays"
        tags = {bool: "i", int: "i", float: "f", str: "s"}
        self.surface.send(f"/barcelona/{self.ens.name}/{address}", [(tags[type(a)], a) for a in args])

    # -- what was played ----------------------------------------------------------------------------
    def played(self, name: str) -> list[Played]:
        """The note-ons agent `name`'s output sent, in order, with the conductor's beat at each send.
        (One tempo for the whole run: the beat is read off the stopped timeline's last segment.)"""
        out = self.agents[name].output
        assert isinstance(out, NullOutput), f"agents.{name}.output: the in-process tests read a null output"
        assert len({bpm for _, bpm in self.conductor.recorder.tempos}) <= 1, "played() reads one tempo"
        tl = replace(self.conductor.state.timeline, playing=True)
        return [Played(round(tl.beat_at(s.sent_at), 6), s.message[1], s.message[2], s.channel, s.due,
                       s.sent_at)
                for s in out.notes()]

    def recorded(self, name: str) -> list[tuple[float, float, int, int]]:
        """(start beat, duration, pitch, velocity) of every note the conductor recorded for part `name`."""
        return sorted((n.start_beat, n.duration_beats, n.pitch, n.velocity)
                      for n in self.conductor.recorder.notes.get(name, []))
