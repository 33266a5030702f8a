"""The shipped default ensemble as the README runs it: the shipped model, no GPU, no download."""

from __future__ import annotations

import json
import time
from pathlib import Path

import mido
import pytest
import yaml
from support.ensembles import SHIPPED_DEFAULT, run_launcher, write_ensemble

pytestmark = [pytest.mark.network, pytest.mark.slow]


def test_default_ensemble_plays_with_the_shipped_model_in_time(tmp_path: Path) -> None:
    data = yaml.safe_load(SHIPPED_DEFAULT.read_text())
    model_agents = [a["name"] for a in data["agents"] if a["engine"]["type"] == "onnx"]
    assert model_agents, "the default ensemble plays the shipped model"
    yaml_path = write_ensemble(tmp_path, source=SHIPPED_DEFAULT)
    bars, tempo = 8, float(data["tempo"])
    t0 = time.monotonic()
    proc = run_launcher(
        [
            str(yaml_path),
            "--bars",
            str(bars),
            "--record",
            str(tmp_path / "out.mid"),
            "--report",
            str(tmp_path / "report.json"),
            "--quiet",
            "--stats-dir",
            str(tmp_path / "st"),
        ]
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["stuck_notes"] == 0
    for name in [a["name"] for a in data["agents"]]:
        part = report["parts"][name]
        assert part["notes"] > 0 and part["restarts"] == 0, (name, part)
    for name in model_agents:
        stats = json.loads((tmp_path / "st" / f"agent-{name}.json").read_text())
        assert stats["engine"] == "onnx" and stats["providers"], stats
    mid = mido.MidiFile(str(tmp_path / "out.mid"))
    tracks = {t.name: sum(1 for m in t if m.type == "note_on" and m.velocity > 0) for t in mid.tracks}
    for name in [data["human"]["name"]] + [a["name"] for a in data["agents"]]:
        assert tracks.get(name, 0) > 0, (name, tracks)
    beats = bars * data["meter"] + data["meter"]  # and the final chord, held a bar
    # The music itself takes beats * 60 / tempo; start-up (two model processes loading on a 2-core
    # runner beside the test's own load) and the stop come on top: up to ~6 s measured here. A model
    # that fell behind would stretch the run by whole bars; no note may leave late either.
    assert elapsed <= beats * 60.0 / tempo + 10.0, f"took {elapsed:.1f} s for {bars} bars"
    for name in model_agents:
        assert report["parts"][name]["late_notes"] == 0, (name, report["parts"][name])
