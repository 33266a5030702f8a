"""The model side of an agent: SkyTNT-format tokenizer (batch and live) and ONNX runtime."""

from agents.model.live_context import Change, LiveContext, LiveNote
from agents.model.prompt import setup_prefix
from agents.model.score import midi_to_score, score_to_midi
from agents.model.tokenizer import MidiTokenizer
from agents.model.vocab import VOCAB_V1, VOCAB_V2, Vocab, vocab_for

__all__ = [
    "VOCAB_V1",
    "VOCAB_V2",
    "Change",
    "LiveContext",
    "LiveNote",
    "MidiTokenizer",
    "Vocab",
    "midi_to_score",
    "score_to_midi",
    "setup_prefix",
    "vocab_for",
]
