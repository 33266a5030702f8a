"""The OSC control surface: what Max/MSP and TouchOSC send, turned into checked `Control` values.

Surfaces send floats where ints are meant and toggles as 0/1 floats, and may address several agents
at once with OSC patterns (`/agent/*/mute`). Senders outside the allowed networks are refused and
counted: a stranger's phone on the venue Wi-Fi must not stop the show.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Sequence
from typing import Any

from protocol.codec import OSC_ROOT
from protocol.controls import BY_NAME
from protocol.messages import Control

HUMAN_NOTE = "human/note"


class ControlError(ValueError):
    """An OSC message the surface cannot act on; `reason` is the counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def strip_prefix(ensemble: str, address: str) -> str:
    """`/barcelona/<ens>/x/y` or `/x/y` → `x/y`; another ensemble's address is refused."""
    root = f"{OSC_ROOT}/"
    if address.startswith(root):
        rest = address[len(root) :]
        ens, _, tail = rest.partition("/")
        if ens not in (ensemble, "*"):
            raise ControlError("foreign_ensemble", address)
        return tail
    return address.lstrip("/")


def parse_control(ensemble: str, address: str, args: Sequence[Any]) -> Control:
    """One OSC message to one Control (agent patterns stay in `target`; the state expands them)."""
    path = strip_prefix(ensemble, address)
    parts = path.split("/")
    if len(parts) == 3 and parts[0] == "agent":
        scope, target, name = "agent", parts[1], parts[2]
    elif len(parts) == 1:
        scope, target, name = "ensemble", "", parts[0]
    else:
        raise ControlError("unknown_address", address)
    spec = BY_NAME.get((scope, name))
    if spec is None:
        raise ControlError("unknown_control", address)
    try:
        value = spec.coerce(list(args))
    except (TypeError, ValueError) as exc:
        raise ControlError(f"bad_value.{name}", str(exc)) from exc
    return Control(name, value, target)


class Allowlist:
    """Networks that may steer; everything else is refused and counted per address."""

    def __init__(self, networks: Sequence[str]) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]
        self.refused: Counter[str] = Counter()

    def allows(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ok = False
        else:
            ok = any(ip in net for net in self.networks)
        if not ok:
            self.refused[host] += 1
        return ok
