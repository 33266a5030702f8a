"""Per-part volume, pan and dynamics: one set of bounds for the YAML, the control surface and the bus;
CC7/CC10 on every output kind when it opens; live changes; the recording carries the mix."""

from __future__ import annotations

import itertools
import socket
from pathlib import Path
from typing import Any

import mido
import numpy as np
import pytest
from pythonosc.osc_message import OscMessage
from support.jack import CONTROL_CHANGE, JackServer, MidiCapture

from agents.outputs import FluidSynthOutput, MidiPortOutput, NullOutput, OscOutput, make_output
from conductor.control import ControlError, parse_control
from conductor.recorder import Recorder
from conductor.state import ConductorState, Mix
from protocol.codec import from_mqtt, from_osc, mqtt_topic, to_msgpack, to_osc
from protocol.ensemble import EnsembleError, parse_ensemble
from protocol.harmony import ChordPlan
from protocol.instruments import DYNAMICS
from protocol.messages import AgentParams, Control, Note
from protocol.mix import CC_PAN, CC_VOLUME, pan_cc
from protocol.timeline import Timeline

_names = itertools.count()


def agent_yaml(**fields: Any) -> dict[str, Any]:
    return {"agents": [{"name": "bass", "channel": 1, **fields}]}


def params(**fields: Any) -> AgentParams:
    return AgentParams(**{"agent": "bass", "epoch": 1, "muted": False, "temperature": 1.0, "density": 1.0,
                          "top_p": 0.9, "top_k": 20, **fields})


# ---- one set of bounds ----------------------------------------------------------------------------

# field, the lowest and highest values allowed, a value just below and just above
BOUNDS = [
    ("volume", 0, 127, -1, 128),
    ("pan", -1.0, 1.0, -1.01, 1.01),
    ("dynamics", 1, 127, 0, 128),
]


@pytest.mark.parametrize(("name", "lo", "hi", "below", "above"), BOUNDS)
def test_yaml_surface_and_bus_accept_and_refuse_the_same_values(
    name: str, lo: float, hi: float, below: float, above: float
) -> None:
    for good in (lo, hi):
        agent = parse_ensemble(agent_yaml(**{name: good})).agents[0]
        assert getattr(agent, name) == good
        assert parse_control("demo", f"/agent/bass/{name}", [float(good)]).value == float(good)
        assert getattr(params(**{name: good}), name) == good
    for bad in (below, above):
        with pytest.raises(EnsembleError, match=rf"agents\.0\.{name}"):
            parse_ensemble(agent_yaml(**{name: bad}))
        with pytest.raises(ControlError) as err:
            parse_control("demo", f"/agent/bass/{name}", [float(bad)])
        assert err.value.reason == f"bad_value.{name}"
        with pytest.raises(ValueError, match=f"AgentParams.{name}"):
            params(**{name: bad})


def test_dynamics_markings_are_the_same_words_everywhere() -> None:
    for marking, velocity in DYNAMICS.items():
        assert Mix.of(parse_ensemble(agent_yaml(dynamics=marking)).agents[0]).dynamics == velocity
        assert parse_control("demo", "/agent/bass/dynamics", [marking]).value == float(velocity)
    with pytest.raises(EnsembleError, match=r"agents\.0\.dynamics"):
        parse_ensemble(agent_yaml(dynamics="fff"))


def test_pan_maps_to_cc10_with_the_centre_at_64() -> None:
    assert [pan_cc(p) for p in (-1.0, -0.5, 0.0, 0.5, 1.0)] == [0, 32, 64, 96, 127]
    values = [pan_cc(p / 100) for p in range(-100, 101)]
    assert values == sorted(values)


def test_params_carry_the_mix_over_both_encodings() -> None:
    msg = params(volume=90, pan=-0.25, dynamics=98)
    address, args = to_osc("demo", msg)
    assert from_osc("demo", address, [v for _, v in args]) == msg
    assert from_mqtt("demo", mqtt_topic("demo", msg), to_msgpack(msg)) == msg
    # A sender that predates the mix fields still decodes, at the defaults.
    old = from_osc("demo", address, [v for _, v in args][:7])
    assert (old.volume, old.pan, old.dynamics) == (100, 0.0, DYNAMICS["mf"])


# ---- the conductor resolves them --------------------------------------------------------------------


def test_conductor_starts_from_the_yaml_and_applies_live_changes(tmp_path: Path) -> None:
    ens = parse_ensemble({"agents": [
        {"name": "bass", "channel": 1, "volume": 90, "pan": -0.5, "dynamics": "p",
         "engine": {"temperature": 0.7}},
        {"name": "piano", "channel": 2},
    ]})
    tl = Timeline(tempo_bpm=120.0).started(10.0, at_beat=0.0)
    s = ConductorState(tl, ChordPlan.parse("C"), agents=("bass", "piano"))
    s.mix = {a.name: Mix.of(a) for a in ens.agents}
    first = {p.agent: p for p in s.params_messages()}
    assert (first["bass"].volume, first["bass"].pan, first["bass"].dynamics) == (90, -0.5, DYNAMICS["p"])
    assert first["bass"].temperature == 0.7  # the YAML's, not a default that would reset the agent
    assert (first["piano"].volume, first["piano"].pan) == (100, 0.0)
    s.apply(parse_control("demo", "/agent/*/volume", [64.0]), now=11.0)
    s.apply(parse_control("demo", "/agent/piano/pan", [0.75]), now=11.0)
    [*_, piano] = s.apply(parse_control("demo", "/agent/piano/dynamics", ["ff"]), now=11.0)
    assert (piano.volume, piano.pan, piano.dynamics) == (64, 0.75, DYNAMICS["ff"])
    s.save(tmp_path / "state.json")
    back = ConductorState.load(tmp_path / "state.json", ("bass", "piano"))
    assert {p.agent: (p.volume, p.pan) for p in back.params_messages()} == {"bass": (64, -0.5),
                                                                             "piano": (64, 0.75)}


# ---- outputs send CC7/CC10 after the program --------------------------------------------------------

MIX = {3: {CC_VOLUME: 90, CC_PAN: 20}}


def test_null_output_sends_program_then_volume_and_pan_on_open() -> None:
    out = make_output({"type": "null", "channels": [3], "programs": {3: 33}, "controls": MIX})
    assert isinstance(out, NullOutput)
    with out:
        sent = [s.message for s in out.sent]
    program = sent.index((0xC3, 33))
    assert sent[program + 1 :] == [(0xB3, CC_VOLUME, 90), (0xB3, CC_PAN, 20)]


def test_a_bad_control_names_the_field() -> None:
    with pytest.raises(ValueError, match="control value"):
        NullOutput(controls={3: {CC_VOLUME: 128}})
    with pytest.raises(TypeError, match=r"output\.controls"):
        make_output({"type": "null", "controls": [7, 90]})


@pytest.mark.network
def test_osc_output_sends_volume_and_pan_after_the_program(osc_listener: tuple[socket.socket, int]) -> None:
    sock, port = osc_listener
    with OscOutput("127.0.0.1", port, "/bass", channels=[3], programs={3: 33}, controls=MIX):
        got = [OscMessage(sock.recv(65536)) for _ in range(5)]
    assert [(m.address, m.params) for m in got[2:]] == [
        ("/bass/program", [4, 33]), ("/bass/cc", [4, CC_VOLUME, 90]), ("/bass/cc", [4, CC_PAN, 20]),
    ]


@pytest.mark.network
def test_midi_output_sends_volume_and_pan_after_the_program(jack_server: JackServer) -> None:
    with MidiCapture(client_name=f"capture{next(_names)}") as cap:
        out = MidiPortOutput(cap.port_name, api="jack", client_name=f"agent{next(_names)}",
                             channels=[3], programs={3: 33}, controls=MIX)
        with out:
            cap.wait_for(1, match=lambda c: c.kind == CONTROL_CHANGE and c.message[1] == CC_PAN)
        sent = [c.message for c in cap.received]
    program = sent.index((0xC3, 33))
    assert sent[program + 1 : program + 3] == [(0xB3, CC_VOLUME, 90), (0xB3, CC_PAN, 20)]


def _rendered(soundfont: str, volume: int, pan: float) -> np.ndarray:
    controls = {0: {CC_VOLUME: volume, CC_PAN: pan_cc(pan)}}
    synth = FluidSynthOutput(soundfont, audio_driver=None, channels=[0], programs={0: 0}, controls=controls)
    with synth:
        synth.note_on(0, 60, 100)
        return synth.render(0.4).astype(np.float64)


def test_fluidsynth_plays_quieter_and_to_one_side(soundfont: str) -> None:
    """The synth hears the controllers: CC7 40 is well below 127, hard left is silent on the right."""
    loud, soft = _rendered(soundfont, 127, 0.0), _rendered(soundfont, 40, 0.0)
    rms = lambda a: float(np.sqrt((a**2).mean()))  # noqa: E731
    assert rms(soft) < rms(loud) / 3
    left = _rendered(soundfont, 127, -1.0)
    assert rms(left[:, 1]) < rms(left[:, 0]) / 10


# ---- the recording carries the mix ---------------------------------------------------------------------


def test_recording_has_each_parts_volume_and_pan_in_its_track(tmp_path: Path) -> None:
    rec = Recorder([("bass", 1, 33)])
    rec.control("bass", 0.0, CC_VOLUME, 90)
    rec.control("bass", 0.0, CC_PAN, 32)
    rec.control("bass", 4.0, CC_VOLUME, 90)  # unchanged: not repeated
    rec.control("bass", 6.0, CC_VOLUME, 50)
    rec.add(Note(0.0, 1.0, 36, 100, 1, "bass"))
    rec.save(tmp_path / "r.mid")
    track = mido.MidiFile(str(tmp_path / "r.mid")).tracks[1]
    ticks, events = 0, []
    for m in track:
        ticks += m.time
        if m.type in ("program_change", "control_change", "note_on"):
            events.append((ticks, m.type, getattr(m, "control", None), getattr(m, "value", None)))
    assert events == [
        (0, "program_change", None, None),
        (0, "control_change", CC_VOLUME, 90),
        (0, "control_change", CC_PAN, 32),
        (0, "note_on", None, None),
        (6 * 480, "control_change", CC_VOLUME, 50),
    ]
    assert all(m.channel == 1 for m in track if not m.is_meta)


def test_a_restarted_recorder_reads_tempo_and_mix_back_from_the_journal(tmp_path: Path) -> None:
    """The journal is what a conductor killed mid-set leaves: its tempo and controller lines must come
    back as they were written, and a line of the wrong shape (cut short by the kill) is skipped."""
    journal = tmp_path / "r.mid.journal"
    rec = Recorder([("bass", 1, 33)])
    rec.keep_journal(journal, resume=False)
    rec.tempo(0.0, 120.0)
    rec.control("bass", 0.0, CC_VOLUME, 90)
    rec.tempo(8.0, 96.0)
    rec.control("bass", 8.0, CC_PAN, 32)
    assert rec.journal is not None
    rec.journal.write('{"tempo": [12.0]}\n{"cc": ["bass", 12.0, 7]}\n{"tempo": [16.0, 80.0, 1]}\n')
    rec.journal.close()
    again = Recorder([("bass", 1, 33)])
    again.keep_journal(journal, resume=True)
    assert again.tempos == [(0.0, 120.0), (8.0, 96.0)]
    assert again.controls == {"bass": [(0.0, CC_VOLUME, 90), (8.0, CC_PAN, 32)]}
    assert again.journal is not None
    again.journal.close()


def test_control_surface_type_of_the_new_controls() -> None:
    volume = parse_control("demo", "/barcelona/demo/agent/bass/volume", [90.0])
    assert volume == Control("volume", 90.0, "bass")
    assert parse_control("demo", "/agent/bass/pan", [-0.5]) == Control("pan", -0.5, "bass")
