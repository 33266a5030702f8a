"""Nothing listens beyond the addresses the YAML names, and listening on every interface is said aloud.

A process bound to 0.0.0.0 by accident would expose the control surface to the whole venue network,
so the sockets a running ensemble holds are read from /proc and compared with the file; `listen: any`
is the one way to bind every interface, the wildcard addresses are refused, and the conductor prints
the documented warning when it does.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support.ensembles import run_launcher, write_ensemble
from support.procs import descendants, listening
from support.security import (
    DOCS_ACL,
    ConductorProc,
    enforced,
)

from bench.fuzz import Ensemble
from conductor.control import (
    exposure_warning,
)
from protocol.ensemble import load_ensemble


# -- 2. nothing listens beyond what the YAML names ------------------------------------------------------
@pytest.mark.network
@pytest.mark.slow
def test_nothing_listens_beyond_the_addresses_the_yaml_names(tmp_path: Path) -> None:
    """The default ensemble, running: every socket its processes (launcher and children) hold is
    bound to an address the YAML names (loopback) and to exactly the bus and control ports; nothing
    on 0.0.0.0, no TCP listener, no IPv6."""
    path = write_ensemble(tmp_path)
    cfg = load_ensemble(path)
    base, n = cfg.bus.osc.base_port, len(cfg.agents)
    named = {cfg.control.listen, cfg.conductor.address, *(a.address for a in cfg.agents)}
    ens = Ensemble(path, tmp_path / "stats", tuple(a.name for a in cfg.agents))
    try:
        ens.start()
        assert ens.proc is not None
        bound = listening(descendants(ens.proc.pid))
    finally:
        ens.stop()
    assert named == {"127.0.0.1"}
    assert {a for _, a, _ in bound} <= named, bound
    assert {p for _, _, p in bound} == {cfg.control.port, *range(base, base + n + 1)}, bound
    assert not [b for b in bound if b[0] != "udp"], "no TCP listener and no IPv6 socket"


def test_listen_wildcards_are_refused_in_one_line_that_says_write_any(tmp_path: Path) -> None:
    rules = enforced()
    word = rules["listen_every_interface"].strip("`")
    refused = [v.strip().strip("`") for v in rules["listen_refused"].split(",")]
    assert word == "any" and refused == ["0.0.0.0", "::"]
    for value in refused:
        path = write_ensemble(tmp_path, {"control": {"listen": value}})
        proc = run_launcher([str(path), "--check"], timeout=60)
        assert proc.returncode == 1, proc.stdout
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "control.listen" in lines[0] and f"`listen: {word}`" in lines[0], lines
    ok = write_ensemble(tmp_path, {"control": {"listen": word}})
    assert load_ensemble(ok).control.bind_host == "0.0.0.0"


def unshare_missing_reason() -> str | None:
    try:
        ok = subprocess.run(["unshare", "-rn", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare: {exc}"
    return None if ok else "unshare -rn (a user and network namespace) is not allowed here"


@pytest.mark.network
def test_listen_any_binds_every_interface_and_says_so(tmp_path: Path) -> None:
    """In a network namespace of its own (only loopback, so nothing is exposed while the test runs)."""
    reason = unshare_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    allow = ["127.0.0.1/32", "192.168.1.42/32"]
    text = DOCS_ACL.read_text()
    documented = text.split("The conductor then prints, at start:\n\n```text\n", 1)[1].split("\n```", 1)[0]
    assert documented == exposure_warning(57300, allow)
    wrap = lambda argv: ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]  # noqa: E731
    overrides = {"control": {"listen": "any", "allow": allow}}
    cond = ConductorProc(tmp_path, overrides, "--no-autostart", wrap=wrap)
    try:
        bound = listening([cond.proc.pid])
        assert ("udp", "0.0.0.0", cond.cfg.control.port) in bound, bound
    finally:
        log = cond.stop()
    assert exposure_warning(cond.cfg.control.port, allow) in log, log
