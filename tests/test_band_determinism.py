"""The same band under load: ensembles/band.yaml's five model parts (bass, piano, guitar, sax,
trumpet) and its drums behind the replayed player, in one event loop on virtual time
(tests/support/inprocess.py), play exactly the same notes idle and on a simulated busy machine.

The parts hear each other: which of the others' notes a part takes into account when it draws and
when it commits (no unisons, the bass lowest) must depend on musical time only, never on when the
notes happened to arrive (docs/band.md, "The same music under any load"). The busy run
(tests/support/busy_band.py) delays every bus datagram by a random few tens of milliseconds, and
gives each part a model that reads its messages late, answers late, draws a window only now and then
and pauses windows mid-way, all within what a machine that keeps up can show: no part falls behind
(`behind_beats`) and no note comes after the turn it was due in (`late_heard`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from support.busy_band import play
from support.inprocess import ENSEMBLES

BARS = 6
SEED = 3


def band_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ENSEMBLES / "band.yaml").read_text())
    data["seed"] = SEED
    return data


def test_a_busy_band_that_keeps_up_plays_the_same_notes() -> None:
    idle, _ = play(band_data(), ENSEMBLES, BARS, busy=False)
    busy, planners = play(band_data(), ENSEMBLES, BARS, busy=True)
    assert len(planners) == 5
    for name, planner in planners.items():
        assert planner.behind_beats == 0 and planner.late_heard == 0, name  # it kept up
    for name in [*planners, "drums"]:
        notes = idle.recorded(name)
        assert len(notes) > 2 * BARS, name  # it played
        assert busy.recorded(name) == notes, name


def test_the_bench_plays_in_process_idle_and_busy(tmp_path: Path) -> None:
    """`python -m bench.band --inprocess` measures the same notes on the simulated busy machine."""
    from bench.band import main

    out = tmp_path / "band.json"
    assert main(["--inprocess", "--smoke", "--json", str(out)]) == 0
    run = json.loads(out.read_text())["ensembles"]["default"][0]
    assert run["busy_exact"]["bass"] == run["busy_exact"]["piano"] == 1.0
    assert run["idle"]["bass"]["notes"] > 2
