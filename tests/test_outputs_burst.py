"""A beat's events prepared before their due time and written in one locked call (`Output.prepare`,
`Output.send`): the same messages and the same ledger as one `play`/`release` call per event."""

from __future__ import annotations

import socket
import time

import pytest
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage
from support.jack import MidiCapture

from agents.outputs import (
    FluidSynthOutput,
    MidiPortOutput,
    NullOutput,
    OscOutput,
    OutputClosedError,
)
from agents.outputs.burst import BurstItem
from protocol.messages import Note


def note(pitch: int, channel: int = 0, velocity: int = 90) -> Note:
    return Note(0.0, 1.0, pitch, velocity, channel, "test")


def test_a_burst_sends_what_single_calls_send_and_keeps_the_same_ledger() -> None:
    a, b, c = note(60), note(64), note(67)
    one_by_one = NullOutput(channels=[0]).open()
    burst_out = NullOutput(channels=[0]).open()
    for out in (one_by_one, burst_out):
        out.clear()
    one_by_one.play(a)
    one_by_one.play(b)
    one_by_one.release(a)
    one_by_one.play(c)
    due = time.perf_counter()
    results = burst_out.send(burst_out.prepare([(True, a, due), (True, b, due)]))
    results += burst_out.send(burst_out.prepare([(False, a, due), (True, c, due)]))
    assert [s.message for s in burst_out.sent] == [s.message for s in one_by_one.sent]
    assert burst_out.sounding_notes() == one_by_one.sounding_notes() == {(0, 64): 1, (0, 67): 1}
    assert all(isinstance(r, float) for r in results)
    assert [s.due for s in burst_out.sent] == [due] * 4
    assert burst_out.sent_count == one_by_one.sent_count


def test_the_send_times_are_read_after_each_write_in_order() -> None:
    ticks = iter(range(100))
    out = NullOutput(channels=[0], clock=lambda: float(next(ticks))).open()
    burst = out.prepare([(True, note(60), 0.0), (True, note(64), 0.0), (True, note(67), 0.0)])
    results = out.send(burst)
    assert results == sorted(results) and len(set(results)) == 3  # one honest stamp per write
    assert [s.sent_at for s in out.sent[-3:]] == [r - 1 for r in results]  # the write, then its stamp


def test_a_key_held_by_an_overlapping_note_is_released_by_the_last_note_off_only() -> None:
    out = NullOutput(channels=[0]).open()
    out.clear()
    first, second = note(60), note(60)
    out.send(out.prepare([(True, first, None), (True, second, None)]))
    results = out.send(out.prepare([(False, first, None)]))
    assert [s.is_note_off for s in out.sent] == [False, False]  # the key still sounds for the second
    assert isinstance(results[0], float) and out.sounding() == 1
    out.send(out.prepare([(False, second, None)]))
    assert out.sent[-1].is_note_off and out.sounding() == 0


def test_a_burst_whose_write_fails_leaves_the_ledger_as_it_was() -> None:
    class Flaky(NullOutput):
        def _send(self, message: tuple[int, ...], due: float | None) -> None:
            if message[:2] == (0x90, 64):  # the note-on of E4 only
                raise OSError("synth went away")
            super()._send(message, due)

    out = Flaky(channels=[0]).open()
    results = out.send(out.prepare([(True, note(60), None), (True, note(64), None), (True, note(67), None)]))
    assert isinstance(results[0], float) and isinstance(results[2], float)
    assert isinstance(results[1], OSError)  # the others still went out
    assert out.sounding_notes() == {(0, 60): 1, (0, 67): 1}


def test_a_burst_prepared_before_a_close_is_refused_and_nothing_is_left_sounding() -> None:
    out = NullOutput(channels=[0]).open()
    burst = out.prepare([(True, note(60), None)])
    out.close()
    with pytest.raises(OutputClosedError):
        out.send(burst)
    assert out.sounding() == 0 and not any(s.is_note_on for s in out.sent)
    with pytest.raises(OutputClosedError):
        out.prepare([(True, note(60), None)])


@pytest.mark.network
def test_osc_with_timetags_sends_the_events_due_at_one_moment_in_one_bundle(
    osc_listener: tuple[socket.socket, int],
) -> None:
    sock, port = osc_listener
    with OscOutput("127.0.0.1", port, "/piano", timetag=True, channels=[0]) as out:
        [sock.recv(65536) for _ in range(2)]  # silence on open
        due = time.perf_counter() + 0.2
        items: list[BurstItem] = [(True, note(60), due), (True, note(64), due), (True, note(67), due + 0.5)]
        results = out.send(out.prepare(items))
        first, second = OscBundle(sock.recv(65536)), OscBundle(sock.recv(65536))
        out.send(out.prepare([(False, n, None) for _, n, _ in items]))
    assert results[0] == results[1] < results[2]  # the first two went out in one write
    assert [m.params for m in first if isinstance(m, OscMessage)] == [[1, 60, 90], [1, 64, 90]]
    assert [m.params for m in second if isinstance(m, OscMessage)] == [[1, 67, 90]]
    assert second.timestamp - first.timestamp == pytest.approx(0.5, abs=1e-3)


@pytest.mark.network
def test_osc_without_timetags_sends_one_plain_message_per_event(
    osc_listener: tuple[socket.socket, int],
) -> None:
    sock, port = osc_listener
    with OscOutput("127.0.0.1", port, "/bass", channels=[1]) as out:
        [sock.recv(65536) for _ in range(2)]
        out.send(out.prepare([(True, note(36, channel=1), None), (True, note(43, channel=1), None)]))
        received = [OscMessage(sock.recv(65536)) for _ in range(2)]
    assert [(m.address, m.params) for m in received] == [
        ("/bass/note", [2, 36, 90]),
        ("/bass/note", [2, 43, 90]),
    ]


@pytest.mark.network
def test_a_midi_port_gets_the_same_bytes_from_a_burst(jack_server: object) -> None:
    with MidiCapture(client_name="burst-capture") as capture:
        with MidiPortOutput(capture.port_name, api="jack", client_name="burst-agent", channels=[0]) as out:
            capture.wait_for(1, match=lambda c: c.is_cc(123))
            capture.clear()
            chord = [note(60), note(64), note(67)]
            out.send(out.prepare([(True, n, None) for n in chord]))
            out.send(out.prepare([(False, n, None) for n in chord]))
            capture.wait_for(3, match=lambda c: c.is_note_off)
        assert [c.message for c in capture.received[:6]] == [
            (0x90, 60, 90), (0x90, 64, 90), (0x90, 67, 90), (0x80, 60, 0), (0x80, 64, 0), (0x80, 67, 0),
        ]
        assert capture.stuck_notes() == set()


def test_fluidsynth_sounds_a_burst_and_releases_it(soundfont: str) -> None:
    with FluidSynthOutput(soundfont, audio_driver=None, channels=[0], programs={0: 0}) as synth:
        loud = [note(60, velocity=110), note(67, velocity=110)]
        synth.send(synth.prepare([(True, n, None) for n in loud]))
        assert abs(synth.render(0.3).astype(int)).max() > 1000
        synth.send(synth.prepare([(False, note(60), None), (False, note(67), None)]))
        assert synth.sounding() == 0
