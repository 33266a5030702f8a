"""The Link bridge's planning, without a network: a simulated session and the conductor's timeline.

WHY offline: `follow_step` decides every correction the conductor announces; driving it with a fake
clock checks the rules exactly (each change on a whole beat, at least 0.1 s ahead, beat continuous,
tempo at most ~10 % off while catching up) where a live session only shows the outcome. The live
session is tests/test_link.py. Also: a YAML without Link needs no package; one with it says which.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from support.ensembles import write_ensemble

from conductor.link import (
    MAX_SLEW,
    MIN_LEAD_S,
    LinkBridge,
    LinkSample,
    LinkUnavailableError,
    follow_step,
    wrap,
)
from protocol.ensemble import LinkConfig, parse_ensemble
from protocol.messages import Control
from protocol.timeline import Timeline

Q = 4.0
DT = 0.02


Changes = list[tuple[float, Timeline]]


def simulate(tl: Timeline, link_beat0: float, link_tempo: float, seconds: float) -> Changes:
    """Run the bridge's loop against a session whose beat is link_beat0 at t=0; returns each change."""
    changes = []
    t = 0.0
    while t < seconds:
        s = LinkSample(t, link_beat0 + t * link_tempo / 60.0, link_tempo, 1)
        new = follow_step(tl, s, t, Q)
        if new is not None:
            # Beat continuity: agents must never see the beat jump.
            assert abs(new.beat_at(t) - tl.beat_at(t)) < 1e-9
            changes.append((t, new))
            tl = new
        t += DT
    return changes


def error_ms(tl: Timeline, link_beat: float, tempo: float, t: float) -> float:
    return wrap(link_beat - tl.beat_at(t), Q) * 60.0 / tempo * 1000.0


def test_wrap_folds_into_half_a_quantum() -> None:
    assert wrap(3.9, 4.0) == pytest.approx(-0.1)
    assert wrap(-3.9, 4.0) == pytest.approx(0.1)
    assert wrap(8.25, 4.0) == pytest.approx(0.25)


def test_in_phase_and_in_tempo_changes_nothing() -> None:
    tl = Timeline(tempo_bpm=100.0, playing=True)
    assert simulate(tl, 8.0, 100.0, 5.0) == []


def test_a_stopped_conductor_takes_the_tempo_at_once() -> None:
    tl = Timeline(tempo_bpm=120.0)
    new = follow_step(tl, LinkSample(1.0, 3.0, 100.0, 1), 1.0, Q)
    assert new is not None and new.tempo_bpm == 100.0 and new.next_tempo_bpm == 0.0


@pytest.mark.parametrize(("offset", "tempo"), [(0.0, 90.0), (0.05, 100.0), (-0.3, 100.0), (2.0, 128.0)])
def test_follow_converges_with_announced_changes(offset: float, tempo: float) -> None:
    """Tempo and phase both off: every change is on a whole beat, announced ahead, and bounded."""
    tl = Timeline(tempo_bpm=100.0, playing=True)
    changes = simulate(tl, offset, tempo, 40.0)
    assert changes
    prev = tl
    for t, new in changes:
        assert new.change_beat == int(new.change_beat)
        assert prev.time_at(new.change_beat) - t >= MIN_LEAD_S - 1e-9, "announced too late"
        assert abs(new.next_tempo_bpm / tempo - 1.0) <= MAX_SLEW / (1 - MAX_SLEW) + 1e-9
        prev = new
    t_end = 40.0
    final = changes[-1][1].settled(t_end)
    assert final.tempo_bpm == pytest.approx(tempo, abs=1e-3) and final.next_tempo_bpm == 0.0
    assert abs(error_ms(final, offset + t_end * tempo / 60.0, tempo, t_end)) < 1.0


def test_small_offsets_are_gone_within_two_beats() -> None:
    tl = Timeline(tempo_bpm=100.0, playing=True)
    changes = simulate(tl, 0.02, 100.0, 5.0)
    assert len(changes) == 2  # catch up for one beat, then the session's tempo again
    assert changes[1][1].next_tempo_bpm == 100.0


# -- without the package ------------------------------------------------------------------------------
def hide_aalink(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aalink", None)  # `import aalink` now raises ImportError


def test_no_link_in_the_yaml_needs_no_package(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_aalink(monkeypatch)
    bridge = LinkBridge(LinkConfig())
    assert bridge.stats() is None and not bridge.takes_control(Control("tempo", 90.0))
    tl = Timeline(playing=True, time_origin=3.0)
    assert bridge.aligned(tl) is tl


def test_link_in_the_yaml_without_the_package_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hide_aalink(monkeypatch)
    with pytest.raises(LinkUnavailableError, match="link"):
        LinkBridge(LinkConfig(enabled=True))
    path = write_ensemble(tmp_path, {"conductor": {"link": {"enabled": True}}})
    from conductor.__main__ import main

    assert main([str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install" in err[0], err


def test_link_yaml_is_validated() -> None:
    ens = parse_ensemble(yaml.safe_load("conductor: {link: {enabled: true, mode: lead, quantum: 3}}"))
    assert ens.conductor.link.mode == "lead" and ens.conductor.link.quantum == 3.0
    with pytest.raises(ValueError, match=r"conductor\.link\.mode"):
        parse_ensemble({"conductor": {"link": {"mode": "drive"}}})
