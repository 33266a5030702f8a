"""Broken ensemble files: each gives one line naming the field, from --check as from the library."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.ensembles import ROOT, run_launcher

from protocol.ensemble import EnsembleError, load_ensemble

BROKEN = sorted((Path(__file__).parent / "fixtures" / "broken_yaml").glob("*.yaml"))


def expected(path: Path) -> str:
    return path.read_text().splitlines()[0].removeprefix("# expect: ").strip()


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_file_names_the_field(path: Path) -> None:
    with pytest.raises(EnsembleError) as err:
        load_ensemble(path)
    line = str(err.value)
    assert "\n" not in line
    assert expected(path) in line


def test_missing_file_is_one_line() -> None:
    with pytest.raises(EnsembleError, match="cannot read"):
        load_ensemble("/nonexistent/ensemble.yaml")


@pytest.mark.parametrize("path", sorted((ROOT / "ensembles").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_ensembles_are_valid(path: Path) -> None:
    load_ensemble(path)


def test_check_flag_exits_1_with_one_line() -> None:
    path = BROKEN[0]
    proc = run_launcher([str(path), "--check"], timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected(path) in lines[0]
    ok = run_launcher([str(ROOT / "ensembles" / "default.yaml"), "--check"], timeout=60)
    assert ok.returncode == 0, ok.stderr


def test_check_names_a_missing_model(tmp_path: Path) -> None:
    text = (ROOT / "ensembles" / "default.yaml").read_text()
    bad = tmp_path / "e.yaml"
    bad.write_text(text.replace("model: default ", "model: /nonexistent/model ", 1))
    (tmp_path / "melodies").symlink_to(ROOT / "ensembles" / "melodies")
    proc = run_launcher([str(bad), "--check"], timeout=60)
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert "agents.0.engine.model" in line and "/nonexistent/model" in line
