"""A /stop from the control surface ends a `--bars` run within 2 s and says who sent it; without
`--bars` it pauses, and /play resumes.

WHY real processes: the launcher, conductor and agents each have to act on the stop for the run to
end (and a pause must not end it), which only the whole ensemble, on real sockets, can show. Every wait
is a condition with a deadline.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from pythonosc.osc_message_builder import OscMessageBuilder
from support.ensembles import (
    finish_launcher,
    read_json,
    recorded_onsets,
    start_launcher,
    wait_for,
    write_ensemble,
)


def _stop(port: int, sender: str = "127.0.0.1") -> tuple[str, int]:
    """/stop to the control surface from `sender`, as a surface's button sends it; returns the source."""
    b = OscMessageBuilder("/barcelona/demo/stop")
    b.add_arg(1.0, "f")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((sender, 0))
        s.sendto(b.build().dgram, ("127.0.0.1", port))
        return s.getsockname()


# -- 3. a stop ends a --bars run ------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.network
def test_stop_from_the_surface_ends_a_bars_run_within_2s_and_says_who(tmp_path: Path) -> None:
    yaml_path = write_ensemble(tmp_path)
    control = int(yaml.safe_load(yaml_path.read_text())["control"]["port"])
    stats_dir, rep, rec = tmp_path / "stats", tmp_path / "r.json", tmp_path / "out.mid"
    proc = start_launcher(yaml_path, "--bars", "8", "--stats-dir", str(stats_dir), "--report", str(rep),
                   "--record", str(rec))  # fmt: skip
    try:
        cond = lambda: read_json(stats_dir / "conductor.json")  # noqa: E731
        wait_for(lambda: cond().get("playing") and cond().get("beat", 0) >= 5, 60, "bar 2 to be under way")
        # A sender the YAML does not allow is refused and changes nothing.
        _stop(control, sender="127.0.0.2")
        wait_for(lambda: cond().get("refused", {}).get("127.0.0.2"), 5, "the stranger's stop to be refused")
        assert cond()["playing"] and proc.poll() is None
        sender = _stop(control)
        stopped = time.monotonic()
        proc.wait(timeout=10)
        took = time.monotonic() - stopped
        _, err = finish_launcher(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"\nlauncher exited {took:.3f} s after the /stop")
    assert proc.returncode == 0, err
    assert took < 2.0
    who = f"/stop from the control surface ({sender[0]}:{sender[1]})"
    assert f"run stopped by {who}" in err, err
    report = json.loads(rep.read_text())
    assert report["ended_by"] == who
    assert report["stuck_notes"] == 0
    assert 1 <= report["conductor"]["bar"] < 7, report["conductor"]
    onsets = recorded_onsets(rec, "piano")
    assert onsets and max(onsets) < 4 * (report["conductor"]["bar"] + 1), onsets


@pytest.mark.slow
@pytest.mark.network
def test_without_bars_stop_pauses_and_play_resumes(tmp_path: Path) -> None:
    yaml_path = write_ensemble(tmp_path)
    control = int(yaml.safe_load(yaml_path.read_text())["control"]["port"])
    stats_dir = tmp_path / "stats"
    proc = start_launcher(yaml_path, "--stats-dir", str(stats_dir))
    try:
        cond = lambda: read_json(stats_dir / "conductor.json")  # noqa: E731
        wait_for(lambda: cond().get("playing") and cond().get("beat", 0) >= 1, 60, "the ensemble to play")
        _stop(control)
        wait_for(lambda: cond().get("playing") is False, 5, "the stop")
        with pytest.raises(subprocess.TimeoutExpired):  # an ended run would have exited within 1 s
            proc.wait(timeout=1.0)
        assert proc.poll() is None and cond()["playing"] is False
        b = OscMessageBuilder("/barcelona/demo/play")
        b.add_arg(1.0, "f")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b.build().dgram, ("127.0.0.1", control))
        wait_for(lambda: cond().get("playing"), 5, "play to resume")
        proc.send_signal(signal.SIGTERM)
        _, err = finish_launcher(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
