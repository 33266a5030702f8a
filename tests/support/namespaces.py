"""Linux network-namespace plumbing under NetRig: making, entering, emptying and deleting namespaces.

WHY its own module: these are the few system calls and ``ip`` invocations a rig is built from, and
what the sweep of stale rigs needs; the rig (netns.py) and its packet impairments (impair.py) both
use them, and none of them knows about hosts, bridges or faults.

Namespace names are ``bcn<pid>-<seq>-<host>``; the pid says which run made one, so a namespace whose
pid is gone belongs to a killed run and may be swept.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar


def _tool(name: str) -> str | None:
    """A system tool's path; /usr/sbin is searched too, since a non-login PATH may lack it."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


IP = _tool("ip")
NETNS_DIR = Path("/var/run/netns")
PREFIX = "bcn"
NAME_RE = re.compile(r"^bcn(\d+)-(\d+)-([A-Za-z0-9_-]+)$")
BRIDGE_HOST = "_bridge"  # the host part of the bridge's namespace name
CLONE_NEWNET = 0x40000000

T = TypeVar("T")


class RigError(RuntimeError):
    """A namespace, link or rule could not be made; the message carries the failing command."""


# -- can this machine do it? ----------------------------------------------------------------------


@functools.cache
def netns_missing_reason() -> str | None:
    """Why this machine cannot build a rig (tests skip with it), or None when it can.

    Tried for real (``ip netns add`` + a veth + delete), since containers without CAP_SYS_ADMIN or
    without veth support fail only when asked.
    """
    if not sys.platform.startswith("linux"):
        return f"network namespaces need Linux, this is {sys.platform}"
    if os.geteuid() != 0:
        return "network namespaces need root (run the netns tests as root)"
    if IP is None:
        return "iproute2 `ip` is not installed (apt-get install iproute2)"
    probe = f"{PREFIX}{os.getpid()}-0-probe"
    try:
        _ip("netns", "add", probe)
    except RigError as exc:
        return f"`ip netns add` fails here: {exc}"
    try:
        _ip("-n", probe, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
    except RigError as exc:
        return f"veth pairs cannot be made in a namespace here: {exc}"
    finally:
        _delete_netns(probe)
    return None


# -- small helpers --------------------------------------------------------------------------------


def _ip(*args: str, timeout: float = 20.0) -> str:
    if IP is None:
        raise RigError("iproute2 `ip` is not installed")
    result = subprocess.run([IP, *args], capture_output=True, text=True, check=False, timeout=timeout)
    if result.returncode != 0:
        raise RigError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result.stdout


def _list_netns() -> list[str]:
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except OSError:
        return []


def _netns_pids(ns: str) -> list[int]:
    try:
        return [int(p) for p in _ip("netns", "pids", ns).split()]
    except RigError:
        return []


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(") ", 1)[1][:1] != "Z"


def _kill_inside(ns: str, timeout: float = 3.0) -> None:
    """End what still runs inside ``ns``: SIGTERM, then SIGKILL after ``timeout``.

    Only rig namespaces get here, and only this rig (or the dead run that made a stale one) put
    processes into them, so each pid is one of ours.
    """
    pids = _netns_pids(ns)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _pid_alive(p)]
        if pids:
            time.sleep(0.02)  # polling the processes' exit against a deadline
    for pid in pids:
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _delete_netns(ns: str) -> None:
    _kill_inside(ns)
    try:
        _ip("netns", "del", ns)
    except RigError:
        if (NETNS_DIR / ns).exists():
            raise


def sweep_stale() -> list[str]:
    """Delete rig namespaces whose creating pid is gone (a killed test run); returns their names."""
    swept = []
    for ns in _list_netns():
        m = NAME_RE.match(ns)
        if m is None:
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or Path(f"/proc/{pid}").exists():
            continue
        try:
            _delete_netns(ns)
            swept.append(ns)
        except RigError as exc:
            warnings.warn(f"could not remove stale namespace {ns}: {exc}", stacklevel=2)
    return swept


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(ns: str) -> None:
    """Move the calling THREAD into namespace ``ns`` (network namespaces are per thread)."""
    fd = os.open(NETNS_DIR / ns, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({ns}): {os.strerror(err)}")
    finally:
        os.close(fd)


def _call_in_netns(ns: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` in a fresh thread that entered ``ns``; sockets it opens belong to that namespace."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            _setns(ns)
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed back to the caller's thread below
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"netns-{ns}", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _disable_ipv6() -> None:
    for conf in ("all", "default"):
        path = Path(f"/proc/sys/net/ipv6/conf/{conf}/disable_ipv6")
        if path.exists():
            path.write_text("1")

