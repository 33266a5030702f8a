"""The building blocks every section of the ensemble YAML schema is made of.

Each role's settings live in their own module (protocol/agent_config.py, protocol/conductor_config.py)
and protocol/ensemble.py composes them; what they all share sits here so that no role's module has
to import another's for a port number or a name.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from protocol.rules import RULES

__all__ = ["Channel", "IpLiteral", "MidiApi", "Name", "Pitch", "Port", "Strict", "ranged"]


def ranged(name: str) -> Any:
    """The schema bound of a tunable number, read from the one rule table (protocol/rules.py)."""
    lo, hi = RULES[name].bounds
    return Field(ge=lo, le=hi)


Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Channel = Annotated[int, ranged("channel")]
Pitch = Annotated[int, ranged("pitch")]
Port = Annotated[int, Field(ge=1, le=65535)]
# the MIDI backend a port is opened through (protocol/midi_backend.py): outputs, inputs and the clock
MidiApi = Literal["auto", "jack", "alsa", "coremidi"]


def _ip_literal(value: str) -> str:
    """Bus and control sockets bind and send to IP literals only (protocol/transport_osc.py): a name
    would need a DNS lookup in the timing path, so it is refused here rather than at start-up."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address (write e.g. 127.0.0.1 or 192.168.1.20)") from None
    return value


IpLiteral = Annotated[str, AfterValidator(_ip_literal)]


class Strict(BaseModel):
    """Every section of the schema: an unknown key is an error (a misspelt setting would otherwise fall
    back to its default without a word), and a loaded ensemble is never changed in place."""

    model_config = ConfigDict(extra="forbid", frozen=True)
