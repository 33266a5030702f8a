"""A Generator on the committed tiny model, as the decoder tests build it: track 2 on channel 1, the
player on track 1, a pitch range unless a test names another.
"""

from __future__ import annotations

from agents.model.decoder import Generator
from agents.model.live_context import LiveContext
from agents.model.prompt import setup_prefix
from agents.model.runtime import ModelRuntime
from agents.model.vocab import VOCAB_V2
from support.models import TINY

V = VOCAB_V2
HUMAN = 1
TRACK, CHANNEL = 2, 1


def make(seed: int = 0, sampling: str = "fast", **kw: object) -> tuple[Generator, LiveContext, ModelRuntime]:
    """A fresh runtime, context (setup rows for both tracks) and Generator; `kw` goes to the Generator."""
    rt = ModelRuntime(TINY)
    ctx = LiveContext("v2", prefix=setup_prefix("v2", bpm=120, programs=((1, 0, 0), (TRACK, CHANNEL, 33))))
    kw.setdefault("pitch_range", (40, 76))
    return Generator(rt, ctx, track=TRACK, channel=CHANNEL, seed=seed, sampling=sampling, **kw), ctx, rt
