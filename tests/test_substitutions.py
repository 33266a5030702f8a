"""A written plan played as the player plays it: a chord the player holds against the written one
replaces it until that chord's span ends (conductor/substitution.py)."""

from __future__ import annotations

from pathlib import Path

import mido
import pytest
import yaml
from support.inprocess import ENSEMBLES, InProcessEnsemble, ensemble, patterns_data

from conductor.human import read_midi_notes
from conductor.listener import Listener
from conductor.state import ConductorState
from conductor.substitution import Substitution, SubstitutionHearing
from protocol.harmony import ChordPlan, ChordSpan, parse_chord
from protocol.messages import Control, PlanState
from protocol.timeline import Timeline

CHART = ChordPlan.parse("C | G7 | Am | F", key="C")
PPQ = 480


def hear(notes: list[tuple[float, float, int]], beats: int, plan: ChordPlan = CHART) -> list[str | None]:
    """The substitute decided at each beat onset while ``notes`` (start, length, pitch) are played."""
    listener, hearing = Listener(beats_per_bar=4, key="C"), SubstitutionHearing()
    out: list[str | None] = []
    for t in range(beats):
        for s, d, p in notes:
            if t - 1 < s <= t:
                listener.note_on(p, 90, s)
            if t - 1 < s + d <= t:
                listener.note_off(p, s + d)
        sub = hearing.decide(listener, plan, float(t))
        out.append(None if sub is None else sub.symbol)
    return out


def test_a_held_minor_third_makes_the_chord_minor_from_the_next_beat() -> None:
    assert hear([(0, 4, 63), (0, 4, 67), (0, 4, 72)], 5) == [None, "Cm", "Cm", "Cm", None]


@pytest.mark.parametrize(("pitch", "chord"), [(70, "C7"), (75, "Cm"), (77, "Csus4")])
def test_a_held_tune_note_changes_the_chord_on_its_root(pitch: int, chord: str) -> None:
    assert hear([(0, 4, pitch)], 4)[1:] == [chord] * 3


def test_a_note_that_no_chord_on_the_root_holds_changes_nothing() -> None:
    assert hear([(0, 4, 73)], 4) == [None] * 4  # C-sharp over C: a tension, not a new chord


def test_a_passing_note_on_one_beat_changes_nothing() -> None:
    assert hear([(0, 1, 76), (1, 1, 76), (2, 1, 77), (3, 1, 79)], 5) == [None] * 5


def test_the_default_tune_over_its_own_chart_is_played_as_written() -> None:
    """Ode to Joy over default.yaml's chords, 16 bars: every note of the tune fits its chart, bar the
    passing notes, so nothing is substituted."""
    data = yaml.safe_load((ENSEMBLES / "default.yaml").read_text())
    plan = ChordPlan.parse(data["chords"], key=data["key"])
    melody = read_midi_notes(ENSEMBLES / data["human"]["source"]["path"])
    tune = [(n.start, n.duration, n.pitch) for n in melody]
    assert len(tune) > 20
    assert hear(tune, 64, plan) == [None] * 64


def state() -> ConductorState:
    return ConductorState(timeline=Timeline(epoch=0, tempo_bpm=120.0, beats_per_bar=4), plan=CHART)


def sub(start: float, symbol: str) -> Substitution:
    return Substitution(ChordSpan(parse_chord(symbol), start, start + 4.0), symbol)


def test_a_substitution_replaces_one_chord_of_the_chart_and_ends_with_its_span() -> None:
    s = state()
    [msg] = s.substitute(sub(8.0, "Am7"), 9.0, 4)  # bar 3 of the chart: Am
    assert isinstance(msg, PlanState) and msg.text == "C | G7 | Am7 | F"
    assert s.chart == CHART
    assert s.substitute(None, 11.0, 4) == []  # within the span: it stands
    [back] = s.substitute(None, 12.0, 4)
    assert back.text == CHART.to_text() and back.epoch > msg.epoch
    # the next pass of the loop: bar 7 is the chart's bar 3 again
    [again] = s.substitute(sub(24.0, "A7"), 25.0, 4)
    assert again.text == "C | G7 | A7 | F"


def test_an_edit_during_a_substitution_applies_to_the_chart(tmp_path: Path) -> None:
    s = state()
    s.substitute(sub(0.0, "Cm"), 1.0, 4)
    s.substitutions = False  # as /substitutions 0 leaves it
    s.save(tmp_path / "state.json")
    restarted = ConductorState.load(tmp_path / "state.json", ())
    assert restarted.plan == CHART  # a restart plays the chart
    assert restarted.substitutions is False
    [msg] = s.apply(Control("bar", "2 D7", ""), 0.0)
    assert msg.text == "C | D7 | Am | F"


def write_player(path: Path, notes: list[tuple[float, float, int]]) -> None:
    mid = mido.MidiFile(ticks_per_beat=PPQ)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    events = sorted([(round(s * PPQ), 1, p) for s, _, p in notes] + [(round((s + d) * PPQ), 0, p)
                                                                    for s, d, p in notes])
    tick = 0
    for at, on, p in events:
        track.append(mido.Message("note_on", note=p, velocity=90 if on else 0, time=at - tick))
        tick = at
    mid.save(str(path))


def test_the_band_plays_the_players_minor_chord_and_then_the_chart_again(tmp_path: Path) -> None:
    """patterns.yaml's band on a chart of C: the player holds E-flat and G through bar 3 (beats 8-12)
    and plays C major around it. The piano plays E natural in C bars, E-flat in that one once the
    band has heard it, and E natural again after it."""
    data = patterns_data()
    data["chords"] = "C | C"
    tune = [(b, 1.0, 72) for b in range(8)] + [(8.0, 4.0, 63), (8.0, 4.0, 67)]
    tune += [(b, 1.0, 76) for b in range(12, 20)]
    write_player(tmp_path / "player.mid", tune)
    data["human"] = {**data["human"], "source": {"type": "file", "path": str(tmp_path / "player.mid"),
                                                 "loop": False}}
    band = InProcessEnsemble(ensemble(data), tmp_path, bars=5)
    band.play()
    piano = [(p.beat, p.pitch % 12) for p in band.played("piano")]
    assert {pc for b, pc in piano if b < 8} >= {0, 4, 7}
    answered = [pc for b, pc in piano if 10 <= b < 12]
    assert answered and 3 in answered and 4 not in answered, piano
    assert 4 in {pc for b, pc in piano if b >= 13}, piano
    plans = [m.text for _, m in band.messages(PlanState)]
    assert "Cm | C" in plans and plans[-1] == "C | C"


def test_without_substitutions_the_chart_is_played_as_written(tmp_path: Path) -> None:
    data = patterns_data()
    data["chords"], data["substitutions"] = "C", False
    write_player(tmp_path / "player.mid", [(8.0, 4.0, 63), (8.0, 4.0, 67)])
    data["human"] = {**data["human"], "source": {"type": "file", "path": str(tmp_path / "player.mid"),
                                                 "loop": False}}
    band = InProcessEnsemble(ensemble(data), tmp_path, bars=4)
    band.play()
    assert 4 in {p.pitch % 12 for p in band.played("piano") if 10 <= p.beat < 12}
    assert all(m.text == "C" for _, m in band.messages(PlanState))


def test_substitutions_switched_off_live_bring_the_chart_back_at_once(tmp_path: Path) -> None:
    data = patterns_data()
    data["chords"] = "C | C"
    write_player(tmp_path / "player.mid", [(8.0, 4.0, 63), (8.0, 4.0, 67)])
    data["human"] = {**data["human"], "source": {"type": "file", "path": str(tmp_path / "player.mid"),
                                                 "loop": False}}
    band = InProcessEnsemble(ensemble(data), tmp_path, bars=4)
    off_at: list[float] = []

    async def script(band: InProcessEnsemble) -> None:
        await band.until_beat(10.25)
        off_at.append(band.clock())
        band.control("substitutions", 0)

    band.play(script)
    plans = band.messages(PlanState)
    assert [m.text for t, m in plans if t < off_at[0]][-1] == "Cm | C"
    after = [m.text for t, m in plans if t > off_at[0]]
    assert after and set(after) == {"C | C"}
    assert band.conductor.substitutions is None


def test_a_refused_edit_during_a_substitution_leaves_it_playing() -> None:
    s = state()
    [sub_msg] = s.substitute(sub(0.0, "Cm"), 1.0, 4)
    for param, value in (("chords", "sideways"), ("plan", "C | H7"), ("bar", "99 F")):
        with pytest.raises(ValueError):
            s.apply(Control(param, value, ""), 0.0)
        assert s.plan_message() == sub_msg  # what the agents hold, and what the state says
        assert s.chart == CHART
    [back] = s.substitute(None, 4.0, 4)
    assert back.text == CHART.to_text()


def band_under(tmp_path: Path, chords: str, tune: list[tuple[float, float, int]],
               bars: int) -> InProcessEnsemble:
    data = patterns_data()
    data["chords"] = chords
    write_player(tmp_path / "player.mid", tune)
    data["human"] = {**data["human"], "source": {"type": "file", "path": str(tmp_path / "player.mid"),
                                                 "loop": False}}
    band = InProcessEnsemble(ensemble(data), tmp_path, bars=bars)
    band.play()
    return band


def test_in_a_one_chord_vamp_the_chart_is_back_by_the_next_downbeat(tmp_path: Path) -> None:
    """A vamp's next chord is the same chord of the chart: the substitute must give way before the
    agents commit it, not when it starts."""
    band = band_under(tmp_path, "C", [(8.0, 4.0, 63), (8.0, 4.0, 67), (12.0, 4.0, 64)], 5)
    piano = [(p.beat, p.pitch % 12) for p in band.played("piano")]
    assert 3 in {pc for b, pc in piano if 9 <= b < 12}, piano  # the substitute was played
    assert {pc for b, pc in piano if 12 <= b < 16} == {0, 4, 7}, piano


def test_a_suspension_resolving_ends_the_substitute(tmp_path: Path) -> None:
    """An F held over C for two beats is heard as Csus4; when it falls to E the chart's C is back at
    once, not at the end of the bar."""
    band = band_under(tmp_path, "C | C", [(8.0, 2.0, 77), (10.0, 2.0, 76)], 4)
    plans = [(beat, m.text) for beat, m in band.conductor.recorder.plans]  # as played, by beat
    sus = next(b for b, text in plans if text == "Csus4 | C")
    back = next(b for b, text in plans if b > sus and text == "C | C")
    assert sus == 9.0 and back == 10.0, plans  # not at the bar's end, beat 12
