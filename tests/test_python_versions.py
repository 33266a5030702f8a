"""The README's two steps, install and play, on every other Python the project claims that this
machine has: a venv per version, `pip install -e '.[cpu]'`, then the default ensemble for 2 bars, played
from a copy of the checkout's tracked files (what a fresh clone has).

WHY: the test suite runs on one interpreter, so a dependency without a wheel for another one (a
compiled MIDI backend on 3.13, say) or syntax a newer Python alone accepts goes unnoticed until a
user's install fails. Versions come from pyproject.toml's classifiers, the claim itself.

Cost: the first run builds the venvs side by side (about 2 minutes for three on 2 cores with a local
index); each is kept under ~/.cache/barcelona/pythons (or $BARCELONA_PYTHONS_CACHE), keyed by
pyproject.toml and this checkout's path, so later runs only play (about 15 s per version).
`-m "not pythons"` leaves the whole check out. A version that is not installed is
skipped with the reason; `pip` that cannot reach any index skips too, since that is the machine's
network, while any other install failure fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
CACHE = Path(os.environ.get("BARCELONA_PYTHONS_CACHE", Path.home() / ".cache" / "barcelona" / "pythons"))
INSTALL_TIMEOUT_S = 900
RUN_TIMEOUT_S = 180
OFFLINE = ("Failed to establish a new connection", "Temporary failure in name resolution",
           "Network is unreachable", "No route to host", "ProxyError")
HERE = f"{sys.version_info[0]}.{sys.version_info[1]}"


def claimed_versions() -> list[str]:
    """'3.10', '3.11', ... from the `Programming Language :: Python :: 3.X` classifiers."""
    return sorted(set(re.findall(r"Programming Language :: Python :: (3\.\d+)\"", PYPROJECT.read_text())),
                  key=lambda v: int(v.split(".")[1]))


OTHERS = [v for v in claimed_versions() if v != HERE]


def _reports(exe: str, version: str) -> bool:
    """True when `exe` runs and is that version (a pyenv shim for a version not selected fails)."""
    try:
        out = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == version


def find_python(version: str) -> str | None:
    """pythonX.Y on PATH, else the newest pyenv build of it."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(glob.glob(str(root / "versions" / f"{version}.*" / "bin" / f"python{version}")),
                         reverse=True)
    return next((c for c in candidates if c and _reports(c, version)), None)


def venv_dir(version: str) -> Path:
    key = hashlib.sha256(PYPROJECT.read_bytes() + str(ROOT).encode()).hexdigest()[:12]
    return CACHE / f"py{version}-{key}"


def clean_env() -> dict[str, str]:
    """The user's environment without another Python's paths: the venv must stand on its own."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """One builder per venv, should two test runs start together."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def ensure_venv(python: str, version: str) -> Path | tuple[str, str]:
    """The cached venv's python, built by the README's command first when missing or stale; or
    ("skip" | "fail", why). Run in a thread per version: outcomes come back rather than raise."""
    folder = venv_dir(version)
    exe = folder / "bin" / "python"
    stamp = folder / ".installed"
    with locked(CACHE / f".py{version}.lock"):
        if stamp.exists() and exe.exists():
            return exe
        shutil.rmtree(folder, ignore_errors=True)
        for old in CACHE.glob(f"py{version}-*"):  # earlier pyproject.toml versions of this checkout
            if old.is_dir() and (old / ".root").exists() and (old / ".root").read_text() == str(ROOT):
                shutil.rmtree(old, ignore_errors=True)
        steps = [[python, "-m", "venv", str(folder)],
                 [str(exe), "-m", "pip", "install", "-q", "-e", ".[cpu]"]]
        for argv in steps:
            proc = subprocess.run(argv, cwd=ROOT, env=clean_env(), capture_output=True, text=True,
                                  timeout=INSTALL_TIMEOUT_S)
            if proc.returncode != 0:
                log = proc.stdout[-3000:] + proc.stderr[-3000:]
                if any(s in log for s in OFFLINE):
                    return "skip", f"Python {version}: pip reaches no package index here"
                return "fail", f"Python {version}: {' '.join(argv[-4:])} failed ({proc.returncode}):\n{log}"
        (folder / ".root").write_text(str(ROOT))
        stamp.write_text(sys.version)
    return exe


@pytest.fixture(scope="module")
def venvs() -> dict[str, Path | tuple[str, str]]:
    """Every other claimed Python's venv, the missing ones built side by side (pip mostly waits on
    downloads and disk, so three builds take little longer than one)."""
    found = {v: find_python(v) for v in OTHERS}
    out: dict[str, Path | tuple[str, str]] = {
        v: ("skip", f"Python {v} is not installed (no python{v} on PATH, none under pyenv)")
        for v, py in found.items() if py is None
    }
    todo = {v: py for v, py in found.items() if py is not None}
    with ThreadPoolExecutor(max_workers=max(1, len(todo))) as pool:
        futures = {v: pool.submit(ensure_venv, py, v) for v, py in todo.items()}
        out.update({v: f.result() for v, f in futures.items()})
    return out


def test_this_interpreter_is_claimed() -> None:
    assert HERE in claimed_versions(), f"tests run on {HERE}, pyproject claims {claimed_versions()}"
    assert claimed_versions()[0] == re.search(r'requires-python = ">=(3\.\d+)"', PYPROJECT.read_text())[1]


def fresh_clone(dest: Path) -> Path:
    """What a clone of this checkout holds: its tracked files (as they are now), nothing ignored or
    untracked, so a run there fails where a file the run needs was never committed."""
    try:
        listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True,
                                check=True, timeout=60).stdout
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"not a git checkout, so what a clone holds is unknown: {exc}")
    for name in filter(None, listed.decode().split("\0")):
        src = ROOT / name
        if src.is_file():  # a tracked file deleted in the working tree is not in the clone either
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.mark.slow
@pytest.mark.pythons
@pytest.mark.parametrize("version", OTHERS)
def test_readme_install_and_default_ensemble(
    version: str, venvs: dict[str, Path | tuple[str, str]], tmp_path: Path
) -> None:
    exe = venvs[version]
    if isinstance(exe, tuple):
        (pytest.skip if exe[0] == "skip" else pytest.fail)(exe[1])
    assert isinstance(exe, Path)
    clone = fresh_clone(tmp_path / "clone")
    # The venv's editable install points at this checkout; run from the clone, its own files come first.
    names = ("protocol", "agents", "conductor", "launcher")
    show = f"import {', '.join(names)}\nfor p in ({', '.join(names)}):\n    print(p.__file__)"
    where = subprocess.run([str(exe), "-c", show], cwd=clone, env=clean_env(), capture_output=True, text=True,
                           timeout=60)  # fmt: skip
    files = where.stdout.split()
    assert len(files) == len(names) and all(Path(f).is_relative_to(clone) for f in files), where
    report, record = tmp_path / "report.json", tmp_path / "out.mid"
    argv = [str(exe), "run_ensemble.py", "ensembles/default.yaml", "--bars", "2", "--quiet",
            "--record", str(record), "--report", str(report)]
    proc = subprocess.run(argv, cwd=clone, env=clean_env(), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, f"Python {version}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    data = json.loads(report.read_text())
    assert data["stuck_notes"] == 0
    assert {p["role"] for p in data["parts"].values()} >= {"agent", "human"}
    assert record.stat().st_size > 0
    # The `cpu` install has no compiled MIDI backend, and a MIDI port says so in one line.
    ports = subprocess.run([str(exe), "run_ensemble.py", "--list-ports", "ensembles/default.yaml"], cwd=clone,
                           env=clean_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    if ports.returncode == 1:
        assert ports.stderr.strip().startswith("error: --list-ports: MIDI ports need the 'midi' extra")
    else:  # python-rtmidi came in anyway (e.g. a global site-packages): listing works then
        assert ports.returncode == 0, ports.stderr[-2000:]
