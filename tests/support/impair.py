"""Packet impairments on a NetRig: loss on a host's bridge port, delay (with jitter) inside a host.

WHY apart from the rig: the rig only builds and tears down namespaces; loss and delay need their own
tools (nftables, iptables, the ``netfilterqueue`` package) and their own state, and only some tests
and benches use them. NetRig keeps one ``Impairments`` and exposes ``set_loss``/``set_delay``.

- loss: an nftables ``bridge`` table in the bridge namespace with ``numgen random mod 10000 < N
  drop`` on that host's port, for what it sends and/or receives (IPv4 only; dropped on the "wire",
  so the sender sees no error, as on a real network).
- delay: an iptables NFQUEUE rule in that host plus a shim process inside it (delay_shim.py; needs
  iptables, the ``netfilterqueue`` package and ``libnetfilter-queue-dev``) that holds each packet for
  a normal(mean, sd) delay (clipped at 0) and then accepts it, so packets may reorder as on a jittery
  network. ``delay_missing_reason()`` says when it cannot run.
"""

from __future__ import annotations

import functools
import select
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .namespaces import BRIDGE_HOST, IP, RigError, _tool, netns_missing_reason

if TYPE_CHECKING:
    from .netns import NetRig

NFT = _tool("nft")
IPTABLES = _tool("iptables")
LOSS_TABLE = "bcn_loss"
DELAY_CHAIN = "BCN_DELAY"
DELAY_SHIM = Path(__file__).with_name("delay_shim.py")

Direction = Literal["in", "out", "both"]


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


class Impairments:
    """The loss and delay a rig's hosts have now: the loss rules per host and the running delay shims.

    Each method takes the rig it acts on rather than keeping it, so a rig is never kept alive by its
    own impairments (an unclosed rig that is dropped is freed as before).
    """

    def __init__(self) -> None:
        self.delays: dict[str, subprocess.Popen[Any]] = {}
        self.loss: dict[str, tuple[float, Direction]] = {}

    def set_loss(self, rig: NetRig, name: str, percent: float, direction: Direction = "both") -> None:
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
        rig.netns(name)
        if percent == 0:
            self.loss.pop(name, None)
        else:
            self.loss[name] = (percent, direction)
        rules = []
        for host, (pct, way) in self.loss.items():
            port = f"p{rig.hosts.index(host) + 1}"
            share = round(pct * 100)
            chance = "" if share >= 10000 else f"numgen random mod 10000 < {share} "
            drop = f"meta protocol ip {chance}drop"
            if way in ("out", "both"):
                rules.append(f'iifname "{port}" {drop}')
            if way in ("in", "both"):
                rules.append(f'oifname "{port}" {drop}')
        chains = [("bcn_loss", "forward", 0, "\n    ".join(rules))] if rules else None
        self._nft_replace(rig, BRIDGE_HOST, LOSS_TABLE, chains, family="bridge")

    def set_delay(self, rig: NetRig, name: str, mean_ms: float, sd_ms: float = 0.0,
                  direction: Direction = "out", queue: int = 7) -> None:
        """Hold each of host ``name``'s packets for normal(mean_ms, sd_ms) ms (clipped at 0).

        WHY NFQUEUE: this kernel has no ``tc netem``. The rule queues the packets to a shim running
        inside the host, which accepts each one when its delay is up (so jitter can reorder them).
        ``mean_ms`` 0 and ``sd_ms`` 0 remove the rule and stop the shim.
        """
        if mean_ms < 0 or sd_ms < 0:
            raise ValueError("mean_ms and sd_ms must be >= 0")
        old = self.delays.pop(name, None)
        self._queue_rules(rig, name, None, direction)
        if old is not None:
            old.terminate()
            old.wait(3.0)
        if mean_ms == 0 and sd_ms == 0:
            return
        reason = delay_missing_reason()
        if reason is not None:
            raise RigError(reason)
        shim = rig.popen(name, [sys.executable, str(DELAY_SHIM), "delay", "--queue", str(queue),
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
        self.delays[name] = shim
        # No `--queue-bypass`: if the shim dies the host goes silent and a test fails loudly.
        self._queue_rules(rig, name, queue, direction)

    def _queue_rules(self, rig: NetRig, name: str, queue: int | None, direction: Direction) -> None:
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
        rig.run(name, [*ipt, "-N", DELAY_CHAIN], check=False)
        rig.run(name, [*ipt, "-F", DELAY_CHAIN])
        for hook, iface in (("OUTPUT", "-o"), ("INPUT", "-i")):
            jump = [hook, "!", iface, "lo", "-j", DELAY_CHAIN]
            while rig.run(name, [*ipt, "-D", *jump], check=False).returncode == 0:
                pass
            if queue is not None and direction in ("both", "out" if hook == "OUTPUT" else "in"):
                rig.run(name, [*ipt, "-A", *jump])
        if queue is not None:
            rig.run(name, [*ipt, "-A", DELAY_CHAIN, "-j", "NFQUEUE", "--queue-num", str(queue)])

    def _nft_replace(self, rig: NetRig, name: str, table: str,
                     chains: Sequence[tuple[str, str, int, str]] | None, family: str = "inet") -> None:
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
        ns = rig.bridge_netns if name == BRIDGE_HOST else rig.netns(name)
        result = subprocess.run([IP or "ip", "netns", "exec", ns, NFT, "-f", "-"], capture_output=True,
                                input="\n".join(lines) + "\n", text=True, check=False, timeout=20)
        if result.returncode != 0:
            raise RigError(f"nft in {name}: {result.stderr.strip()}")

