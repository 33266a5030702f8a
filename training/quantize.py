"""int8 weights at export (``--int8``): the same rewrite agents apply at load (agents/model/quantize.py)."""

from agents.model.quantize import QUANT_KEY, quantize_int8

__all__ = ["QUANT_KEY", "quantize_int8"]
