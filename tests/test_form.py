"""How a performance starts and ends: the count-in click, the final chord held by every part, the
release together; the pure rules by hand, then whole runs with real processes and sockets."""

from __future__ import annotations

import itertools
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import mido
import pytest
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from support.ensembles import ROOT, play_bars, read_json, wait_for, write_ensemble
from support.net_fixtures import free_port

from agents.offline_scheduler import OfflineScheduler
from agents.scheduler import ScheduledEvent
from protocol.ensemble import load_ensemble, parse_ensemble
from protocol.form import (
    CLOSED_HAT,
    CRASH,
    KICK,
    SIDE_STICK,
    close_voicing,
    count_in_clicks,
    count_in_player,
    ending_beats,
    ending_voicing,
    final_chord,
)
from protocol.harmony import ChordPlan, parse_chord
from protocol.messages import Note
from protocol.mix import CC_PAN, CC_VOLUME, pan_cc
from protocol.timeline import LocalTimeMap, Timeline

# ---- the rules --------------------------------------------------------------------------------------


def test_final_chord_follows_the_form() -> None:
    loop = ChordPlan.parse("Am | Dm | E7 | Am E7", loop=True, key="Am")
    assert final_chord(loop, 16.0, 4).symbol == "Am"  # bar 4: the loop comes round to its top
    assert final_chord(loop, 8.0, 4).symbol == "Am"  # mid-form (the plan has E7 there): the tonic
    songs = ChordPlan.parse("C | F | G7 | C | F G7 | C6", loop=False, key="C")
    assert final_chord(songs, 24.0, 4).symbol == "C6"  # played out: its own last chord
    assert final_chord(songs, 40.0, 4).symbol == "C6"
    assert final_chord(songs, 12.0, 4).symbol == "C"  # stopped mid-song on G7's bar: home
    assert final_chord(ChordPlan.parse("N.C. | G7", key="G"), 8.0, 4).symbol == "G"


@pytest.mark.parametrize("symbol", ["C", "Am", "G7", "E7/G#", "Cmaj9", "F#m7b5", "Bb13"])
@pytest.mark.parametrize(("low", "high", "voices"), [(48, 76, 4), (40, 72, 6), (52, 79, 3), (55, 64, 4)])
def test_close_voicings_hold_chord_tones_in_range_within_an_octave(
    symbol: str, low: int, high: int, voices: int
) -> None:
    chord = parse_chord(symbol)
    v = close_voicing(chord, low, high, voices)
    assert 1 <= len(v) <= voices and v == sorted(set(v))
    assert all(low <= p <= high and p % 12 in chord.tones for p in v)
    assert v[-1] - v[0] < 12  # close position
    if high - low >= 11:
        assert chord.root in {p % 12 for p in v}  # the root is never the one left out


def test_each_role_holds_its_share() -> None:
    c = parse_chord("C")
    assert ending_voicing("bass", (28, 52), 1, c) == [36]  # the root, low
    assert ending_voicing("bass", (28, 52), 1, parse_chord("C/E")) == [28]  # a slash chord's bass
    assert ending_voicing("melody", (58, 79), 1, c, last_pitch=74) == [72]  # the nearest chord tone
    assert ending_voicing("melody", (58, 79), 1, c, last_pitch=65) == [64]
    assert ending_voicing("drums", (35, 81), 8, c) == [KICK, CRASH]
    comp = ending_voicing("comp", (48, 76), 4, parse_chord("G7"))
    assert {p % 12 for p in comp} == {7, 11, 2, 5}
    assert len(ending_voicing("comp", (48, 76), 2, parse_chord("G7"))) == 2  # its polyphony


def test_a_part_keeps_off_the_pitches_the_others_end_on() -> None:
    c = parse_chord("C")
    alone = ending_voicing("comp", (55, 72), 3, c)
    beside = ending_voicing("comp", (55, 72), 3, c, avoid=frozenset(alone[:1]))
    assert {p % 12 for p in beside} == {0, 4, 7} and alone[0] not in beside
    assert ending_voicing("melody", (58, 79), 1, c, last_pitch=74, avoid=frozenset({72})) == [76]


def test_the_band_ends_with_no_two_parts_on_one_key() -> None:
    """Each agent voices its own share of the final chord; the band's piano and guitar, voicing it in
    the middle of overlapping ranges, ended on the same C, and the horns on one A. A horn doubles a
    comping part's note only where no chord tone in its reach is free."""
    from agents.arrangement import ending_pitches

    ens = load_ensemble(ROOT / "ensembles" / "band.yaml")
    for symbol, player_last in itertools.product(("C", "G7", "Am7", "F"), (72, 76, 79)):
        chord = parse_chord(symbol)
        held = {a.name: ending_pitches(ens, a, chord, player_last)
                for a in ens.agents if a.role != "drums"}
        pitches = [p for ps in held.values() for p in ps]
        section = [p for a in ens.agents if a.role in ("bass", "comp") for p in held[a.name]]
        horns = [held[a.name][0] for a in ens.agents if a.role == "melody"]
        assert len(section) == len(set(section)), (symbol, held)  # no two of them on one key
        assert len(horns) == len(set(horns)), (symbol, held)  # nor the horns
        assert all(h not in section for h in horns if any(
            p % 12 in chord.tones and p not in section for p in range(55, 66))), (symbol, held)
        assert all(p < player_last for p in pitches), (symbol, held)  # under the player's last note
        assert all(p % 12 in chord.tones for p in pitches), (symbol, held)  # the chord, no colour


def test_count_in_clicks_each_beat_with_beat_one_accented() -> None:
    clicks = count_in_clicks(-8.0, 0.5, 8.0, 4)
    assert [b for b, _, _ in clicks] == [-8, -7, -6, -5, -4, -3, -2, -1]
    assert [p for _, p, _ in clicks[:4]] == [SIDE_STICK, CLOSED_HAT, CLOSED_HAT, CLOSED_HAT]
    assert clicks[0][2] > clicks[1][2] + 10
    # Windows split anywhere give each click once; nothing at or after beat 0.
    pieces = [c for a, b in [(-9.0, -6.5), (-6.5, -6.0), (-6.0, -0.1), (-0.1, 3.0)]
              for c in count_in_clicks(a, b, 8.0, 4)]
    assert pieces == clicks


def test_who_counts_in_and_how_long_the_end_is_held() -> None:
    def ens(**timing: object) -> object:
        return parse_ensemble({"meter": 3, "timing": timing, "agents": [
            {"name": "keys", "instrument": "piano"}, {"name": "kit", "instrument": "drums"}]})
    assert count_in_player(ens()) is None  # silent by default
    assert count_in_player(ens(count_in="click")) == "kit"
    assert count_in_player(parse_ensemble({"timing": {"count_in": "click"},
                                           "agents": [{"name": "keys", "channel": 2}]})) == "keys"
    assert ending_beats(ens()) == 3.0 and ending_beats(ens(ending_beats=2)) == 2.0


def test_cut_at_ends_what_rings_into_the_downbeat_and_drops_what_comes_after() -> None:
    sent: list[ScheduledEvent] = []
    sched = OfflineScheduler(sent.append)
    sched.schedule(Note(2.0, 4.0, 60, 90, 0, "test"))  # would ring past beat 4
    sched.schedule(Note(3.0, 0.5, 62, 90, 0, "test"))  # ends before it: untouched
    sched.schedule(Note(4.5, 1.0, 64, 90, 0, "test"))  # starts after it: dropped
    assert sched.cut_at(4.0) == 2
    sched.set_timemap(LocalTimeMap(Timeline(tempo_bpm=120.0).started(0.0, at_beat=0.0)))
    sched.advance_to(10.0)
    assert sched.pending() == 0
    assert [(e.beat, e.kind, e.pitch) for e in sent] == [
        (2.0, "on", 60), (3.0, "on", 62), (3.5, "off", 62), (4.0, "off", 60)]


# ---- whole runs -----------------------------------------------------------------------------------------


def notes_by_part(path: Path) -> dict[str, list[tuple[float, float, int, int]]]:
    """(start, end, pitch, channel) of every note, per track name."""
    mid = mido.MidiFile(str(path))
    out: dict[str, list[tuple[float, float, int, int]]] = {}
    for track in mid.tracks:
        t, name, held, notes = 0, "", {}, []
        for m in track:
            t += m.time
            if m.type == "track_name":
                name = m.name
            elif m.type == "note_on" and m.velocity > 0:
                held[(m.channel, m.note)] = t
            elif m.type in ("note_off", "note_on"):
                start = held.pop((m.channel, m.note))
                notes.append((start / mid.ticks_per_beat, t / mid.ticks_per_beat, m.note, m.channel))
        out[name] = notes
    return out


class OscSink:
    """A UDP socket standing in for an OSC synth: every message with its arrival time."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.got: list[tuple[float, str, list[int]]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except OSError:
                continue
            m = OscMessage(data)
            self.got.append((time.monotonic(), m.address, list(m.params)))

    def close(self) -> None:
        self._stop = True
        self._thread.join(2.0)
        self.sock.close()


def send(port: int, address: str, *args: tuple[str, object]) -> None:
    b = OscMessageBuilder(address)
    for tag, value in args:
        b.add_arg(value, tag)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b.build().dgram, ("127.0.0.1", port))


TEMPO = 180.0
BEAT_S = 60.0 / TEMPO


@pytest.mark.network
@pytest.mark.slow
def test_bars_run_counts_in_and_ends_with_every_part_on_the_final_downbeat(tmp_path: Path) -> None:
    """--bars 8 with a click count-in: the drums' synth hears one click a beat (beat 1 accented), the
    mix (CC7/CC10) after the program and again when a fader moves; the recording ends with every
    part, the replayed melody included, striking the final chord on beat 32 and releasing it together
    one bar later, and nothing else ringing across the downbeat."""
    sink = OscSink()
    control = free_port()
    yaml_path = write_ensemble(tmp_path, {
        "tempo": TEMPO, "control": {"port": control},
        "timing": {"count_in": "click", "count_in_beats": 4},
    })
    import yaml

    data = yaml.safe_load(yaml_path.read_text())
    drums = next(a for a in data["agents"] if a["name"] == "drums")
    drums.update(volume=90, pan=-0.5, output={"type": "osc", "osc_port": sink.port, "address": "/kit",
                                              "timetag": False})
    yaml_path.write_text(yaml.safe_dump(data, sort_keys=False))

    def move_fader() -> None:
        played = lambda: sum(a == "/kit/note" and p[2] > 0 for _, a, p in sink.got)  # noqa: E731
        wait_for(lambda: played() >= 8, 60, "the drums past the count-in")
        send(control, "/agent/drums/volume", ("f", 70.0))

    fader = threading.Thread(target=move_fader, daemon=True)
    fader.start()
    try:
        report = play_bars(yaml_path, 8, tmp_path)
    finally:
        fader.join(5.0)
        sink.close()
    assert report["stuck_notes"] == 0
    # The clicks are no part's notes: what the drums report playing is what the recording holds.
    assert report["parts"]["drums"]["notes"] == report["parts"]["drums"]["recorded"]

    # The synth: program, volume 90 and pan -0.5 on channel 10 (OSC counts from 1), then the clicks.
    messages = [(t, a, p) for t, a, p in sink.got]
    setup = [(a, p) for _, a, p in messages if a in ("/kit/program", "/kit/cc") and p[1] in (0, 7, 10)]
    assert setup[:3] == [("/kit/program", [10, 0]), ("/kit/cc", [10, CC_VOLUME, 90]),
                         ("/kit/cc", [10, CC_PAN, pan_cc(-0.5)])]
    ons = [(t, p) for t, a, p in messages if a == "/kit/note" and p[2] > 0]
    clicks, first_beat = ons[:4], ons[4]
    assert [p[1] for _, p in clicks] == [SIDE_STICK, CLOSED_HAT, CLOSED_HAT, CLOSED_HAT]
    assert clicks[0][1][2] > clicks[1][1][2]  # beat 1 accented
    times = [t for t, _ in clicks] + [first_beat[0]]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(abs(g - BEAT_S) < 0.05 for g in gaps), gaps  # a beat apart, and beat 0 a beat after
    assert first_beat[1][1] in (36, 42)  # the groove starts on beat 0
    # The fader moved the drums' volume at once, while they played.
    assert any(a == "/kit/cc" and p == [10, CC_VOLUME, 70] for _, a, p in messages)

    # The recording: every part's last note starts on beat 32 and all end together at 36.
    end, hold = 8 * 4, 4.0
    parts = notes_by_part(tmp_path / "out.mid")
    plan = ChordPlan.parse(data["chords"], loop=data["loop"], key=data["key"])
    chord = final_chord(plan, end, 4)
    for name in ("melody", "bass", "piano", "drums"):
        notes = parts[name]
        last_on = max(s for s, _, _, _ in notes)
        final = [n for n in notes if n[0] == last_on]
        assert last_on == end, (name, last_on)
        assert {e for _, e, _, _ in final} == {end + hold}, name
        assert all(e <= end for s, e, _, _ in notes if s < end), name  # nothing rings into the downbeat
        if name != "drums":
            assert {p % 12 for _, _, p, _ in final} <= set(chord.tones), name
    assert {p for s, _, p, _ in parts["drums"] if s == end} >= {KICK, CRASH}
    # The drums' track carries its mix as set at the start and as moved live.
    (track,) = [t for t in mido.MidiFile(str(tmp_path / "out.mid")).tracks if t.name == "drums"]
    tick, ccs = 0, []
    for m in track:
        tick += m.time
        if m.type == "control_change" and m.control in (CC_VOLUME, CC_PAN):
            ccs.append((tick, m.control, m.value))
    assert ccs[:2] == [(0, CC_VOLUME, 90), (0, CC_PAN, pan_cc(-0.5))]
    assert [(c, v) for t, c, v in ccs[2:]] == [(CC_VOLUME, 70)] and 0 < ccs[2][0] < end * 480
    assert len([n for n in parts["piano"] if n[0] == end]) >= 3  # a chord, not a note


@pytest.mark.network
@pytest.mark.slow
def test_stop_ends_at_a_bar_line_with_the_chord_held_then_the_transport_stops(tmp_path: Path) -> None:
    control = free_port()
    yaml_path = write_ensemble(tmp_path, {"tempo": TEMPO, "control": {"port": control}, "human": None,
                                          "timing": {"ending_beats": 2}})
    stats = tmp_path / "stats"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run_ensemble.py"), str(yaml_path), "--quiet", "--stats-dir", str(stats),
         "--record", str(tmp_path / "out.mid")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(lambda: read_json(stats / "conductor.json").get("beat", -1) > 5.3, 60, "the band playing")
        send(control, "/stop", ("f", 1.0))
        wait_for(lambda: read_json(stats / "conductor.json").get("playing") is False, 20,
                 "the transport to stop")
        beat_at_stop = read_json(stats / "conductor.json")["beat"]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    parts = notes_by_part(tmp_path / "out.mid")
    ends = {name: max(s for s, _, _, _ in notes) for name, notes in parts.items() if notes}
    assert set(ends) == {"bass", "piano", "drums"}
    (downbeat,) = set(ends.values())
    assert downbeat % 4 == 0 and 8 <= downbeat <= 12  # the next bar line a beat or more ahead of 5.3+
    for name, notes in parts.items():
        if notes:
            assert {e for s, e, _, _ in notes if s == downbeat} == {downbeat + 2}, name
            assert all(e <= downbeat for s, e, _, _ in notes if s < downbeat), name
    assert downbeat + 2 <= beat_at_stop < downbeat + 2 + 1  # it stopped just after the release
