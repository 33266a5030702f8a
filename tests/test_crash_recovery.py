"""Keep playing through crashes: each fault is inflicted for real on a running ensemble.

WHY real faults: a conductor killed by the OOM killer, a broker restarted by the system's package
manager, a Ctrl-C in the terminal. Mocks would hide what matters here (a UDP port that vanishes, TCP
links that drop, signals reaching a whole process group at once, notes left sounding at a MIDI port).
Every wait is a condition with a deadline, so a behaviour that breaks makes its test fail, not hang.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import mido
import paho.mqtt.client as paho
import pytest
import yaml
from pythonosc.osc_message_builder import OscMessageBuilder
from support.broker import Mosquitto
from support.ensembles import read_json, start_launcher, wait_for, write_ensemble
from support.jack import JackServer, MidiCapture
from support.monitor import BusMonitor
from support.net_fixtures import free_port
from support.procs import alive, children, cmdline

from protocol import codec
from protocol.messages import Note, PlanState
from protocol.timeline import Timeline

pytestmark = [pytest.mark.network, pytest.mark.slow]

AGENTS = ("bass", "piano", "drums")
GRID = 0.5  # every onset of the default ensemble's patterns is on a half beat


# -- processes --------------------------------------------------------------------------------------


def _role_pids(launcher: int, role: str) -> list[int]:
    """Children of the launcher started as `python -m <role>` (conductor or agents)."""
    return [k for k in children(launcher) if f" -m {role} " in cmdline(k) and alive(k)]


def _finish(proc: subprocess.Popen[str]) -> str:
    """Stop a launcher the test no longer needs (if still running) and return its stderr."""
    if proc.poll() is None:
        proc.kill()
    try:
        _, err = proc.communicate(timeout=10)
    except (subprocess.TimeoutExpired, ValueError):
        return ""
    return err or ""


def _control(port: int, address: str, value: float | str) -> None:
    """One OSC message to the conductor's control surface, as Max/MSP or TouchOSC send it."""
    b = OscMessageBuilder(address)
    b.add_arg(value, "f" if isinstance(value, float) else "s")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b.build().dgram, ("127.0.0.1", port))


def _tempo_at(tl: Timeline | None, t: float) -> float:
    return 0.0 if tl is None else tl.tempo_at_beat(tl.beat_at(t))


def _recorded_beats(path: Path) -> tuple[dict[str, list[float]], list[float]]:
    """Onsets in beats per named track, and every tempo in the file."""
    mid = mido.MidiFile(str(path))
    tracks: dict[str, list[float]] = {}
    tempos: list[float] = []
    for track in mid.tracks:
        t, name, onsets = 0, "", []
        for m in track:
            t += m.time
            if m.type == "track_name":
                name = m.name
            elif m.type == "note_on" and m.velocity > 0:
                onsets.append(t / mid.ticks_per_beat)
            elif m.type == "set_tempo":
                tempos.append(round(mido.tempo2bpm(m.tempo), 3))
        tracks[name] = onsets
    return tracks, tempos


# -- 1. the conductor dies --------------------------------------------------------------------------
def test_sigkilled_conductor_agents_keep_time_and_the_restart_resumes_everything(tmp_path: Path) -> None:
    monitor_port = free_port()
    yaml_path = write_ensemble(tmp_path, {"bus": {"osc": {"monitor_port": monitor_port}}})
    control = int(yaml.safe_load(yaml_path.read_text())["control"]["port"])
    prefix = "/barcelona/demo"
    rec, rep = tmp_path / "out.mid", tmp_path / "report.json"
    mon = BusMonitor("demo", monitor_port)
    proc = start_launcher(yaml_path, "--bars", "12", "--record", str(rec), "--report", str(rep),
                  "--stats-dir", str(tmp_path / "stats"))  # fmt: skip
    stopped = False
    try:
        mon.wait(lambda: all(len(mon.notes(a)) >= 2 for a in AGENTS), 30, "every agent playing")
        first_plan = max((m for _, m in mon.of(PlanState)), key=lambda m: m.epoch)
        _control(control, f"{prefix}/tempo", 96.0)
        _control(control, f"{prefix}/plan", "F | C7")
        newer = lambda: [m for _, m in mon.of(PlanState, lambda m: m.epoch > first_plan.epoch)]  # noqa: E731
        edited = mon.wait(newer, 5, "the plan edit")[-1]
        assert edited.text.replace(" ", "") == "F|C7", edited
        # Kill once the new tempo is playing, so the outage runs on the timeline the change made.
        wait_for(lambda: _tempo_at(mon.timeline(), time.monotonic()) == 96.0, 10, "the new tempo to play")

        [conductor] = _role_pids(proc.pid, "conductor")
        # Freeze supervision first: the launcher brings a conductor back within about a second, too
        # short to be sure every agent commits notes in the gap; SIGCONT ends the outage on our cue.
        os.kill(proc.pid, signal.SIGSTOP)
        stopped = True
        os.kill(conductor, signal.SIGKILL)
        killed = time.monotonic()
        last = mon.timeline()
        assert last is not None and last.playing
        kill_beat = last.beat_at(killed)
        mon.wait(lambda: all(len(mon.notes(a, after=killed)) >= 2 for a in AGENTS), 10,
                 "every agent to commit notes while the conductor is down")  # fmt: skip
        os.kill(proc.pid, signal.SIGCONT)
        stopped = False
        resumed = time.monotonic()

        # Nobody spoke for the conductor meanwhile, and the agents kept the last timeline's grid.
        assert not [t for t, _ in mon.of(Timeline) if killed < t < resumed]
        outage = [(t, m) for t, m in mon.of(Note) if killed < t < resumed and m.source in AGENTS]
        assert outage
        for t, note in outage:
            assert abs(note.start_beat / GRID - round(note.start_beat / GRID)) < 1e-6, note
            lead = note.start_beat - last.beat_at(t)  # committed about one beat ahead of its sound
            assert 0.2 <= lead <= 1.5, (lead, note)

        # The launcher restarts the conductor; it broadcasts the same tempo, plan and bar position.
        wait_for(lambda: [p for p in _role_pids(proc.pid, "conductor") if p != conductor], 10,
                 "the launcher to restart the conductor")  # fmt: skip
        new_tl = mon.wait(lambda: [m for t, m in mon.of(Timeline) if t > resumed], 15, "the new timeline")[0]
        new_plan = mon.wait(lambda: [m for t, m in mon.of(PlanState) if t > resumed], 5, "the new plan")[0]
        now = time.monotonic()
        assert new_tl.playing
        assert _tempo_at(new_tl, now) == 96.0
        assert abs(new_tl.beat_at(now) - last.beat_at(now)) < 1e-6, (new_tl, last)
        assert new_plan.text == edited.text and new_plan.epoch > edited.epoch  # a newer copy, same plan
        cond_stats = tmp_path / "stats" / "conductor.json"
        stats = wait_for(
            lambda: (s := read_json(cond_stats)).get("pid") not in (None, conductor) and s,
            5,
            "the new conductor's stats",
        )
        assert stats["bar"] >= int(kill_beat // 4) and stats["tempo"] == 96.0, stats
        # The agents play on without a restart of their own, past the point of the kill.
        mon.wait(lambda: all(mon.notes(a, after=resumed) for a in AGENTS), 10, "notes after the restart")
        assert proc.wait(timeout=60) == 0
    finally:
        mon.close()
        if stopped:
            os.kill(proc.pid, signal.SIGCONT)
        err = _finish(proc)
    assert "conductor exited with -9; restarting it" in err, err
    report = json.loads(rep.read_text())
    restarts = {a: report["parts"][a]["restarts"] for a in AGENTS}
    print(f"\nconductor restarts {report['conductor'].get('restarts')}, agent restarts {restarts}, "
          f"stuck notes {report['stuck_notes']}")  # fmt: skip
    assert report["conductor"]["restarts"] == 1
    assert all(report["parts"][a]["restarts"] == 0 for a in AGENTS)
    assert report["stuck_notes"] == 0
    # The journal carried the recording across the kill: notes from before it and after the restart.
    tracks, tempos = _recorded_beats(rec)
    restart_beat = last.beat_at(resumed)
    for part in (*AGENTS, "melody"):
        assert any(b < kill_beat for b in tracks[part]), (part, kill_beat)
        assert any(b > restart_beat for b in tracks[part]), (part, restart_beat)
    assert 96.0 in tempos, tempos


# -- 2. the broker restarts -------------------------------------------------------------------------
class NoteTap:
    """A plain MQTT subscriber to every agent's notes, as an outside listener would be."""

    def __init__(self, host: str, port: int, ensemble: str) -> None:
        self.notes: list[tuple[float, Note]] = []
        self.lock = threading.Lock()
        self.ensemble = ensemble
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"tap-{os.getpid()}")
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=5)
        self.client.subscribe(f"barcelona/{ensemble}/note/+", 0)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        note = codec.from_mqtt(self.ensemble, msg.topic, msg.payload)
        with self.lock:
            self.notes.append((time.monotonic(), note))

    def last(self, source: str, n: int) -> list[Note]:
        with self.lock:
            return [m for _, m in self.notes if m.source == source][-n:]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _agent_stats(stats_dir: Path) -> dict[str, dict[str, Any]]:
    return {a: read_json(stats_dir / f"agent-{a}.json") for a in AGENTS}


def _tempo_now(stats: dict[str, Any]) -> float:
    tm = stats.get("timemap")
    if not tm:
        return 0.0
    return _tempo_at(Timeline(**tm["timeline"]), time.monotonic() + tm["offset_s"])


def test_broker_restart_agents_play_through_and_lose_no_control(tmp_path: Path, mosquitto: Mosquitto) -> None:
    yaml_path = write_ensemble(
        tmp_path, {"bus": {"transport": "mqtt", "mqtt": {"host": mosquitto.host, "port": mosquitto.port}}}
    )
    control = int(yaml.safe_load(yaml_path.read_text())["control"]["port"])
    stats_dir, rep = tmp_path / "stats", tmp_path / "report.json"
    proc = start_launcher(yaml_path, "--stats-dir", str(stats_dir), "--report", str(rep))
    tap: NoteTap | None = None
    try:
        wait_for(lambda: all(s.get("notes", 0) >= 2 for s in _agent_stats(stats_dir).values()), 30,
                 "every agent playing")  # fmt: skip
        before = _agent_stats(stats_dir)
        mark = len(mosquitto.log_text())
        mosquitto.stop()
        down = _agent_stats(stats_dir)
        # Agents play on their last timeline while there is no broker: commits and sends go on.
        wait_for(
            lambda: all(
                s.get("committed", 0) >= down[a].get("committed", 0) + 2
                and s.get("notes", 0) >= down[a].get("notes", 0) + 2
                for a, s in _agent_stats(stats_dir).items()
            ),
            10,
            "every agent to commit and send notes during the outage",
        )
        for a, s in _agent_stats(stats_dir).items():
            assert s["timemap"]["timeline"] == before[a]["timemap"]["timeline"], a
            assert s["pid"] == before[a]["pid"], f"{a} was restarted: the outage should not kill it"
        mosquitto.start()
        # Steer at once, before the links are back: QoS 1 and the outbox must deliver both.
        _control(control, "/barcelona/demo/tempo", 96.0)
        _control(control, "/barcelona/demo/plan", "F")
        wait_for(
            lambda: all(_tempo_now(s) == 96.0 for s in _agent_stats(stats_dir).values()),
            15,
            "the tempo change to reach every agent",
        )
        log = lambda: mosquitto.log_text()[mark:]  # noqa: E731
        wait_for(lambda: all(f"as barcelona-demo-{who}-" in log() for who in (*AGENTS, "conductor")), 10,
                 "every process to reconnect to the restarted broker")  # fmt: skip
        tap = NoteTap(mosquitto.host, mosquitto.port, "demo")
        f_tones = {"bass": {5, 0}, "piano": {5, 9, 0}}  # F: root and fifth; the F major triad
        wait_for(
            lambda: all(
                len(notes := tap.last(a, 4)) == 4 and all(n.pitch % 12 in pcs for n in notes)
                for a, pcs in f_tones.items()
            ),
            15,
            "bass and piano to play the edited plan",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if tap is not None:
            tap.close()
        err = _finish(proc)
    report = json.loads(rep.read_text())
    assert report["bus"] == "mqtt"
    assert report["stuck_notes"] == 0, err
    for a in AGENTS:
        assert report["parts"][a]["restarts"] == 0, (a, err)
        assert report["parts"][a]["stuck_notes"] == 0


# -- 3. Ctrl-C and SIGTERM --------------------------------------------------------------------------
def _unreleased_at_port(cap: MidiCapture, channels: set[int]) -> list[str]:
    """What a synth on the capture port would still hold after the stop; empty when all is silent.

    Checked on what ARRIVED, not on the agent's ledger: the ledger reaches 0 as soon as the note-offs
    are handed to rtmidi, even when the process then exits before JACK delivers them (the stuck-note
    bug this guards). Every key turned on must get an explicit note-off (some synths ignore CC 123),
    and each of the agent's channels must get all-notes-off after the last note-on.
    """
    received = cap.received
    held: set[tuple[int, int]] = set()
    for c in received:
        if c.is_note_on:
            held.add((c.channel, c.message[1]))
        elif c.is_note_off:
            held.discard((c.channel, c.message[1]))
    problems = [f"no note-off for channel {ch} pitch {p}" for ch, p in sorted(held)]
    last_on = max((i for i, c in enumerate(received) if c.is_note_on), default=-1)
    for ch in sorted(channels):
        if not any(c.is_cc(123) and c.channel == ch for c in received[last_on + 1 :]):
            problems.append(f"no all-notes-off (CC 123) on channel {ch} after the last note-on")
    return problems


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_stop_signal_ends_every_child_within_two_seconds_with_no_stuck_note(
    tmp_path: Path, jack_server: JackServer, how: str
) -> None:
    client = f"stop{how.replace('-', '')}"
    yaml_path = write_ensemble(tmp_path, {})
    data = yaml.safe_load(yaml_path.read_text())
    channels: set[int] = set()
    for agent in data["agents"]:
        if agent["name"] == "piano":
            # One chord held almost a whole bar: the stop is sure to come while it sounds.
            agent["engine"]["rhythm"] = [{"beat": 0, "duration": 3.9, "velocity": 70}]
            agent["output"] = {"type": "midi", "port": f"{client}:in", "api": "jack"}
            channels.add(int(agent["channel"]))
    yaml_path.write_text(yaml.safe_dump(data, sort_keys=False))
    rep = tmp_path / "report.json"
    problems: list[str] = []
    tail: list[tuple[int, ...]] = []
    with MidiCapture(client_name=client) as cap:
        # Its own session, as a terminal gives a job its own process group: Ctrl-C reaches them all.
        proc = start_launcher(yaml_path, "--report", str(rep), new_session=True)
        try:
            wait_for(lambda: cap.stuck_notes(), 30, "a piano chord sounding at the capture port")
            kids = children(proc.pid)
            assert len(kids) == 5  # the conductor, three agents and the output process that plays them
            assert cap.stuck_notes(), "the chord should still be sounding at the stop"
            t0 = time.monotonic()
            if how == "ctrl-c":
                os.killpg(proc.pid, signal.SIGINT)
            else:
                proc.send_signal(signal.SIGTERM)
            wait_for(lambda: not any(alive(k) for k in kids), 2.0, "every child to exit", every=0.005)
            gone = time.monotonic() - t0
            assert proc.wait(timeout=5) == 0
            # The piano has exited, so whatever it sent has crossed JACK or never will; the wait only
            # covers the capture's reader thread (it polls every 0.25 ms).
            try:
                wait_for(lambda: not _unreleased_at_port(cap, channels), 1.0, "the final note-offs")
            except AssertionError:
                problems = _unreleased_at_port(cap, channels)
                tail = [c.message for c in cap.received[-12:]]
        finally:
            err = _finish(proc)
    print(f"\n{how}: every child gone in {gone:.3f} s")
    assert not problems, f"{problems}; last messages at the port: {tail}\n{err}"
    report = json.loads(rep.read_text())
    assert report["stuck_notes"] == 0, err
    assert all(p["stuck_notes"] == 0 for p in report["parts"].values() if p["role"] == "agent")
    assert report["parts"]["piano"]["notes"] > 0
