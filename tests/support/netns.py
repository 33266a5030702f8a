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

Faults, for later tests:

- ``set_loss(host, percent)``: an nftables ``bridge`` table in the bridge namespace with
  ``numgen random mod 10000 < N drop`` on that host's port, for what it sends and/or receives
  (IPv4 only; dropped on the "wire", so the sender sees no error, as on a real network).
- ``set_delay(host, mean_ms, sd_ms)``: an iptables NFQUEUE rule in that host plus a shim process
  inside it (this file run as a script; needs iptables, the ``netfilterqueue`` package and
  ``libnetfilter-queue-dev``)
  that holds each packet for a normal(mean, sd) delay (clipped at 0) and then accepts it, so packets
  may reorder as on a jittery network. ``delay_missing_reason()`` says when it cannot run.

Cleanup: ``close()`` (and ``__exit__``, and an atexit hook for rigs left open) ends every process the
rig started and every process still inside its namespaces (by pid, all of them descendants of this
rig), then deletes the namespaces, which destroys their veths and the bridge. A new rig first sweeps
stale ones: namespaces named ``bcn<pid>-...`` whose pid no longer exists (a run that was killed).
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import itertools
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar


def _tool(name: str) -> str | None:
    """A system tool's path; /usr/sbin is searched too, since a non-login PATH may lack it."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


IP = _tool("ip")
NFT = _tool("nft")
IPTABLES = _tool("iptables")
NETNS_DIR = Path("/var/run/netns")
PREFIX = "bcn"
NAME_RE = re.compile(r"^bcn(\d+)-(\d+)-([A-Za-z0-9_-]+)$")
HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,23}$")
BRIDGE_HOST = "_bridge"
CLONE_NEWNET = 0x40000000
LOSS_TABLE = "bcn_loss"
DELAY_CHAIN = "BCN_DELAY"
MAX_HOSTS = 250

Direction = Literal["in", "out", "both"]
T = TypeVar("T")

_seq = itertools.count(1)
_open_rigs: weakref.WeakSet[NetRig] = weakref.WeakSet()


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


def nft_missing_reason() -> str | None:
    """Why ``set_loss``/``set_delay`` cannot run here, or None."""
    reason = netns_missing_reason()
    if reason is not None:
        return reason
    if NFT is None:
        return "nftables `nft` is not installed (apt-get install nftables)"
    return None


@functools.cache
def delay_missing_reason() -> str | None:
    """Why the NFQUEUE delay shim cannot run here, or None."""
    reason = netns_missing_reason()
    if reason is not None:
        return reason
    if IPTABLES is None:
        return "the delay shim's NFQUEUE rule needs iptables (apt-get install iptables)"
    probe = subprocess.run([sys.executable, "-c", "import netfilterqueue"], capture_output=True, text=True,
                           check=False, timeout=30)
    if probe.returncode != 0:
        return ("the NFQUEUE delay shim needs `netfilterqueue` (apt-get install libnetfilter-queue-dev; "
                "pip install netfilterqueue)")
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
        self._delays: dict[str, subprocess.Popen[Any]] = {}
        self._loss: dict[str, tuple[float, Direction]] = {}
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
        for proc in [*self._delays.values(), *self._procs]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self._delays.values(), *self._procs]:
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

    # -- faults ------------------------------------------------------------------------------------
    def set_loss(self, name: str, percent: float, direction: Direction = "both") -> None:
        """Lose ``percent`` % (0.01 % steps) of host ``name``'s IPv4 packets: sent ("out"), received
        ("in") or both, each direction drawn independently. ``percent`` 0 removes it.

        WHY at the bridge: a drop in the host's own output hook makes ``sendto`` fail with EPERM,
        which no real network does; dropping the frame on the bridge port is silent, as on a wire.
        Only IPv4 is dropped (ARP is not), so loss never stalls address resolution for a second.
        """
        if not 0 <= percent <= 100:
            raise ValueError(f"percent must be within 0..100, got {percent}")
        if direction not in ("in", "out", "both"):
            raise ValueError(f"direction must be in, out or both, got {direction!r}")
        self.netns(name)
        if percent == 0:
            self._loss.pop(name, None)
        else:
            self._loss[name] = (percent, direction)
        rules = []
        for host, (pct, way) in self._loss.items():
            port = f"p{self.hosts.index(host) + 1}"
            share = round(pct * 100)
            chance = "" if share >= 10000 else f"numgen random mod 10000 < {share} "
            drop = f"meta protocol ip {chance}drop"
            if way in ("out", "both"):
                rules.append(f'iifname "{port}" {drop}')
            if way in ("in", "both"):
                rules.append(f'oifname "{port}" {drop}')
        chains = [("bcn_loss", "forward", 0, "\n    ".join(rules))] if rules else None
        self._nft_replace(BRIDGE_HOST, LOSS_TABLE, chains, family="bridge")

    def set_delay(self, name: str, mean_ms: float, sd_ms: float = 0.0, direction: Direction = "out",
                  queue: int = 7) -> None:
        """Hold each of host ``name``'s packets for normal(mean_ms, sd_ms) ms (clipped at 0).

        WHY NFQUEUE: this kernel has no ``tc netem``. The rule queues the packets to a shim running
        inside the host, which accepts each one when its delay is up (so jitter can reorder them).
        ``mean_ms`` 0 and ``sd_ms`` 0 remove the rule and stop the shim.
        """
        if mean_ms < 0 or sd_ms < 0:
            raise ValueError("mean_ms and sd_ms must be >= 0")
        old = self._delays.pop(name, None)
        self._queue_rules(name, None, direction)
        if old is not None:
            old.terminate()
            old.wait(3.0)
        if mean_ms == 0 and sd_ms == 0:
            return
        reason = delay_missing_reason()
        if reason is not None:
            raise RigError(reason)
        shim = self.popen(name, [sys.executable, __file__, "delay", "--queue", str(queue),
                                 "--mean-ms", str(mean_ms), "--sd-ms", str(sd_ms)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert shim.stdout is not None and shim.stderr is not None
        # The shim prints "bound" once it listens on the queue; wait for that line, with a deadline.
        ready, _, _ = select.select([shim.stdout], [], [], 15.0)
        line = shim.stdout.readline() if ready else ""
        if line.strip() != "bound":
            shim.kill()
            shim.wait(3.0)
            raise RigError(f"delay shim did not start in {name}: {line.strip()} {shim.stderr.read().strip()}")
        self._delays[name] = shim
        # No `--queue-bypass`: if the shim dies the host goes silent and a test fails loudly.
        self._queue_rules(name, queue, direction)

    def _queue_rules(self, name: str, queue: int | None, direction: Direction) -> None:
        """Send host ``name``'s non-lo IPv4 packets to NFQUEUE ``queue`` (None: stop doing so).

        WHY iptables here and nft elsewhere: this kernel lacks nft's own ``queue`` expression
        (CONFIG_NFT_QUEUE) but has the xtables NFQUEUE target, which iptables(-nft) reaches.
        """
        if direction not in ("in", "out", "both"):
            raise ValueError(f"direction must be in, out or both, got {direction!r}")
        assert IPTABLES is not None or queue is None
        if IPTABLES is None:
            return
        ipt = [IPTABLES, "-w"]
        self.run(name, [*ipt, "-N", DELAY_CHAIN], check=False)
        self.run(name, [*ipt, "-F", DELAY_CHAIN])
        for hook, iface in (("OUTPUT", "-o"), ("INPUT", "-i")):
            jump = [hook, "!", iface, "lo", "-j", DELAY_CHAIN]
            while self.run(name, [*ipt, "-D", *jump], check=False).returncode == 0:
                pass
            if queue is not None and direction in ("both", "out" if hook == "OUTPUT" else "in"):
                self.run(name, [*ipt, "-A", *jump])
        if queue is not None:
            self.run(name, [*ipt, "-A", DELAY_CHAIN, "-j", "NFQUEUE", "--queue-num", str(queue)])

    def _nft_replace(self, name: str, table: str, chains: Sequence[tuple[str, str, int, str]] | None,
                     family: str = "inet") -> None:
        """Replace one nftables table inside host ``name`` (or the bridge, ``_bridge``) atomically:
        one ``nft -f`` transaction."""
        reason = nft_missing_reason()
        if reason is not None:
            raise RigError(reason)
        assert NFT is not None
        # "table" then "delete table": exists, then gone, whatever was there before.
        lines = [f"table {family} {table}", f"delete table {family} {table}"]
        if chains:
            lines.append(f"table {family} {table} {{")
            for chain, hook, priority, rule in chains:
                lines += [f"  chain {chain} {{",
                          f"    type filter hook {hook} priority {priority}; policy accept;",
                          f"    {rule}",
                          "  }"]
            lines.append("}")
        ns = self.bridge_netns if name == BRIDGE_HOST else self.netns(name)
        result = subprocess.run([IP or "ip", "netns", "exec", ns, NFT, "-f", "-"], capture_output=True,
                                input="\n".join(lines) + "\n", text=True, check=False, timeout=20)
        if result.returncode != 0:
            raise RigError(f"nft in {name}: {result.stderr.strip()}")


def _close_all() -> None:
    for rig in list(_open_rigs):
        rig.close()


atexit.register(_close_all)


# -- the NFQUEUE delay shim (run inside a host by NetRig.set_delay) -----------------------------------


def _delay_shim(queue: int, mean_ms: float, sd_ms: float) -> int:
    """Accept each queued packet after a normal(mean, sd) delay; one thread, verdicts from a heap.

    netfilterqueue lets a verdict be given after the callback returns, so the callback only stamps
    the packet's due time; the loop sleeps on select() until the next packet arrives or falls due.
    """
    import heapq
    import random

    from netfilterqueue import COPY_META, NetfilterQueue  # type: ignore[import-not-found]

    held: list[tuple[float, int, Any]] = []
    counter = itertools.count()

    def hold(pkt: Any) -> None:
        delay = max(0.0, random.gauss(mean_ms, sd_ms)) / 1000.0
        heapq.heappush(held, (time.monotonic() + delay, next(counter), pkt))

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    nfq = NetfilterQueue()
    nfq.bind(queue, hold, max_len=4096, mode=COPY_META)  # verdicts only: no payload copies
    fd = nfq.get_fd()
    print("bound", flush=True)
    try:
        while not stop.is_set():
            now = time.monotonic()
            while held and held[0][0] <= now:
                heapq.heappop(held)[2].accept()
            wait = min(0.1, held[0][0] - now) if held else 0.1
            readable, _, _ = select.select([fd], [], [], max(0.0, wait))
            if readable:
                nfq.run(block=False)
    finally:
        for _, _, pkt in held:
            pkt.accept()
        nfq.unbind()
    return 0


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="NetRig helpers run inside a namespace")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("delay", help="NFQUEUE delay shim")
    d.add_argument("--queue", type=int, required=True)
    d.add_argument("--mean-ms", type=float, required=True)
    d.add_argument("--sd-ms", type=float, default=0.0)
    ns_args = ap.parse_args()
    sys.exit(_delay_shim(ns_args.queue, ns_args.mean_ms, ns_args.sd_ms))
