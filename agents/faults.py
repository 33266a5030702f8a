"""Fault injection, a test hook: inert unless its environment variable is set.

`BARCELONA_FAULT_PLAN="<agent>:<beat>:<marker file>"` makes that agent's planning loop raise once,
when the agent's clock reaches <beat>. Firing creates the marker file, and an agent that finds the
file does not fire, so the agent the launcher restarts plays on. Tests use it to prove that a loop
which raises mid-performance ends its process with every note released, and that the part comes
back; nothing else should set it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV = "BARCELONA_FAULT_PLAN"


class InjectedFaultError(RuntimeError):
    """The error the hook raises, named so a log line cannot be mistaken for a real failure."""


@dataclass
class PlanFault:
    beat: float
    marker: Path
    spent: bool = False

    @classmethod
    def from_env(cls, agent: str, environ: Mapping[str, str] = os.environ) -> PlanFault | None:
        raw = environ.get(ENV)
        if not raw:
            return None
        name, _, rest = raw.partition(":")
        beat, _, marker = rest.partition(":")
        try:
            at = float(beat)
        except ValueError:
            raise ValueError(f"{ENV}: {raw!r} is not <agent>:<beat>:<marker file>") from None
        if not marker:
            raise ValueError(f"{ENV}: {raw!r} is not <agent>:<beat>:<marker file>")
        return cls(at, Path(marker)) if name == agent else None

    def check(self, beat: float) -> None:
        """Raise InjectedFaultError the first time `beat` reaches the fault's beat, in any process."""
        if self.spent or beat < self.beat:
            return
        self.spent = True
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return  # an earlier instance of this agent fired it
        os.close(fd)
        raise InjectedFaultError(f"injected by {ENV} at beat {beat:.2f}")
