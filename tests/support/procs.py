"""Looking at the launcher's child processes from a test, through /proc (Linux)."""

from __future__ import annotations

from pathlib import Path


def children(pid: int) -> list[int]:
    """Direct children of a process: the conductor and agents a launcher started."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Running and not a zombie (a zombie has exited; only its parent has not collected it yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.split(") ", 1)[1][0] != "Z"


def child_running(pid: int, needle: str) -> list[int]:
    """The launcher's children whose command line contains `needle` (e.g. ' bass ')."""
    return [k for k in children(pid) if needle in cmdline(k) + " "]
