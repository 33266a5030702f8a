"""Synth outputs against real endpoints: JACK MIDI ports, a UDP socket, an in-process FluidSynth."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_bundle_builder import IMMEDIATELY
from pythonosc.osc_message import OscMessage
from support.jack import Captured, JackServer, MidiCapture

from agents.outputs import (
    CC_ALL_NOTES_OFF,
    FluidSynthOutput,
    MidiPortOutput,
    NullOutput,
    OscOutput,
    OutputClosedError,
    OutputError,
    PortNotFoundError,
    available_apis,
    list_ports,
    make_output,
    wall_time_of,
)

_names = itertools.count()


def unique(prefix: str) -> str:
    """JACK renames a clashing client ("x-01"), which would break name matching; never clash."""
    return f"{prefix}{next(_names)}"


def is_all_notes_off(c: Captured) -> bool:
    return c.is_cc(CC_ALL_NOTES_OFF)


@pytest.fixture
def capture(jack_server: JackServer) -> Iterator[MidiCapture]:
    with MidiCapture(client_name=unique("capture")) as cap:
        yield cap


@pytest.fixture
def midi_out(capture: MidiCapture) -> Iterator[MidiPortOutput]:
    out = MidiPortOutput(capture.port_name, api="jack", client_name=unique("agent"), channels=[0])
    with out:
        capture.wait_for(1, match=is_all_notes_off)
        capture.clear()
        yield out


# ---- MIDI over JACK ----------------------------------------------------------------------------------


@pytest.mark.network
def test_open_silences_its_channels_first(capture: MidiCapture) -> None:
    with MidiPortOutput(capture.port_name, client_name=unique("agent"), channels=[2, 5]) as out:
        offs = capture.wait_for(2, match=is_all_notes_off)
        assert out.api_name == "jack"  # api="auto" found the one MIDI system this machine has
        assert sorted(c.channel for c in offs) == [2, 5]
        # Sustain is lifted before all-notes-off, or pedal-held notes would ring on.
        kinds = [(c.channel, c.message[1]) for c in capture.received]
        assert kinds.index((2, 64)) < kinds.index((2, CC_ALL_NOTES_OFF))


@pytest.mark.network
def test_notes_arrive_in_order_with_their_note_offs(capture: MidiCapture, midi_out: MidiPortOutput) -> None:
    sent_times = []
    for pitch in (60, 64, 67):
        sent_times.append(midi_out.note_on(0, pitch, 90))
    for pitch in (67, 64, 60):
        midi_out.note_off(0, pitch)
    capture.wait_for(3, match=lambda c: c.is_note_off)
    assert [c.message for c in capture.received] == [
        (0x90, 60, 90), (0x90, 64, 90), (0x90, 67, 90), (0x80, 67, 0), (0x80, 64, 0), (0x80, 60, 0),
    ]
    arrivals = [c.time for c in capture.notes_on()]
    # Send times come back from the output and precede arrival (one JACK period, ~1.3 ms here).
    assert all(sent < arrived for sent, arrived in zip(sent_times, arrivals, strict=True))
    assert midi_out.sounding() == 0
    assert capture.stuck_notes() == set()


@pytest.mark.network
def test_overlapping_same_pitch_is_released_by_the_last_note_off(
    capture: MidiCapture, midi_out: MidiPortOutput
) -> None:
    midi_out.note_on(0, 60, 100)
    midi_out.note_on(0, 60, 80)
    assert midi_out.sounding() == 2
    assert midi_out.sounding_notes() == {(0, 60): 2}
    midi_out.note_off(0, 60)  # the second note still holds the key: no MIDI note-off yet
    assert midi_out.sounding() == 1
    midi_out.note_on(0, 62, 70)
    capture.wait_for(3)
    assert capture.notes_off() == []
    midi_out.note_off(0, 60)
    off = capture.wait_for(1, match=lambda c: c.is_note_off)
    assert off[0].message == (0x80, 60, 0)
    assert midi_out.sounding_notes() == {(0, 62): 1}


@pytest.mark.network
def test_close_with_notes_sounding_leaves_nothing_stuck(capture: MidiCapture) -> None:
    out = MidiPortOutput(capture.port_name, api="jack", client_name=unique("agent"), channels=[0]).open()
    out.note_on(0, 48, 100)
    out.note_on(3, 72, 100)  # a channel it was not configured for is still covered on close
    out.note_on(0, 48, 100)
    capture.wait_for(3)
    out.close()
    capture.wait_for(2, match=is_all_notes_off)
    assert capture.stuck_notes() == set()
    assert {c.message[:2] for c in capture.notes_off()} == {(0x80, 48), (0x83, 72)}
    assert out.sounding() == 0
    sent = out.sent_count
    out.close()  # idempotent: nothing more is sent
    assert out.sent_count == sent
    with pytest.raises(OutputClosedError):
        out.note_on(0, 60, 100)


@pytest.mark.network
def test_virtual_port_can_be_joined_by_a_synth(jack_server: JackServer) -> None:
    client = unique("bass")
    with MidiPortOutput("notes", virtual=True, api="jack", client_name=client, channels=[1]) as out:
        assert out.port_name == f"{client}:notes"
        with MidiCapture(source=out.port_name, client_name=unique("synth")) as cap:
            cap.sync(lambda: out.control_change(1, 7, 100))
            out.note_on(1, 40, 110)
            (note,) = cap.wait_for(1)
            assert note.message == (0x91, 40, 110)
            out.close()
            cap.wait_for(1, match=is_all_notes_off)
            assert cap.stuck_notes() == set()


@pytest.mark.network
def test_missing_port_error_lists_the_ports_there_are(capture: MidiCapture) -> None:
    assert capture.port_name in list_ports("jack")
    assert "jack" in available_apis()
    out = MidiPortOutput("no-such-synth", api="jack", client_name=unique("agent"))
    with pytest.raises(PortNotFoundError) as err:
        out.open()
    assert "no-such-synth" in str(err.value)
    assert capture.port_name in str(err.value)
    assert not out.is_open


@pytest.mark.network
def test_factory_builds_a_midi_output(capture: MidiCapture) -> None:
    spec = {"type": "midi", "port": capture.port_name, "api": "jack", "client_name": unique("agent"),
            "channels": [4], "programs": {4: 33}}
    with make_output(spec) as out:
        assert isinstance(out, MidiPortOutput)
        program = capture.wait_for(1, match=lambda c: c.kind == 0xC0)
        assert program[0].message == (0xC4, 33)


# ---- OSC ------------------------------------------------------------------------------------------


def drain(sock: socket.socket, count: int) -> list[bytes]:
    return [sock.recv(65536) for _ in range(count)]


@pytest.mark.network
def test_osc_bundle_is_stamped_with_the_due_time(osc_listener: tuple[socket.socket, int]) -> None:
    sock, port = osc_listener
    with OscOutput("127.0.0.1", port, "/piano", timetag=True, channels=[0]) as out:
        assert out.schedules_ahead
        opened = [OscBundle(d) for d in drain(sock, 2)]  # sustain up + all-notes-off from open
        assert [b.timestamp for b in opened] == [IMMEDIATELY, IMMEDIATELY]  # no due time: play now
        due = time.perf_counter() + 0.25
        out.note_on(0, 61, 99, due=due)
        expected = time.time() + (due - time.perf_counter())
        data = sock.recv(65536)
    assert OscBundle.dgram_is_bundle(data)
    bundle = OscBundle(data)
    assert abs(bundle.timestamp - expected) < 0.001
    (message,) = list(bundle)
    assert isinstance(message, OscMessage)
    assert message.address == "/piano/note"
    assert message.params == [1, 61, 99]  # channels go out 1-based, as Max numbers them
    assert b",iii\x00" in message.dgram  # typed as OSC int32, never float32


@pytest.mark.network
def test_osc_without_timetag_sends_plain_messages(osc_listener: tuple[socket.socket, int]) -> None:
    sock, port = osc_listener
    out = OscOutput("127.0.0.1", port, "/bass/", channel_base=0, channels=[0]).open()
    opened = [OscMessage(d) for d in drain(sock, 2)]
    assert [(m.address, m.params) for m in opened] == [("/bass/cc", [0, 64, 0]), ("/bass/cc", [0, 123, 0])]
    out.note_on(0, 36, 127)
    out.close()
    messages = [OscMessage(d) for d in drain(sock, 4)]
    assert [(m.address, m.params) for m in messages] == [
        ("/bass/note", [0, 36, 127]),
        ("/bass/note", [0, 36, 0]),  # note-off on close: velocity 0 releases
        ("/bass/cc", [0, 64, 0]),
        ("/bass/cc", [0, 123, 0]),
    ]


@pytest.mark.network
def test_osc_carries_programs_and_controllers_without_making_midi_bytes(
    osc_listener: tuple[socket.socket, int],
) -> None:
    """Each message goes from its fields to OSC: the MIDI-bytes hook is never called on the way."""
    made: list[tuple[int, ...]] = []

    class Watched(OscOutput):
        def _send(self, message: tuple[int, ...], due: float | None) -> None:
            made.append(message)

    sock, port = osc_listener
    out = Watched("127.0.0.1", port, "/keys", channels=[2], programs={2: 5}, controls={2: {7: 90}}).open()
    out.control_change(2, 10, 30)
    out.note_on(2, 60, 80)
    out.note_off(2, 60)
    out.close()
    messages = [OscMessage(d) for d in drain(sock, 9)]
    assert [(m.address, m.params) for m in messages] == [
        ("/keys/cc", [3, 64, 0]), ("/keys/cc", [3, 123, 0]),  # silence first, as a MIDI port gets
        ("/keys/program", [3, 5]), ("/keys/cc", [3, 7, 90]),  # the part's program, then its mix
        ("/keys/cc", [3, 10, 30]), ("/keys/note", [3, 60, 80]), ("/keys/note", [3, 60, 0]),
        ("/keys/cc", [3, 64, 0]), ("/keys/cc", [3, 123, 0]),
    ]  # fmt: skip
    assert made == []


# ---- FluidSynth -----------------------------------------------------------------------------------


def test_fluidsynth_renders_a_note(soundfont: str) -> None:
    with FluidSynthOutput(soundfont, gain=1.0, audio_driver=None, channels=[0], programs={0: 0}) as synth:
        silence = synth.render(0.1)
        assert silence.shape == (4410, 2) and silence.dtype == np.int16
        assert np.abs(silence.astype(np.int32)).max() <= 2  # FluidSynth dithers its 16-bit output
        synth.note_on(0, 60, 110)
        sound = synth.render(0.5)
        assert np.abs(sound.astype(np.int32)).max() > 1000
        synth.note_off(0, 60)
        tail = synth.render(3.0)
        assert np.abs(tail[-4410:].astype(np.int32)).max() < np.abs(sound.astype(np.int32)).max() / 10


@pytest.mark.network
def test_fluidsynth_plays_into_jack(soundfont: str, jack_server: JackServer) -> None:
    with FluidSynthOutput(soundfont, audio_driver="jack", name=unique("fluid")) as synth:
        synth.note_on(0, 60, 100)
        links = jack_server.connections()
        left = [port for port in links if port.startswith("fluidsynth") and port.endswith(":left")]
        assert left and "system:playback_1" in links[left[0]]  # autoconnected to the speakers
        with pytest.raises(OutputError, match="audio driver"):
            synth.render(0.1)  # the driver's thread owns the audio


def test_fluidsynth_missing_soundfont_is_named(tmp_path: object) -> None:
    pytest.importorskip("fluidsynth", reason="pyfluidsynth or libfluidsynth not installed")
    with pytest.raises(OutputError, match="soundfont"):
        FluidSynthOutput("/nonexistent/piano.sf2").open()


# ---- validation, ledger, factory (no devices) -----------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "field"),
    [
        (lambda o: o.note_on(16, 60, 100), ValueError, "channel"),
        (lambda o: o.note_on(-1, 60, 100), ValueError, "channel"),
        (lambda o: o.note_on(0, 128, 100), ValueError, "pitch"),
        (lambda o: o.note_on(0, 60, 0), ValueError, "velocity"),
        (lambda o: o.note_on(0, 60, 128), ValueError, "velocity"),
        (lambda o: o.note_on(0, 60.0, 100), TypeError, "pitch"),
        (lambda o: o.note_on(True, 60, 100), TypeError, "channel"),
        (lambda o: o.note_on("1", 60, 100), TypeError, "channel"),
        (lambda o: o.note_off(0, None), TypeError, "pitch"),
        (lambda o: o.note_on(0, 60, 100, due="now"), TypeError, "due"),
        (lambda o: o.program_change(0, 128), ValueError, "program"),
        (lambda o: o.control_change(0, 7, 200), ValueError, "value"),
    ],
)
def test_bad_input_names_the_field(call: Callable[[NullOutput], object], error: type, field: str) -> None:
    with NullOutput(channels=[0]) as out:
        before = out.sent_count
        with pytest.raises(error, match=field):
            call(out)
        assert out.sent_count == before  # nothing half-sent
        assert out.sounding() == 0


def test_numpy_integers_are_accepted() -> None:
    with NullOutput(channels=[0]) as out:
        out.note_on(np.int64(0), np.uint8(60), np.int32(100))
        assert out.notes()[0].message == (0x90, 60, 100)


def test_all_notes_off_empties_the_ledger() -> None:
    with NullOutput(channels=[0]) as out:
        out.clear()
        out.note_on(0, 60, 100)
        out.note_on(9, 36, 100)
        out.all_notes_off(sound_off=True)
        assert out.sounding() == 0
        sent = [s.message for s in out.sent]
        assert (0x80, 60, 0) in sent and (0x89, 36, 0) in sent
        assert (0xB9, 120, 0) in sent and (0xB9, 123, 0) in sent
        assert out.channels == {0, 9}


def test_sends_before_open_are_refused() -> None:
    out = NullOutput()
    with pytest.raises(OutputClosedError):
        out.note_on(0, 60, 100)


@pytest.mark.parametrize(
    ("spec", "error", "field"),
    [
        ({"type": "synth"}, ValueError, "output.type"),
        ({"port": "x"}, ValueError, "output.type"),
        ({"type": "midi", "prot": "x"}, ValueError, "output.prot"),
        ({"type": "midi"}, ValueError, "port"),
        ({"type": "midi", "port": "x", "api": "winamp"}, ValueError, "api"),
        ({"type": "osc", "port": "9000"}, TypeError, "output.port"),
        ({"type": "osc", "port": 70000}, ValueError, "port"),
        ({"type": "osc", "timetag": 1}, TypeError, "output.timetag"),
        ({"type": "osc", "address": "no-slash"}, ValueError, "address"),
        ({"type": "fluidsynth", "gain": True}, TypeError, "output.gain"),
        ({"type": "null", "channels": [0, 16]}, ValueError, "channels"),
        ({"type": "null", "programs": {0: 200}}, ValueError, "program"),
    ],
)
def test_factory_errors_name_the_field(spec: dict, error: type, field: str) -> None:
    with pytest.raises(error, match=field):
        make_output(spec)


@pytest.mark.parametrize(
    ("pattern", "note", "cc"),
    [("/note", "/note", "/cc"), ("/synth/bass", "/synth/bass/note", "/synth/bass/cc"),
     ("/synth/bass/note", "/synth/bass/note", "/synth/bass/cc"), ("/piano/", "/piano/note", "/piano/cc")],
)
def test_osc_addresses_follow_the_pattern(pattern: str, note: str, cc: str) -> None:
    out = OscOutput("127.0.0.1", 9000, pattern)
    assert (out.note_address, out.cc_address) == (note, cc)


def test_wall_time_of_maps_monotonic_to_unix_time() -> None:
    now_wall, now_mono = time.time(), time.perf_counter()
    assert abs(wall_time_of(now_mono + 10.0) - (now_wall + 10.0)) < 0.001


def test_factory_builds_each_kind_unopened() -> None:
    assert isinstance(make_output({"type": "null"}), NullOutput)
    osc = make_output({"type": "osc", "host": "127.0.0.1", "port": 9000, "address": "/a", "timetag": True})
    assert isinstance(osc, OscOutput) and osc.timetag and osc.note_address == "/a/note"
    fluid = make_output({"type": "fluidsynth", "soundfont": None, "gain": 0.8}, where="agents.piano.output")
    assert isinstance(fluid, FluidSynthOutput) and not fluid.is_open
