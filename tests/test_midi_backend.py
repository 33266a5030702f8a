"""python-rtmidi (the `midi` extra) is needed only where a YAML opens a MIDI port.

Each check runs in a fresh interpreter. Where the extra must be absent, `sys.modules["rtmidi"] = None`
makes every `import rtmidi` fail as it does on an install without it (Python's own way to hide a
module); tests/test_python_versions.py runs the default ensemble on real installs without the extra.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from protocol.ensemble import load_ensemble
from protocol.midi_backend import INSTALL_HINT, midi_ports_needed

ROOT = Path(__file__).resolve().parents[1]
HIDE = "import sys; sys.modules['rtmidi'] = None\n"


def run_py(code: str, *, hide_rtmidi: bool, tmp_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if hide_rtmidi and tmp_path is not None:
        # For child processes too (the launcher's agents and conductor): a sitecustomize hides it there.
        (tmp_path / "sitecustomize.py").write_text(HIDE)
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])
    prefix = HIDE if hide_rtmidi else ""
    return subprocess.run([sys.executable, "-c", prefix + textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_runtime_imports_no_midi_backend() -> None:
    """Everything the default ensemble loads, loaded, and rtmidi still not imported."""
    proc = run_py("""
        import sys, run_ensemble, agents.agent, agents.outputs, conductor.conductor, launcher.status
        from agents.outputs.factory import make_output
        make_output({"type": "null"}, where="agents.bass.output")
        assert "rtmidi" not in sys.modules, "rtmidi imported"
        assert "mido.backends.rtmidi" not in sys.modules
        print("ok")
    """, hide_rtmidi=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


@pytest.mark.parametrize(
    ("code", "line"),
    [
        ("""
         from agents.outputs.factory import make_output
         make_output({"type": "midi", "port": "Synth"}, where="agents.bass.output")
         """, "agents.bass.output: MIDI ports need the 'midi' extra"),
        ("""
         from conductor.midi_clock import MidiClockOut
         MidiClockOut("Digitakt").start()
         """, "conductor.midi_clock: MIDI ports need the 'midi' extra"),
        ("""
         from conductor.human import MidiInput
         MidiInput("Keystation")
         """, "human.source: MIDI ports need the 'midi' extra"),
        ("""
         from agents.outputs import list_ports
         """, "output: {type: midi}: MIDI ports need the 'midi' extra"),
    ],
    ids=["agent-output", "midi-clock", "human-source", "direct-import"],
)
def test_a_port_without_the_extra_is_one_line_naming_field_and_extra(code: str, line: str) -> None:
    proc = run_py(f"""
        try:
{textwrap.indent(textwrap.dedent(code), " " * 12)}
        except Exception as exc:
            print(str(exc))
        else:
            print("opened")
    """, hide_rtmidi=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout.strip()
    assert "\n" not in out and out.startswith(line) and INSTALL_HINT in out, out


def test_list_ports_without_the_extra_says_so_and_fails(tmp_path: Path) -> None:
    proc = run_py("""
        import sys, run_ensemble
        sys.exit(run_ensemble.main(["ensembles/default.yaml", "--list-ports"]))
    """, hide_rtmidi=True, tmp_path=tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.strip() == f"error: --list-ports: MIDI ports need the 'midi' extra: {INSTALL_HINT}"


def test_fields_that_open_midi_ports_are_named(tmp_path: Path) -> None:
    path = tmp_path / "midi.yaml"
    path.write_text(textwrap.dedent("""
        name: m
        conductor: {midi_clock: {virtual: true}}
        human: {name: me, channel: 0, source: {type: midi, port: Keys}}
        agents:
          - {name: bass, channel: 1, engine: {type: pattern}, output: {type: midi, virtual: true}}
          - {name: drums, channel: 9, engine: {type: pattern}, output: {type: null}}
    """))
    assert midi_ports_needed(load_ensemble(path)) == ["agents.bass.output", "human.source",
                                                      "conductor.midi_clock"]
    assert midi_ports_needed(load_ensemble(ROOT / "ensembles" / "default.yaml")) == []


MIDI_YAML = """
name: m
agents:
  - {name: drums, channel: 9, engine: {type: pattern}, output: {type: midi, virtual: true}}
"""


@pytest.mark.parametrize("flags", [["--check"], ["--bars", "2", "--quiet"]], ids=["check", "run"])
def test_a_midi_port_without_the_extra_stops_the_launcher_at_once(tmp_path: Path, flags: list[str]) -> None:
    """One line before anything starts (not an agent failing its restarts), for --check and a run."""
    path = tmp_path / "m.yaml"
    path.write_text(MIDI_YAML)
    proc = run_py(f"""
        import sys, run_ensemble
        sys.exit(run_ensemble.main([{str(path)!r}, *{flags!r}]))
    """, hide_rtmidi=True, tmp_path=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.strip() == (f"error: {path}: agents.drums.output: MIDI ports need the 'midi' extra: "
                                   f"{INSTALL_HINT}")
    assert proc.stdout == ""


def test_only_this_hosts_ports_count(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text(textwrap.dedent("""
        name: h
        conductor: {host: stage, midi_clock: {virtual: true}}
        agents:
          - {name: bass, host: band1, channel: 1, engine: {type: pattern},
             output: {type: midi, virtual: true}}
          - {name: drums, host: band2, channel: 9, engine: {type: pattern}, output: {type: null}}
    """))
    ens = load_ensemble(path)
    assert midi_ports_needed(ens, "band1") == ["agents.bass.output"]
    assert midi_ports_needed(ens, "band2") == []
    assert midi_ports_needed(ens, "stage") == ["conductor.midi_clock"]
