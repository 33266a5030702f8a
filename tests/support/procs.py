"""Looking at the launcher's child processes from a test, through /proc (Linux): who they are, and
which sockets they hold."""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path

import pytest

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl and /proc are Linux's")


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


def descendants(pid: int) -> list[int]:
    out, todo = [pid], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = [
                int(k)
                for t in Path(f"/proc/{p}/task").iterdir()
                for k in (t / "children").read_text().split()
            ]
        except OSError:
            continue
        out += kids
        todo += kids
    return out


def _ip(hex_addr: str) -> str:
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    return socket.inet_ntop(socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))


def listening(pids: list[int]) -> set[tuple[str, str, int]]:
    """(protocol, address, port) of every bound UDP socket and listening TCP socket the processes hold,
    read from /proc in each process's own network namespace (what `ss -lunp`/`ss -ltnp` show)."""
    found = set()
    for pid in pids:
        try:
            inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] for fd in os.listdir(f"/proc/{pid}/fd")
                      if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")}  # fmt: skip
            tables = {
                proto: Path(f"/proc/{pid}/net/{proto}").read_text()
                for proto in ("udp", "udp6", "tcp", "tcp6")
            }
        except OSError:
            continue  # the process ended meanwhile
        for proto, table in tables.items():
            for line in table.splitlines()[1:]:
                f = line.split()
                hex_ip, hex_port = f[1].split(":")
                if f[9] in inodes and int(hex_port, 16) and (proto.startswith("udp") or f[3] == "0A"):
                    found.add((proto, _ip(hex_ip), int(hex_port, 16)))
    return found


class Census:
    """Every process seen under a launcher during a run, polled from /proc (pid -> (ppid, cmdline))."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.seen: dict[int, tuple[int, str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            todo = [self.root]
            while todo:
                parent = todo.pop()
                for k in children(parent):
                    # Read again each poll: a child caught between fork and exec still shows its
                    # parent's command line.
                    line = cmdline(k)
                    if line or k not in self.seen:
                        self.seen[k] = (parent, line)
                    todo.append(k)
            self._stop.wait(0.01)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def alive(self) -> list[str]:
        """The processes seen that still run (with the command line seen: not a reused pid)."""
        return [f"{p} ({c[1][:80]})" for p, c in self.seen.items() if alive(p) and cmdline(p) == c[1]]
