"""A private network of named hosts in Linux network namespaces, for multi-host tests and benchmarks.

WHY: a multi-machine ensemble must be tested over real sockets on real (virtual) interfaces, with
distinct addresses per host, without any packet reaching the machine's own network. Every host here
is a network namespace with one veth into a bridge; the bridge lives in a namespace of its own, so
the root namespace gains no interface, no address and no route, and no host has a route out of the
rig (only its /16 and the multicast route): nothing from the rig can route anywhere outside.

Layout of one rig (``bcn<pid>-<seq>-`` is this process's prefix, ``<seq>`` counts rigs in it)::

    bcn<pid>-<seq>-_bridge   lo, br0 (no address) + one port p<k> per host
    bcn<pid>-<seq>-<host>    lo, eth0 = 198.18.<k>.1/16 (k = 1, 2, ...), route 224.0.0.0/4 dev eth0

198.18.0.0/15 is the benchmarking range (RFC 2544) that nothing else here uses. IPv6 is switched off
in every rig namespace so no link-local chatter (router/neighbour solicitations, MLD) exists at all.
The kernel's monotonic clock is shared by all namespaces (no time namespaces are made), so
``time.monotonic()`` read in any host is the same clock: tests compare beat clocks across hosts at
the same instant.

Faults, for later tests: ``set_loss(host, percent)`` and ``set_delay(host, mean_ms, sd_ms)``; how
they work, and what they need, is in impair.py (``nft_missing_reason()``/``delay_missing_reason()``
say when they cannot run). The namespace plumbing under the rig is in namespaces.py; the names of
both that callers use are re-exported here.

Cleanup: ``close()`` (and ``__exit__``, and an atexit hook for rigs left open) ends every process the
rig started and every process still inside its namespaces (by pid, all of them descendants of this
rig), then deletes the namespaces, which destroys their veths and the bridge. A new rig first sweeps
stale ones: namespaces named ``bcn<pid>-...`` whose pid no longer exists (a run that was killed).
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any

from .impair import (
    DELAY_CHAIN,
    DELAY_SHIM,
    IPTABLES,
    LOSS_TABLE,
    NFT,
    Direction,
    Impairments,
    delay_missing_reason,
    nft_missing_reason,
)
from .namespaces import (
    BRIDGE_HOST,
    CLONE_NEWNET,
    IP,
    NAME_RE,
    NETNS_DIR,
    PREFIX,
    RigError,
    T,
    _call_in_netns,
    _delete_netns,
    _disable_ipv6,
    _ip,
    _list_netns,
    netns_missing_reason,
    sweep_stale,
)

__all__ = [
    "BRIDGE_HOST",
    "CLONE_NEWNET",
    "DELAY_CHAIN",
    "DELAY_SHIM",
    "HOST_RE",
    "IP",
    "IPTABLES",
    "LOSS_TABLE",
    "MAX_HOSTS",
    "NAME_RE",
    "NETNS_DIR",
    "NFT",
    "PREFIX",
    "Direction",
    "NetRig",
    "RigError",
    "delay_missing_reason",
    "netns_missing_reason",
    "nft_missing_reason",
    "sweep_stale",
]

HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,23}$")
MAX_HOSTS = 250

_seq = itertools.count(1)
_open_rigs: weakref.WeakSet[NetRig] = weakref.WeakSet()


# -- the rig --------------------------------------------------------------------------------------


class NetRig:
    """N named hosts on one private bridge; a context manager that removes all of it on exit.

    ``NetRig(["broker", "stage", "band1"])`` gives host ``broker`` 198.18.1.1, ``stage`` 198.18.2.1,
    ``band1`` 198.18.3.1 (the order given). Processes run inside a host with ``popen``/``run``;
    ``call_in`` runs a Python function in a thread inside a host (to open a socket there, say).
    """

    def __init__(self, hosts: Iterable[str], *, ready_timeout: float = 10.0) -> None:
        names = list(hosts)
        if not names:
            raise ValueError("a rig needs at least one host")
        if len(names) > MAX_HOSTS:
            raise ValueError(f"at most {MAX_HOSTS} hosts, got {len(names)}")
        for name in names:
            if not HOST_RE.match(name):
                raise ValueError(f"host name {name!r}: letters, digits, _ and -, at most 24, no leading _/-")
        if len(set(names)) != len(names):
            raise ValueError(f"host names repeat: {names}")
        self.prefix = f"{PREFIX}{os.getpid()}-{next(_seq)}-"
        self.hosts: tuple[str, ...] = tuple(names)
        self._ips = {name: f"198.18.{k}.1" for k, name in enumerate(names, start=1)}
        self._ready_timeout = ready_timeout
        self._made: list[str] = []
        self._procs: list[subprocess.Popen[Any]] = []
        self._impair = Impairments()
        self._lock = threading.Lock()
        self._closed = False
        self._started = False

    # -- names and addresses ----------------------------------------------------------------------
    @property
    def bridge_netns(self) -> str:
        return self.prefix + BRIDGE_HOST

    def netns(self, name: str) -> str:
        """The namespace name of host ``name`` (for ``ip -n`` / ``ip netns exec`` by hand)."""
        if name not in self._ips:
            raise KeyError(f"no host {name!r} in this rig (hosts: {', '.join(self.hosts)})")
        return self.prefix + name

    def host_ip(self, name: str) -> str:
        """The host's only address (on eth0, a /16 of 198.18.0.0/15)."""
        self.netns(name)
        return self._ips[name]

    # -- life -------------------------------------------------------------------------------------
    def start(self) -> NetRig:
        """Sweep stale rigs, then build the bridge and every host; on any failure remove what was made."""
        if self._started:
            return self
        reason = netns_missing_reason()
        if reason is not None:
            raise RigError(reason)
        self._started = True
        _open_rigs.add(self)
        sweep_stale()
        try:
            sw = self.bridge_netns
            self._add_netns(sw)
            _ip("-n", sw, "link", "add", "br0", "type", "bridge")
            _ip("-n", sw, "link", "set", "br0", "up")
            for k, name in enumerate(self.hosts, start=1):
                ns = self.netns(name)
                self._add_netns(ns)
                _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"p{k}", "netns", sw)
                _ip("-n", sw, "link", "set", f"p{k}", "master", "br0", "up")
                _ip("-n", ns, "addr", "add", f"{self._ips[name]}/16", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
            self._wait_links_up()
        except BaseException:
            self.close()
            raise
        return self

    def _add_netns(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self._made.append(ns)
        _call_in_netns(ns, _disable_ipv6)
        _ip("-n", ns, "link", "set", "lo", "up")

    def _wait_links_up(self) -> None:
        """Veth carrier comes up asynchronously; wait until every host's eth0 reports it."""
        deadline = time.monotonic() + self._ready_timeout
        pending = list(self.hosts)
        while pending:
            pending = [h for h in pending if not self._eth0_up(h)]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise RigError(f"eth0 not up within {self._ready_timeout} s on: {', '.join(pending)}")
            time.sleep(0.01)  # polling link state against a deadline

    def _eth0_up(self, name: str) -> bool:
        info = json.loads(_ip("-n", self.netns(name), "-j", "link", "show", "eth0") or "[]")
        return bool(info) and "LOWER_UP" in info[0].get("flags", []) and info[0].get("operstate") == "UP"

    def close(self) -> None:
        """End every process in the rig, then delete every namespace it made (idempotent).

        Errors are collected, not raised at the first one, so one stuck namespace does not leave the
        others behind; what could not be removed is warned about (and swept by the next run).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for proc in [*self._impair.delays.values(), *self._procs]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self._impair.delays.values(), *self._procs]:
            try:
                proc.wait(3.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(3.0)
        problems = []
        for ns in reversed(self._made):  # hosts first, the bridge last
            try:
                _delete_netns(ns)
            except RigError as exc:
                problems.append(str(exc))
        _open_rigs.discard(self)
        if problems:
            warnings.warn("rig cleanup left: " + "; ".join(problems), stacklevel=2)

    def leftovers(self) -> list[str]:
        """Namespaces of this rig that still exist (empty after a clean ``close()``)."""
        return [ns for ns in _list_netns() if ns.startswith(self.prefix)]

    def __enter__(self) -> NetRig:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- running things inside a host ---------------------------------------------------------------
    def command(self, name: str, argv: Sequence[str]) -> list[str]:
        """The argv that runs ``argv`` inside host ``name`` (``ip netns exec``, which then execs it,
        so the Popen's pid is the program's own pid and signals reach it directly)."""
        assert IP is not None
        return [IP, "netns", "exec", self.netns(name), *map(str, argv)]

    def popen(self, name: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside host ``name``; the rig ends it on close if it is still running."""
        if self._closed or not self._started:
            raise RigError("the rig is not running")
        proc: subprocess.Popen[Any] = subprocess.Popen(self.command(name, argv), **kw)
        self._procs.append(proc)
        return proc

    def run(
        self, name: str, argv: Sequence[str], *, timeout: float = 60.0, check: bool = True, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside host ``name`` to completion; text output captured unless told otherwise."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        result: subprocess.CompletedProcess[str] = subprocess.run(
            self.command(name, argv), timeout=timeout, check=False, **kw
        )
        if check and result.returncode != 0:
            raise RigError(f"in {name}: {' '.join(map(str, argv))} exited {result.returncode}: "
                           f"{(result.stderr or '').strip()}")
        return result

    def call_in(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` in a thread inside host ``name`` and return its result."""
        return _call_in_netns(self.netns(name), fn, *args, **kwargs)

    def wait_tcp(self, via: str, address: tuple[str, int], timeout: float = 10.0) -> None:
        """Wait until a TCP connect from host ``via`` to ``address`` succeeds (a server is up)."""

        def attempt() -> None:
            deadline = time.monotonic() + timeout
            last: OSError | None = None
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(address, timeout=0.2).close()
                    return
                except OSError as exc:
                    last = exc
                    time.sleep(0.01)  # polling a server's readiness against a deadline
            raise TimeoutError(f"{address[0]}:{address[1]} not accepting from {via} in {timeout} s: {last}")

        self.call_in(via, attempt)

    # -- faults (impair.py) ------------------------------------------------------------------------
    def set_loss(self, name: str, percent: float, direction: Direction = "both") -> None:
        """Lose ``percent`` % (0.01 % steps) of host ``name``'s IPv4 packets: sent ("out"), received
        ("in") or both, each direction drawn independently, on its bridge port. ``percent`` 0 removes
        it. See ``Impairments.set_loss``."""
        self._impair.set_loss(self, name, percent, direction)

    def set_delay(self, name: str, mean_ms: float, sd_ms: float = 0.0, direction: Direction = "out",
                  queue: int = 7) -> None:
        """Hold each of host ``name``'s packets for normal(mean_ms, sd_ms) ms (clipped at 0) in an
        NFQUEUE shim inside the host; 0 and 0 remove it. See ``Impairments.set_delay``."""
        self._impair.set_delay(self, name, mean_ms, sd_ms, direction, queue)


def _close_all() -> None:
    for rig in list(_open_rigs):
        rig.close()


atexit.register(_close_all)

