"""The drums engine plays like a drummer: phrases end in fills, a crash marks the next downbeat,
the groove varies, density thins and thickens in a drummer's order, and a bar is the same however
the agent splits time into planning windows."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from pathlib import Path

import mido
import pytest
import yaml
from support.ensembles import DEFAULT, play_bars, write_ensemble

from agents.arrangement import agent_seed
from agents.engines import PlanContext, make_engine
from agents.engines.drum_bar import bar_role, phrase_starts, pick_distinct
from agents.engines.drum_patterns import FALLBACK, GROOVES, STYLES, groove_for
from agents.engines.drums import DrumsEngine, drum_seed
from protocol.ensemble import AgentConfig, EnsembleError, load_ensemble, parse_ensemble
from protocol.form import CRASH, KICK
from protocol.harmony import ChordPlan
from protocol.messages import AgentParams, Note

ODE = "C | G7 E7/G# | Am | Em G | C F | G7/B E7/G# | Am D7 | G7 C"  # the default ensemble's 8 bars
KICKS, SNARES, CRASHES = {35, 36}, {38, 40}, {49, 57}
TOMS = {41, 43, 45, 47, 48, 50}
CYMBALS = {42, 46, 51}  # what keeps time
GM_DRUMS = KICKS | SNARES | CRASHES | TOMS | CYMBALS | {37, 44}
ROOT = Path(__file__).resolve().parents[1]


def engine(style: str = "rock", seed: int = 7, **kw: object) -> DrumsEngine:
    engine_cfg = {"type": "drums", "style": style, **kw}
    cfg = AgentConfig.model_validate({"name": "drums", "channel": 9, "engine": engine_cfg})
    return DrumsEngine(cfg, seed)


def ctx(meter: int = 4, density: float = 1.0, chords: str = ODE, muted: bool = False) -> PlanContext:
    return PlanContext(ChordPlan.parse(chords), meter, AgentParams("drums", 0, muted, 1.0, density, 0.98, 20))


def by_bar(notes: list[Note], meter: int) -> dict[int, list[Note]]:
    bars: dict[int, list[Note]] = defaultdict(list)
    for n in notes:
        bars[int(n.start_beat // meter)].append(n)
    return bars


def last_beat(bar_notes: list[Note], bar: int, meter: int) -> list[Note]:
    return [n for n in bar_notes if n.start_beat >= (bar + 1) * meter - 1]


@pytest.mark.parametrize("style", STYLES)
def test_a_fill_ends_every_phrase_over_32_bars(style: str) -> None:
    bars = by_bar(engine(style).plan(0, 32 * 4, ctx()), 4)
    for bar in range(32):
        tail = last_beat(bars[bar], bar, 4)
        pitches = [n.pitch for n in tail]
        if bar % 4 == 3:
            fill = [p for p in pitches if p in TOMS or p in SNARES]
            assert len(fill) >= 2 and not CYMBALS & set(pitches), (bar, pitches)
        else:  # the groove keeps time through the last beat
            assert CYMBALS & set(pitches), (bar, pitches)
            assert not TOMS & set(pitches), (bar, pitches)


@pytest.mark.parametrize(("chords", "phrase_bars", "fills"), [
    ("C | F | G | C | Am | G", 4, [3, 5, 9, 11, 15, 17]),  # a 6-bar form: 4 + 2, the plan's end
    ("C | F | G | C | G", 4, [4, 9, 14, 19]),             # a 5-bar form is one phrase
    (ODE, 8, [7, 15]),
    ("C", 4, [3, 7, 11, 15, 19]),                          # a one-bar vamp: phrases of 4
    ("C x16", 4, [3, 7, 11, 15, 19]),
])
def test_fills_follow_the_form_and_the_plan_loop(chords: str, phrase_bars: int, fills: list[int]) -> None:
    bars = by_bar(engine(phrase_bars=phrase_bars).plan(0, 20 * 4, ctx(chords=chords)), 4)
    got = [b for b in range(20) if TOMS & {n.pitch for n in bars[b]} or not CYMBALS & {
        n.pitch for n in last_beat(bars[b], b, 4)}]
    assert got == fills
    crashes = [b for b in range(20) if any(n.pitch in CRASHES for n in bars[b])]
    assert crashes == [0] + [f + 1 for f in fills if f + 1 < 20]


@pytest.mark.parametrize("style", STYLES)
def test_crash_and_kick_on_the_downbeat_after_each_fill_and_nowhere_else(style: str) -> None:
    bars = by_bar(engine(style, seed=3).plan(0, 32 * 4, ctx()), 4)
    for bar in range(32):
        crashes = [n for n in bars[bar] if n.pitch in CRASHES]
        if bar % 4 == 0:
            assert [n.start_beat for n in crashes] == [bar * 4.0], bar
            assert any(n.pitch in KICKS and n.start_beat == bar * 4 for n in bars[bar]), bar
            assert not any(n.pitch in CYMBALS and n.start_beat == bar * 4 for n in bars[bar]), bar
        else:
            assert not crashes, bar


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("chords", [ODE, "C x16"])
def test_no_two_consecutive_phrases_are_the_same(style: str, chords: str) -> None:
    for seed in range(6):
        bars = by_bar(engine(style, seed=seed).plan(0, 32 * 4, ctx(chords=chords)), 4)
        phrases = [
            sorted((n.start_beat - p * 16, n.pitch) for b in range(p * 4, p * 4 + 4) for n in bars[b])
            for p in range(8)
        ]
        for p in range(7):
            assert phrases[p] != phrases[p + 1], (seed, p)


def test_bars_within_a_phrase_vary() -> None:
    """A groove varies a little every bar or two, yet mostly stays itself."""
    for style in STYLES:
        bars = by_bar(engine(style, seed=11).plan(0, 64 * 4, ctx()), 4)
        inner = [b for b in range(64) if b % 4 in (1, 2)]
        shapes = [frozenset((n.start_beat - b * 4, n.pitch) for n in bars[b]) for b in inner]
        assert len(set(shapes)) >= 4, style


@pytest.mark.parametrize(
    ("style", "meter"), [("rock", 4), ("jazz", 4), ("waltz", 3), ("rock", 6), ("funk", 7)]
)
def test_any_split_into_windows_gives_the_same_notes(style: str, meter: int) -> None:
    whole = engine(style).plan(0, 24 * meter, ctx(meter))
    rng = random.Random(5)
    for _ in range(3):
        e, got, at = engine(style), [], 0.0
        while at < 24 * meter:
            step = rng.choice([0.01, 0.1, 1 / 3, 0.5, 1.0, 2.7, 5.0])
            got += e.plan(at, min(at + step, 24 * meter), ctx(meter))
            at = min(at + step, 24 * meter)
        assert got == whole
    # a fresh engine that starts in the middle (an agent restarted there) plays the same bars
    late = engine(style).plan(13 * meter + 0.5, 24 * meter, ctx(meter))
    assert late == [n for n in whole if n.start_beat >= 13 * meter + 0.5]


def test_the_same_seed_plays_the_same_notes_another_seed_others() -> None:
    a = engine(seed=42).plan(0, 64, ctx())
    assert engine(seed=42).plan(0, 64, ctx()) == a
    b = engine(seed=43).plan(0, 64, ctx())
    assert b != a
    assert {(n.start_beat, n.pitch) for n in b} != {(n.start_beat, n.pitch) for n in a}


def test_seed_from_engine_else_ensemble_plus_index_else_random() -> None:
    base = {"name": "t", "agents": [{"name": "bass", "channel": 1},
                                    {"name": "drums", "channel": 9, "engine": {"type": "drums"}}]}
    ens = parse_ensemble({**base, "seed": 100})
    assert drum_seed(ens, ens.agent("drums")) == agent_seed(ens, ens.agent("drums"), -1) != 100
    seeded = {**base["agents"][1], "engine": {"type": "drums", "seed": 9}}
    own = parse_ensemble({**base, "seed": 100, "agents": [seeded]})
    assert drum_seed(own, own.agent("drums")) == 9
    unseeded = parse_ensemble(base)
    assert drum_seed(unseeded, unseeded.agent("drums")) != drum_seed(unseeded, unseeded.agent("drums"))


def test_half_density_keeps_every_backbeat_and_drops_hats() -> None:
    full = engine().plan(0, 32 * 4, ctx(density=1.0))
    half = engine().plan(0, 32 * 4, ctx(density=0.5))
    for bar in range(32):
        fill_from = bar * 4 + 2 if bar % 4 == 3 else bar * 4 + 4  # a fill lasts at most two beats
        for beat in (bar * 4 + 1, bar * 4 + 3):
            if beat < fill_from:
                assert any(n.start_beat == beat and n.pitch in SNARES for n in half), beat
        assert any(n.start_beat == bar * 4 and n.pitch in KICKS for n in half), bar
    hats = [n for n in half if n.pitch in CYMBALS]
    assert len(hats) < 0.6 * len([n for n in full if n.pitch in CYMBALS])
    assert all(n.start_beat % 1 == 0 for n in hats), "off-beat hats go first"
    assert not [n for n in half if n.velocity < 50], "ghost notes go first"


@pytest.mark.parametrize("style", STYLES)
def test_density_thins_and_thickens_in_order(style: str) -> None:
    levels = (0.0, 0.3, 0.5, 1.0, 1.5, 2.0, 4.0)
    plays = {d: set(engine(style).plan(0, 16 * 4, ctx(density=d))) for d in levels}
    for lo, hi in itertools.pairwise(levels):
        assert plays[lo] <= plays[hi], (lo, hi)  # more density only ever adds strokes
    assert len(plays[0.0]) < len(plays[1.0]) < len(plays[2.0])
    sixteenths = {n for n in plays[2.0] - plays[1.0] if n.pitch in CYMBALS}
    assert sixteenths or style == "funk", "a thicker groove splits the cymbal's beats"  # funk's are 16ths
    if style != "bossa":  # a side-stick groove gets no snare ghosts
        assert {n for n in plays[2.0] - plays[1.0] if n.pitch in SNARES}, "and adds ghost notes"
    assert all(n.velocity < 80 for n in plays[2.0] - plays[1.0])  # what it adds is quiet
    assert not engine(style).plan(0, 64, ctx(muted=True))


def test_metric_accents_and_a_seeded_spread() -> None:
    notes = engine(seed=1).plan(0, 64 * 4, ctx())
    hats = [n for n in notes if n.pitch == 42]
    on = [n.velocity for n in hats if n.start_beat % 1 == 0]
    off = [n.velocity for n in hats if n.start_beat % 1 == 0.5]
    assert sum(on) / len(on) >= sum(off) / len(off) + 8
    downbeat = [n.velocity for n in notes if n.pitch == 36 and n.start_beat % 4 == 0]
    other = [n.velocity for n in notes if n.pitch == 36 and n.start_beat % 4 != 0]
    assert min(downbeat) > sum(other) / len(other)
    grooving = [n for n in notes if n.start_beat % 16 < 12]  # not in a phrase's fill bar
    backbeats = [n.velocity for n in grooving if n.pitch == 38 and n.start_beat % 2 == 1]
    assert len(set(backbeats)) > 3 and max(backbeats) - min(backbeats) <= 20  # alive, yet even


@pytest.mark.parametrize(("style", "meter"), [(s, m) for s in STYLES for m in (3, 6, 2)])
def test_three_four_and_six_eight_fill_the_bar(style: str, meter: int) -> None:
    bars = by_bar(engine(style).plan(0, 16 * meter, ctx(meter)), meter)
    pulse = 3 if meter == 6 else 1
    for bar in range(16):
        notes = bars[bar]
        assert all(bar * meter <= n.start_beat and n.end_beat <= (bar + 1) * meter for n in notes)
        assert any(n.pitch in KICKS and n.start_beat == bar * meter for n in notes), bar
        fill_from = (bar + 1) * meter - (meter if bar % 4 == 3 else 0)
        for beat in range(bar * meter, fill_from):  # time is kept on every beat before a fill
            if beat == bar * meter and bar % 4 == 0:
                continue  # the crash stands in for it
            assert any(n.start_beat == beat and n.pitch in CYMBALS for n in notes), (bar, beat)
        if bar % 4 == 3:  # the fill takes whole pulses: no cymbal from its start on
            tail = [n for n in notes if n.start_beat >= (bar + 1) * meter - pulse]
            assert tail and not {n.pitch for n in tail} & CYMBALS, (bar, tail)
    if meter == 6 and style in ("rock", "ballad", "pop"):  # 6/8 is felt in two: its backbeat on 4
        assert all(any(n.start_beat == b * 6 + 3 and n.pitch in SNARES | {37} for n in bars[b])
                   for b in range(16) if b % 4 != 3)


@pytest.mark.parametrize("meter", range(1, 14))
@pytest.mark.parametrize("style", STYLES)
def test_every_note_inside_its_bar_and_a_gm_drum(style: str, meter: int) -> None:
    for density in (0.0, 0.5, 1.0, 2.5, 4.0):
        notes = engine(style).plan(0, 9 * meter, ctx(meter, density))
        assert notes
        for n in notes:
            bar = n.start_beat // meter
            assert bar * meter <= n.start_beat < n.end_beat <= (bar + 1) * meter, n
            assert n.pitch in GM_DRUMS and 1 <= n.velocity <= 127 and n.channel == 9, n
        downbeats = {n.start_beat for n in notes if n.pitch in KICKS and n.start_beat % meter == 0}
        assert downbeats == {float(b * meter) for b in range(9)}


def test_every_groove_in_the_library_is_a_whole_bar() -> None:
    for (style, meter), groove in GROOVES.items():
        assert groove_for(style, meter) is groove
        assert all(len(t.removeprefix("=")) == meter * groove.steps_per_beat for t in groove.lanes.values())
        assert len(groove.variations) >= 3, (style, meter)


def test_phrase_and_fill_choices() -> None:
    assert phrase_starts(8, 4) == [0, 4] and phrase_starts(6, 4) == [0, 4] and phrase_starts(5, 4) == [0]
    assert bar_role(7, 8, 4).form_end and bar_role(7, 8, 4).fill and bar_role(8, 8, 4).crash
    assert bar_role(4, 8, 4).b_section is not bar_role(0, 8, 4).b_section
    for seed in range(20):  # the fill that follows a fill is never the same one
        picks = [pick_distinct(seed, k, 6, "f") for k in range(-10, 60)]
        assert all(a != b for a, b in itertools.pairwise(picks))
        assert set(picks) == set(range(6))


def test_yaml_errors_name_the_field() -> None:
    for bad, field in (({"style": "polka"}, "style"), ({"phrase_bars": 5}, "phrase_bars")):
        with pytest.raises(EnsembleError, match=rf"agents\.0\.engine\.{field}"):
            parse_ensemble({"agents": [{"name": "d", "channel": 9, "engine": {"type": "drums", **bad}}]})


def test_the_default_ensemble_has_a_drummer() -> None:
    ens = load_ensemble(ROOT / "ensembles" / "default.yaml")
    cfg = ens.agent("drums")
    assert cfg.channel == 9 and cfg.engine.type == "drums" and cfg.output.type == "null"
    e = make_engine(ens, cfg, ROOT / "ensembles")
    assert isinstance(e, DrumsEngine)
    notes = e.plan(0, 32, ctx())
    assert all(cfg.range[0] <= n.pitch <= cfg.range[1] for n in notes)  # the agent drops the rest


@pytest.mark.network
@pytest.mark.slow
def test_a_drums_agent_plays_fills_and_crashes_through_the_real_ensemble(tmp_path: Path) -> None:
    data = yaml.safe_load(DEFAULT.read_text())
    for agent in data["agents"]:
        if agent["name"] == "drums":
            agent["engine"] = {"type": "drums", "style": "rock", "seed": 5}
    data["human"]["source"]["path"] = str(DEFAULT.parent / data["human"]["source"]["path"])
    source = tmp_path / "src.yaml"
    source.write_text(yaml.safe_dump({**data, "tempo": 200}))
    out = tmp_path / "out"
    out.mkdir()
    report = play_bars(write_ensemble(out, source=source), 8, out)
    assert report["stuck_notes"] == 0 and report["parts"]["drums"]["late_notes"] == 0
    mid = mido.MidiFile(str(out / "out.mid"))
    track = next(t for t in mid.tracks if any(m.type == "track_name" and m.name == "drums" for m in t))
    pitches = [m.note for m in track if m.type == "note_on" and m.velocity > 0]
    assert sum(p in CRASHES for p in pitches) == 3  # bars 1 and 5, and the final downbeat
    assert TOMS & set(pitches) and set(pitches) <= GM_DRUMS
    expected = engine("rock", seed=5).plan(0, 32, ctx())
    ending = [KICK, CRASH]  # the final chord's share (protocol/form.py) on beat 32
    assert sorted(pitches) == sorted([n.pitch for n in expected] + ending)


def test_a_thinner_bossa_keeps_its_clave() -> None:
    full = engine("bossa").plan(0, 16 * 4, ctx(density=1.0))
    half = engine("bossa").plan(0, 16 * 4, ctx(density=0.5))
    assert [n for n in half if n.pitch == 37] == [n for n in full if n.pitch == 37]
    assert len([n for n in half if n.pitch in CYMBALS]) < len([n for n in full if n.pitch in CYMBALS])


def test_every_style_the_yaml_accepts_has_a_groove_in_every_meter() -> None:
    assert set(FALLBACK) == set(STYLES) and len(STYLES) == 8
    for style in STYLES:
        for meter in range(1, 33):
            assert groove_for(style, meter).beats == meter
