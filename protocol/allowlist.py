"""Who may send to a UDP port: networks by sender address, and a bounded count of everyone refused.

A UDP source address is not authentication (docs/security.md says what that leaves open), but it
is the one thing a receiver knows before it reads a byte: checking it first means a stranger's
packet costs one lookup, never a decode. The conductor's control port and every process's OSC bus
port hold their senders to an Allowlist; the counts say who tried.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Sequence

MAX_REFUSED_HOSTS = 256  # per-address refusal counts kept; later strangers are counted under "other"


class Allowlist:
    """Networks that may send; everything else is refused and counted per address.

    Per-address counts stop growing new keys at MAX_REFUSED_HOSTS (the rest go under "other"), so a
    sweep of spoofed sources cannot grow a process's memory or its status message without bound.
    Two allowlists may share one `refused` table (the conductor's control and bus ports do), so one
    stranger shows up once, whichever port it tried.
    """

    def __init__(self, networks: Sequence[str], refused: Counter[str] | None = None) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]
        self.refused: Counter[str] = Counter() if refused is None else refused

    def allows(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ok = False
        else:
            ok = any(ip in net for net in self.networks)
        if not ok:
            key = host if host in self.refused or len(self.refused) < MAX_REFUSED_HOSTS else "other"
            self.refused[key] += 1
        return ok
