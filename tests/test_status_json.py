"""The ensemble status as JSON on the bus and to displays (for Max): the message, its size bound, and
a live run where a display client on the control port receives it once a beat with every agent in it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket
from support.ensembles import ROOT, write_ensemble
from support.monitor import BusMonitor
from support.net_fixtures import free_port

from conductor.status_json import StatusJson, bar_and_beat
from launcher.plot import bar_ticks
from protocol import codec
from protocol.status_messages import MAX_STATUS_JSON, AgentStatus, BeatTick, EnsembleStatus

ENS = "demo"


def stats(n_agents: int = 2, reasons: int = 0) -> dict[str, Any]:
    from conductor.status_json import agent_fields

    agents = {
        f"agent{i:02d}": agent_fields(AgentStatus(f"agent{i:02d}", 1, "playing", 10, 40, 1, 0, 0.0, 1.0,
                                                   0.2, -0.01, 0.3))
        for i in range(n_agents)
    }
    return {
        "playing": True, "tempo": 120.0, "beat": 9.5, "bar": 3, "chord": "G7", "bus": "osc",
        "roster": sorted(agents), "agents": agents, "invalid_messages": reasons,
        "invalid_reasons": {f"reason.number.{i}": 1 for i in range(reasons)}, "refused": {},
        "link": {"mode": "follow", "peers": 1},
    }


@pytest.mark.parametrize("encode", ["osc", "mqtt"])
def test_status_round_trips(encode: str) -> None:
    msg = StatusJson().message(stats())
    if encode == "osc":
        address, args = codec.to_osc(ENS, msg)
        assert address == f"/barcelona/{ENS}/ensemble/status" and [t for t, _ in args] == ["s"]
        back = codec.from_osc(ENS, address, [v for _, v in args])
    else:
        back = codec.from_mqtt(ENS, codec.mqtt_topic(ENS, msg), codec.to_msgpack(msg))
    assert back == msg
    data = back.data
    assert (data["bar"], data["chord"], data["tempo"], data["playing"]) == (3, "G7", 120.0, True)
    assert data["agents"]["agent00"]["late"] == 1 and data["agents"]["agent00"]["alive"]
    assert data["bus"]["roster"] == ["agent00", "agent01"] and data["link"]["peers"] == 1


@pytest.mark.parametrize("bad", ["not json", "[1, 2]", "x" * (MAX_STATUS_JSON + 1)])
def test_bad_status_is_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(codec.DecodeError) as err:
        codec.from_osc(ENS, f"/barcelona/{ENS}/ensemble/status", [bad])
    assert err.value.reason == "ensemble/status.json"


def test_status_always_fits_one_message() -> None:
    """Fifteen agents and a flood of refusal reasons: the detail goes, the message stays valid."""
    msg = StatusJson().message(stats(15, reasons=400))
    assert len(msg.json) <= MAX_STATUS_JSON
    data = msg.data
    assert len(data["agents"]) == 15 and data["bus"]["invalid"] == 400


def test_notes_per_second_from_heartbeats() -> None:
    now = [100.0]
    sj = StatusJson(clock=lambda: now[0])
    s = stats(1)
    sj.data(s)
    now[0] += 2.0
    s["agents"]["agent00"] = {**s["agents"]["agent00"], "notes": 50}
    assert sj.data(s)["agents"]["agent00"]["notes_per_s"] == pytest.approx(5.0)


# -- live: a display client (Max's [udpreceive]) gets it once a beat ---------------------------------------
def osc(address: str, *args: tuple[str, object]) -> bytes:
    b = OscMessageBuilder(address)
    for tag, value in args:
        b.add_arg(value, tag)
    return b.build().dgram


@pytest.mark.network
@pytest.mark.slow
def test_display_client_receives_status_once_a_beat(tmp_path: Path) -> None:
    monitor_port = free_port()
    display = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    display.bind(("127.0.0.1", 0))
    display.settimeout(0.2)
    reply = {"reply_port": display.getsockname()[1]}  # as a patch's [udpreceive] port is set in the YAML
    path = write_ensemble(tmp_path, {"bus": {"osc": {"monitor_port": monitor_port}}, "control": reply})
    data = yaml.safe_load(path.read_text())
    control_port = int(data["control"]["port"])
    agents = sorted(a["name"] for a in data["agents"])
    mon = BusMonitor(ENS, monitor_port)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run_ensemble.py"), str(path), "--bars", "6", "--quiet"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    statuses: list[tuple[float, dict[str, Any]]] = []
    ticks: list[BeatTick] = []
    try:
        # Any allowed packet makes its sender a display; a no-op control is what a patch sends first.
        hello = osc(f"/barcelona/{ENS}/agent/{agents[0]}/temperature", ("f", 1.0))
        deadline = time.monotonic() + 40.0
        while time.monotonic() < deadline and not any(
            all(d["agents"].get(a, {}).get("notes", 0) > 0 for a in agents) for _, d in statuses
        ):
            if not statuses:
                display.sendto(hello, ("127.0.0.1", control_port))
            try:
                dgram, _ = display.recvfrom(65536)
            except TimeoutError:
                continue
            for m in OscPacket(dgram).messages:
                msg = codec.from_osc(ENS, m.message.address, m.message.params)
                if isinstance(msg, EnsembleStatus):
                    statuses.append((time.monotonic(), msg.data))
                elif isinstance(msg, BeatTick):
                    ticks.append(msg)
        assert statuses, "no EnsembleStatus reached the display"
        last = statuses[-1][1]
        assert sorted(last["agents"]) == agents and all(a["alive"] for a in last["agents"].values())
        assert all(last["agents"][a]["notes"] > 0 for a in agents), last
        assert last["playing"] and last["tempo"] > 0 and last["chord"] and last["bus"]["invalid"] == 0
        assert sorted(last["bus"]["roster"]) == agents
        beats = [(d["bar"], round(d["beat"])) for _, d in statuses]
        assert len(set(beats)) == len(beats), "one status per beat"
        # Bars and beats count from 1 on the wire: the tick sent with each status names its beat so.
        assert ticks and min(t.bar for t in ticks) >= 1 and {t.beat for t in ticks} <= {1, 2, 3, 4}, ticks
        for _, d in statuses:
            assert d["bar"] == int(d["beat"]) // 4 + 1, d
        assert {bar_and_beat(d["beat"], 4) for _, d in statuses} <= {(t.bar, t.beat) for t in ticks}
        assert mon.of(EnsembleStatus), "the status goes on the bus too"
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        display.close()
        mon.close()
        if proc.poll() is None:
            proc.kill()
    json.dumps(statuses[-1][1])  # what Max's dict gets is plain JSON


# -- bars count from 1 everywhere: the beat ticks, the status, --plot ---------------------------------------
@pytest.mark.parametrize("bpb", [3, 4, 7])
def test_displays_and_the_plot_number_bars_alike_from_1(bpb: int) -> None:
    """The plot's bar numbers sit at the beat where the conductor's tick says "bar N, beat 1"."""
    assert bar_and_beat(0.0, bpb) == (1, 1) and bar_and_beat(bpb - 0.5, bpb) == (1, bpb)
    assert bar_and_beat(float(bpb), bpb) == (2, 1)
    for beat, label in bar_ticks(bpb, 40.0 * bpb):
        assert bar_and_beat(float(beat), bpb) == (int(label), 1), (beat, label)


def test_the_status_says_which_parts_the_player_took() -> None:
    roles = {"mode": "auto", "player": ["bass"], "yielded": ["agent00"], "parts": {"agent00": "bass"},
             "yields": {"agent00": {"from_bar": 3, "until_bar": None}}, "changes": [{"bar": 2}]}
    data = StatusJson().message({**stats(), "roles": roles}).data
    assert data["roles"] == {"mode": "auto", "player": ["bass"], "yielded": ["agent00"],
                             "yields": {"agent00": {"from_bar": 3, "until_bar": None}}}
    assert data["agents"]["agent00"]["yielded"] and data["agents"]["agent00"]["role"] == "bass"
    assert not data["agents"]["agent01"]["yielded"]
    big = StatusJson().message({**stats(n_agents=15, reasons=400), "roles": roles}).data
    assert big["agents"]["agent00"]["yielded"]  # kept when the detail goes
