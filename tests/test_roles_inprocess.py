"""The player takes a part and leaves it, in a whole ensemble on virtual time (tests/support/inprocess.py):
the real conductor hears the replayed player, the real agents yield and return. What the band plays
is read off the agents' outputs and the conductor's recording, to the note.

The bar the player starts a part in is the one bar the agent plays with them: from the next bar line
the agent starts no note, and it is back two bars after the player leaves the part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mido
import pytest
import yaml
from support.inprocess import ENSEMBLES, InProcessEnsemble, ensemble, patterns_data

from conductor.human import FileHuman, read_midi_notes
from conductor.roles import RoleFollower, commit_lead
from protocol.ensemble import parse_ensemble
from protocol.messages import RoleState

PPQ = 480
BPB = 4
# One bar of each part, as (beat in the bar, length, pitch).
BARS: dict[str, list[tuple[float, float, int]]] = {
    "melody": [(0, 0.9, 76), (1, 0.9, 74), (2, 0.9, 72), (3, 0.9, 74)],
    "bass": [(b, 0.9, 36 + step) for b, step in enumerate((0, 4, 7, 5))],  # a walking bass
    # comping: chords on 1 and on the and of 2
    "comp": [(t, d, p) for t, d in ((0, 1.4), (1.5, 2.0)) for p in (60, 64, 67)],
    # a melody that dips into the bass register for two notes at the top of the bar
    "dip": [(0, 0.9, 45), (1, 0.9, 43), (2, 0.9, 72), (3, 0.9, 74)],
    "rest": [],
}


def write_player(path: Path, script: list[str]) -> None:
    """A MIDI file playing `script` bar by bar (names of BARS), once."""
    events: list[tuple[int, int, int]] = []  # (tick, 0 off / 1 on, pitch)
    for bar, part in enumerate(script):
        for t, d, p in BARS[part]:
            start = round((bar * BPB + t) * PPQ)
            events += [(start, 1, p), (start + round(d * PPQ), 0, p)]
    mid = mido.MidiFile(ticks_per_beat=PPQ)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    tick = 0
    for at, on, p in sorted(events):
        track.append(mido.Message("note_on", note=p, velocity=90 if on else 0, time=at - tick))
        tick = at
    mid.save(str(path))


def run(tmp_path: Path, script: list[str], data: dict[str, Any] | None = None,
        latency_s: float = 0.002) -> InProcessEnsemble:
    data = patterns_data() if data is None else data
    data.setdefault("seed", 7)  # the model parts draw the same notes on every run
    write_player(tmp_path / "player.mid", script)
    data["human"] = {**data["human"], "source": {"type": "file", "path": str(tmp_path / "player.mid"),
                                                 "loop": False}}
    band = InProcessEnsemble(ensemble(data), tmp_path, bars=len(script) + 1, latency_s=latency_s)
    band.play()
    return band


def starts(band: InProcessEnsemble, name: str) -> list[float]:
    return sorted(p.beat for p in band.played(name))


def yields(band: InProcessEnsemble) -> list[dict[str, tuple[float, float | None]]]:
    return [y for _, m in band.messages(RoleState) if (y := m.yields_of())]


# The player: two bars of melody, four of the part, four of melody again. The part starts on bar 3
# (beat 8); bar 4 begins at beat 12; the player is back on the melody at bar 7 (beat 24).
SCRIPT = ["melody"] * 2 + ["{part}"] * 4 + ["melody"] * 4
PART_FROM, NEXT_LINE, LEFT = 8.0, 12.0, 24.0


@pytest.mark.parametrize(("part", "agent", "others"), [("bass", "bass", ("piano", "drums")),
                                                       ("comp", "piano", ("bass", "drums"))])
def test_the_agent_plays_one_bar_with_the_player_and_is_back_two_bars_after(
        tmp_path: Path, part: str, agent: str, others: tuple[str, ...]) -> None:
    band = run(tmp_path, [bar.format(part=part) for bar in SCRIPT])
    played = starts(band, agent)
    # the bar the player starts the part in is the only one played together ...
    assert [b for b in played if PART_FROM <= b < NEXT_LINE], played
    # ... from the next bar line the agent starts nothing until two bars after the player left
    back = LEFT + 2 * BPB
    assert not [b for b in played if NEXT_LINE <= b < back], played
    assert [b for b in played if back <= b < back + BPB], played  # back on that bar line
    assert yields(band)[0] == {agent: (NEXT_LINE, None)}
    assert {agent: (NEXT_LINE, back)} in yields(band)
    # the rest of the band plays every bar; the recording holds exactly what was played
    for name in others:
        assert {int(b // BPB) for b in starts(band, name)} >= set(range(len(SCRIPT))), name
    for name in band.agents:
        assert len(band.recorded(name)) == len(band.played(name)), name
    # a note started before the yield rings its full length
    last = max(n for n in band.recorded(agent) if n[0] < NEXT_LINE)
    expected = max(n for n in band.recorded(agent) if n[0] < PART_FROM and n[2] == last[2])
    assert last[1] == pytest.approx(expected[1], abs=1e-6)
    roles = band.conductor.roles.stats(band.beat())
    assert roles["yielded_bars"] == {agent: int((back - NEXT_LINE) // BPB)}


def test_the_default_ensembles_model_bass_makes_room_the_same_way(tmp_path: Path) -> None:
    """ensembles/default.yaml: the shipped model on the bass and the piano, each committing from its
    own process a turn apart. The bass yields from the next bar line (a note the model had drawn for
    it is left out, never sent), and is back in the bar two bars after the player left: it draws from
    that bar line, and where in the bar its first note falls is the model's choice."""
    data = yaml.safe_load((ENSEMBLES / "default.yaml").read_text())
    band = run(tmp_path, [bar.format(part="bass") for bar in SCRIPT], data=data)
    played = starts(band, "bass")
    back = LEFT + 2 * BPB
    assert [b for b in played if PART_FROM <= b < NEXT_LINE], played
    assert not [b for b in played if NEXT_LINE <= b < back], played
    assert [b for b in played if back <= b < back + BPB], played
    assert {"bass": (NEXT_LINE, back)} in yields(band)
    assert {int(b // BPB) for b in starts(band, "piano")} >= set(range(len(SCRIPT)))
    for name in band.agents:
        assert len(band.recorded(name)) == len(band.played(name)), name


def test_the_yield_reaches_a_slow_bus_in_time(tmp_path: Path) -> None:
    """40 ms each way on the bus (the lead allows 100 ms): still silent from the next bar line."""
    band = run(tmp_path, [bar.format(part="bass") for bar in SCRIPT], latency_s=0.04)
    assert not [b for b in starts(band, "bass") if NEXT_LINE <= b < LEFT + 2 * BPB]
    assert yields(band)[0] == {"bass": (NEXT_LINE, None)}


def test_a_melody_that_dips_low_for_two_notes_takes_nothing(tmp_path: Path) -> None:
    band = run(tmp_path, ["melody", "dip", "melody", "dip", "dip", "melody"])
    assert yields(band) == []
    assert band.agents["bass"].yielding.dropped == 0
    assert band.conductor.roles.recognizer.unconfirmed == 0


def test_the_default_ensembles_player_takes_no_part() -> None:
    """ensembles/default.yaml: its replayed melody (Ode to Joy, four times round) as the conductor
    hears it (conductor/human.py's replay, note-on then note-off) and asks at every tick: heard as
    a melody, and no agent ever yields, at a bar line or part-way through a bar."""
    data = yaml.safe_load((ENSEMBLES / "default.yaml").read_text())
    ens = parse_ensemble(data)
    h = ens.human
    assert h is not None and h.role == "auto"
    player = FileHuman(read_midi_notes(ENSEMBLES / data["human"]["source"]["path"]), h.name, h.channel,
                       BPB, loop=True)
    follower = RoleFollower(ens)
    lead = commit_lead(ens, ens.tempo)
    msgs: list[RoleState] = []
    ticks = int(4 * player.length / 0.01)
    for k in range(1, ticks + 1):
        now = k * 0.01
        for held in player.started(now):
            follower.note_on(held)
        for note in player.due(now):
            follower.note(note)
        msgs += follower.at_beat(now, lead)
    assert msgs and all(m.yields == "" for m in msgs)
    assert follower.recognizer.roles == {"melody"} and follower.recognizer.unconfirmed == 0
    assert follower.yielded_bars == {}
