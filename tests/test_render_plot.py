"""Seeing and hearing a session: WAV render, piano-roll PNG, the CLI around them, and the JSON Schema."""

from __future__ import annotations

import json
import signal
import socket
import struct
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import mido
import numpy as np
import pytest
import yaml
from pythonosc.osc_message_builder import OscMessageBuilder
from support.ensembles import ROOT, read_json, run_launcher, wait_for, write_ensemble

import launcher.plot
from conductor.recorder import Recorder
from launcher.plot import PlotError, chords_as_played, plot_piano_roll, read_plans, read_tracks
from launcher.render import RenderError, render_wav
from launcher.schema import ensemble_json_schema, schema_text
from protocol.harmony import ChordPlan
from protocol.messages import Note, PlanState

PPQ = 480
CHORDS = "C | G7 | Am F | C"


def write_session(path: Path) -> Path:
    """A recording laid out as the recorder writes it, with a tempo change that moves the last note.

    Beats 0-7 at 120 bpm (3.5 s of music), then from beat 8 at 60 bpm: the last note, at beat 10,
    sounds at 6.0 s and the music ends at 7.0 s. Ignoring the tempo change would put it at 5.0 s.
    """
    mid = mido.MidiFile(type=1, ticks_per_beat=PPQ)
    conductor = mido.MidiTrack(
        [
            mido.MetaMessage("track_name", name="conductor", time=0),
            mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0),
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(120), time=0),
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(60), time=8 * PPQ),
        ]
    )
    mid.tracks.append(conductor)
    parts: dict[str, tuple[int, int, list[tuple[float, float, int]]]] = {
        "melody": (0, 73, [(0, 1, 72), (1, 1, 74), (2, 2, 76), (4, 2, 79), (10, 1, 84)]),
        "bass": (1, 33, [(0, 2, 36), (2, 2, 43), (4, 2, 41), (6, 1, 43)]),
        "drums": (9, 0, [(b, 0.25, 36 if b % 2 == 0 else 38) for b in range(7)]),
    }
    for name, (channel, program, notes) in parts.items():
        events: list[tuple[int, mido.Message]] = []
        for start, length, pitch in notes:
            on = mido.Message("note_on", channel=channel, note=pitch, velocity=100)
            off = mido.Message("note_off", channel=channel, note=pitch)
            events += [(round(start * PPQ), on), (round((start + length) * PPQ), off)]
        events.sort(key=lambda e: (e[0], e[1].type != "note_off"))
        track = mido.MidiTrack([mido.MetaMessage("track_name", name=name, time=0),
                                mido.Message("program_change", channel=channel, program=program, time=0)])
        now = 0
        for tick, msg in events:
            track.append(msg.copy(time=tick - now))
            now = tick
        mid.tracks.append(track)
    mid.save(str(path))
    return path


@pytest.fixture
def session(tmp_path: Path) -> Path:
    return write_session(tmp_path / "session.mid")


@pytest.fixture
def matplotlib() -> Any:
    return pytest.importorskip("matplotlib", reason="matplotlib not installed: pip install -e '.[plot]'")


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (2, 2), "16-bit stereo"
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
        return frames, wav.getframerate()


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)) / 32768.0) if samples.size else 0.0


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


# ---- render -------------------------------------------------------------------------------------


def test_render_is_audible_lasts_the_music_plus_tail_and_follows_tempo(session: Path, soundfont: str,
                                                                        tmp_path: Path) -> None:
    calls: list[tuple[float, float]] = []
    result = render_wav(session, tmp_path / "out.wav", soundfont, sample_rate=22050, tail_s=1.0,
                        progress=lambda done, total: calls.append((done, total)))
    audio, rate = read_wav(tmp_path / "out.wav")
    assert rate == 22050
    assert abs(len(audio) - 7.0 * rate - 1.0 * rate) <= 1  # 4 s + 3 s of music, 1 s of tail
    assert result.frames == len(audio) and result.seconds == pytest.approx(8.0, abs=1e-3)
    assert rms(audio[: int(3.5 * rate)]) > 0.01  # not silent
    assert result.peak < 1.0  # and not clipped at the default gain
    # The note at beat 10 sounds at 6.0 s (60 bpm from beat 8), not at 5.0 s.
    quiet = rms(audio[int(5.0 * rate) : int(5.5 * rate)])
    loud = rms(audio[int(6.05 * rate) : int(6.5 * rate)])
    assert loud > 10 * quiet, (quiet, loud)
    assert calls and calls[-1] == pytest.approx((8.0, 8.0), abs=1e-3)


def test_drums_sound_from_the_drum_bank(tmp_path: Path, soundfont: str) -> None:
    mid = mido.MidiFile(ticks_per_beat=PPQ)
    mid.tracks.append(mido.MidiTrack([
        mido.Message("program_change", channel=9, program=0, time=0),
        mido.Message("note_on", channel=9, note=38, velocity=120, time=0),
        mido.Message("note_off", channel=9, note=38, time=PPQ // 4),
    ]))
    mid.save(str(tmp_path / "snare.mid"))
    result = render_wav(tmp_path / "snare.mid", tmp_path / "snare.wav", soundfont, tail_s=0.5)
    assert result.rms > 0.005


def test_render_names_what_is_missing(session: Path, tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="no such MIDI file"):
        render_wav(tmp_path / "absent.mid", tmp_path / "out.wav")
    pytest.importorskip("fluidsynth", reason="pyfluidsynth or libfluidsynth not installed")
    with pytest.raises(RenderError, match="soundfont"):
        render_wav(session, tmp_path / "out.wav", soundfont="/nonexistent/piano.sf2")


def test_render_without_pyfluidsynth_says_how_to_get_it(
    session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "fluidsynth", None)  # as if never installed
    with pytest.raises(RenderError, match=r"pyfluidsynth: pip install -e '\.\[fluidsynth\]'"):
        render_wav(session, tmp_path / "out.wav")


# ---- plot ---------------------------------------------------------------------------------------


def test_read_tracks_gives_parts_in_beats(session: Path) -> None:
    tracks, meter = read_tracks(session)
    assert meter == 4
    assert [t.name for t in tracks] == ["melody", "bass", "drums"]  # the conductor track has no notes
    assert tracks[0].notes[-1] == (10.0, 1.0, 84, 100)  # beats, whatever the tempo did
    assert tracks[2].is_drums and not tracks[0].is_drums


@pytest.mark.parametrize("size", [(1600, 900), (800, 400)])
def test_plot_writes_a_png_of_the_asked_size(session: Path, tmp_path: Path, matplotlib: Any,
                                             size: tuple[int, int]) -> None:
    png = plot_piano_roll(session, tmp_path / "roll.png", CHORDS, 4, True, "C", size=size)
    assert png_size(png) == size
    assert png.stat().st_size > 5000  # something was drawn


def test_plot_without_chords_and_with_a_bad_plan(session: Path, tmp_path: Path, matplotlib: Any) -> None:
    assert png_size(plot_piano_roll(session, tmp_path / "a.png", None, 4, True, "C")) == (1600, 900)
    with pytest.raises(PlotError, match="chords"):
        plot_piano_roll(session, tmp_path / "b.png", "C | Hm7", 4, True, "C")


def test_the_chord_lane_is_the_plan_as_played(
    tmp_path: Path, matplotlib: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plans recorded at the beats they took effect win over the YAML's; a conductor restart keeps them."""
    journal = tmp_path / "s.mid.journal"
    rec = Recorder([("melody", 0, 73)])
    rec.keep_journal(journal, resume=False)
    rec.plan(0.0, PlanState(0, "C | G7", True, "C"))
    rec.add(Note(0.0, 1.0, 60, 90, 0, "melody"))
    rec.plan(6.0, PlanState(1, "Am | Dm", True, "C"))  # a live edit in bar 2, beat 3
    rec.plan(7.0, PlanState(1, "Am | Dm", True, "C"))  # the same plan again is no change
    again = Recorder([("melody", 0, 73)])  # the conductor restarted: the journal brings the edit back
    again.keep_journal(journal, resume=True)
    again.add(Note(12.0, 1.0, 64, 90, 0, "melody"))
    again.save(tmp_path / "s.mid")
    plans = read_plans(tmp_path / "s.mid")
    assert [(b, p.to_text()) for b, p in plans] == [(0.0, "C | G7"), (6.0, "Am | Dm")]
    played = chords_as_played(plans, 4, 16.0)
    # Bar 2 of the new plan from beat 6 on: indexed by the absolute beat, as the agents index it.
    assert played == [(0.0, 4.0, "C"), (4.0, 6.0, "G7"), (6.0, 8.0, "Dm"), (8.0, 12.0, "Am"),
                      (12.0, 16.0, "Dm")]  # fmt: skip
    drawn: list[list[str]] = []
    draw = launcher.plot._draw_chords

    def spy(ax: Any, lane: list[tuple[float, ChordPlan]], bpb: int, end: float) -> None:
        drawn.append([plan.to_text() for _, plan in lane])
        draw(ax, lane, bpb, end)

    monkeypatch.setattr(launcher.plot, "_draw_chords", spy)
    # The YAML's plan ("E | E | E") is what the user passes; the lane draws the recorded ones.
    png = plot_piano_roll(tmp_path / "s.mid", tmp_path / "s.png", "E | E | E", 4, True, "C")
    assert png_size(png) == (1600, 900)
    assert drawn == [["C | G7", "Am | Dm"]], drawn


def osc(address: str, *args: tuple[str, Any]) -> bytes:
    b = OscMessageBuilder(address)
    for tag, value in args:
        b.add_arg(value, tag)
    return b.build().dgram


@pytest.mark.network
@pytest.mark.slow
def test_a_live_plan_edit_is_in_the_recording_at_its_beat(tmp_path: Path, matplotlib: Any) -> None:
    """A real conductor, a real /plan over OSC while it plays: the recording carries both plans, the
    edit at the beat the conductor's stats showed when it landed, and the plot draws from them."""
    path = write_ensemble(tmp_path, {"tempo": 240, "chords": "C | G7 | C | G7"})  # no agents run: it starts
    cfg = yaml.safe_load(path.read_text())
    control = ("127.0.0.1", int(cfg["control"]["port"]))
    stats, mid = tmp_path / "conductor.json", tmp_path / "out.mid"
    proc = subprocess.Popen([sys.executable, "-m", "conductor", str(path), "--stats", str(stats), "--record",
                             str(mid), "--wait-agents", "0"], cwd=ROOT, stderr=subprocess.PIPE)  # fmt: skip
    try:
        before = wait_for(lambda: (s := read_json(stats)).get("beat", 0) >= 5 and s, 30, "bar 2")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(osc("/barcelona/demo/plan", ("s", "Am | Dm")), control)
        after = wait_for(lambda: (s := read_json(stats)).get("chord") in ("Am", "Dm") and s, 10, "the plan")
        wait_for(lambda: read_json(stats)["beat"] >= after["beat"] + 4, 10, "another bar")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    plans = read_plans(mid)
    assert [p.to_text() for _, p in plans] == ["C | G7 | C | G7", "Am | Dm"], plans
    edit_beat = plans[1][0]
    assert before["beat"] <= edit_beat <= after["beat"], (before["beat"], edit_beat, after["beat"])
    played = chords_as_played(plans, 4, edit_beat + 8)
    assert played[0][2] == "C" and {c for start, _, c in played if start >= edit_beat} <= {"Am", "Dm"}
    assert ChordPlan.parse("Am | Dm").chord_at(edit_beat, 4).symbol == next(
        c for start, _, c in played if start >= edit_beat
    )
    assert png_size(plot_piano_roll(mid, tmp_path / "live.png", cfg["chords"], 4, True, "C")) == (1600, 900)


def test_plot_without_matplotlib_says_how_to_get_it(
    session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotError, match=r"pip install -e '\.\[plot\]'"):
        plot_piano_roll(session, tmp_path / "roll.png", CHORDS, 4, True, "C")


# ---- the CLI ------------------------------------------------------------------------------------


def test_from_midi_renders_and_plots_without_playing(session: Path, tmp_path: Path, soundfont: str,
                                                     matplotlib: Any) -> None:
    wav, png = tmp_path / "cli.wav", tmp_path / "cli.png"
    proc = run_launcher([str(ROOT / "ensembles" / "default.yaml"), "--from-midi", str(session),
                         "--render", str(wav), "--plot", str(png)], timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {wav}" in proc.stdout and f"wrote {png}" in proc.stdout
    assert "rendering" in proc.stderr  # the status line
    audio, rate = read_wav(wav)
    assert rms(audio) > 0.005 and len(audio) == pytest.approx(9.0 * rate, abs=1)  # 2 s default tail
    assert png_size(png) == (1600, 900)


def test_from_midi_needs_something_to_make(session: Path) -> None:
    proc = run_launcher(["--from-midi", str(session)], timeout=60)
    assert proc.returncode == 1 and "--render" in proc.stderr


@pytest.mark.network
@pytest.mark.slow
def test_a_run_renders_and_plots_its_own_recording(tmp_path: Path, soundfont: str, matplotlib: Any) -> None:
    """No --record: the launcher records to a temp file for --render and --plot."""
    wav, png = tmp_path / "run.wav", tmp_path / "run.png"
    proc = run_launcher([str(write_ensemble(tmp_path)), "--bars", "2", "--quiet",
                         "--render", str(wav), "--plot", str(png)])
    assert proc.returncode == 0, proc.stderr
    audio, rate = read_wav(wav)
    # 2 bars at 120, the final chord held a bar, the tail
    assert len(audio) == pytest.approx((2 * 4 * 0.5 + 2.0 + 2.0) * rate, abs=0.3 * rate)
    assert rms(audio) > 0.005
    assert png_size(png) == (1600, 900)


# ---- the JSON Schema ----------------------------------------------------------------------------


def test_committed_schema_is_current() -> None:
    committed = (ROOT / "docs" / "ensemble.schema.json").read_text()
    assert json.loads(committed) == ensemble_json_schema(), (
        "docs/ensemble.schema.json is stale: python -m launcher.schema > docs/ensemble.schema.json"
    )
    assert committed == schema_text()


def test_schema_flag_prints_it() -> None:
    proc = run_launcher(["--schema"], timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == ensemble_json_schema()


def _unknown_keys(value: Any, schema: dict[str, Any], defs: dict[str, Any], where: str) -> list[str]:
    """Keys the schema would reject as additional properties (a stand-in for a full validator)."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    for option in schema.get("anyOf", []):
        if value is not None and option.get("type") != "null":
            return _unknown_keys(value, option, defs, where)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        closed = schema.get("additionalProperties") is False
        bad = [f"{where}.{k}" for k in value if k not in props and closed]
        for k, v in value.items():
            if k in props:
                bad += _unknown_keys(v, props[k], defs, f"{where}.{k}")
        return bad
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        item = schema["items"]
        return [b for i, v in enumerate(value) for b in _unknown_keys(v, item, defs, f"{where}.{i}")]
    return []


@pytest.mark.parametrize("name", ["default.yaml", "multihost.yaml"])
def test_shipped_ensembles_fit_the_schema(name: str) -> None:
    schema = ensemble_json_schema()
    data = yaml.safe_load((ROOT / "ensembles" / name).read_text())
    assert _unknown_keys(data, schema, schema["$defs"], "") == []
    output_type = schema["$defs"]["OutputConfig"]["properties"]["type"]
    assert None in output_type["enum"]  # `type: null` in YAML is a null, and the model accepts it


def write_dense_band(path: Path, bars: int = 4) -> Path:
    """Seven parts as the recorder writes them, as loud as MIDI goes: bass, piano, organ, guitar and
    strings chords on every eighth, a trumpet line, and drums (kick, snare, hats, crash) on every
    sixteenth, all at velocity 127 and full volume: far past full scale when summed."""
    from conductor.recorder import Recorder
    from protocol.messages import Note

    parts = [("bass", 1, 33), ("piano", 2, 0), ("organ", 3, 16), ("guitar", 4, 29), ("strings", 5, 48),
             ("trumpet", 6, 56), ("drums", 9, 0)]
    rec = Recorder(parts)
    chord = {"bass": [36, 43], "piano": [60, 64, 67, 72], "organ": [48, 55, 64], "guitar": [52, 59, 64, 67],
             "strings": [67, 72, 76], "trumpet": [79]}
    for name, channel, _ in parts:
        rec.control(name, 0.0, 7, 127)
        step = 0.25 if name == "drums" else 0.5
        for i in range(int(bars * 4 / step)):
            beat = i * step
            pitches = [36, 38, 42, 49] if name == "drums" else chord[name]
            for pitch in pitches:
                rec.add(Note(beat, step, pitch, 127, channel, name))
    rec.save(path)
    return path


def test_seven_loud_parts_render_with_headroom(tmp_path: Path, soundfont: str) -> None:
    dense = write_dense_band(tmp_path / "band.mid")
    result = render_wav(dense, tmp_path / "band.wav", soundfont, tail_s=0.5)
    audio, _ = read_wav(tmp_path / "band.wav")
    peak_dbfs = 20 * np.log10(np.abs(audio.astype(np.int64)).max() / 32768.0)
    assert -20.0 <= peak_dbfs <= -1.0, peak_dbfs  # headroom, and not silent
    assert result.peak_dbfs == pytest.approx(peak_dbfs)
    assert result.gain_db < 0  # the mix was over full scale and came down
    assert not (tmp_path / "band.wav.f32.part").exists()  # the scratch file is gone
    # Without normalisation the same mix clips: that is what the headroom is for.
    clipped = render_wav(dense, tmp_path / "raw.wav", soundfont, tail_s=0.5, peak_dbfs=None)
    assert clipped.peak >= 0.999


def test_a_quiet_part_is_brought_up_to_the_same_peak(session: Path, soundfont: str, tmp_path: Path) -> None:
    result = render_wav(session, tmp_path / "out.wav", soundfont, gain=0.05, tail_s=0.5)
    assert result.gain_db > 0 and result.peak_dbfs == pytest.approx(-1.0, abs=0.01)
