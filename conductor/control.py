"""The OSC control surface: what Max/MSP and TouchOSC send, turned into checked `Control` values.

Surfaces send floats where ints are meant and toggles as 0/1 floats, and may address several agents
at once with OSC patterns (`/agent/*/mute`). Senders outside the allowed networks are refused and
counted before their packets are parsed: a stranger's phone on the venue Wi-Fi must not stop the show,
nor cost the conductor a decode per packet. Displays (who get the beat ticks back) are allowed senders
only, and at most MAX_DISPLAYS of them: every display costs two sends a beat on the conductor's loop.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

# Re-exported: the control port's allowlist is the bus ports' one (protocol/allowlist.py).
from protocol.allowlist import MAX_REFUSED_HOSTS as MAX_REFUSED_HOSTS
from protocol.allowlist import Allowlist as Allowlist
from protocol.codec import OSC_ROOT
from protocol.controls import BY_NAME
from protocol.messages import Control

HUMAN_NOTE = "human/note"
MAX_DISPLAYS = 32  # a stage has a handful of surfaces; docs/security.md states this number


def exposure_warning(port: int, allow: Sequence[str]) -> str:
    """What the conductor prints when `control.listen: any` opens the control port to every host."""
    return (
        f"control.listen: any: control port UDP {port} is open on every interface, so any host on the "
        f"network can reach it; only senders in control.allow ({', '.join(allow) or 'none'}) may steer "
        "or get beat ticks"
    )


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


class Displays:
    """The surfaces that get beat ticks back: allowed senders only, the most recent `cap` of them.

    WHY bounded: every new UDP source port of an allowed host would otherwise be a subscriber for
    the rest of the show, and each one costs two sends on the conductor's loop every beat, so one
    host cycling through ports could make the beat itself late (tests/test_security_limits.py floods it
    with 20,000). A sender is refreshed each time it sends, so a surface that keeps talking stays;
    the one heard from longest ago is dropped first.
    """

    def __init__(self, cap: int = MAX_DISPLAYS) -> None:
        if cap < 1:
            raise ValueError(f"cap: needs at least 1 display, got {cap}")
        self.cap = cap
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()

    def add(self, address: tuple[str, int]) -> None:
        self._seen[address] = None
        self._seen.move_to_end(address)
        while len(self._seen) > self.cap:
            self._seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(list(self._seen))
