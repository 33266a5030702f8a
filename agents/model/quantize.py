"""int8 weights for an exported model: the storage the shipped model uses (`python -m training --int8`),
and what `engine.quantize: int8` gives a user's float32 export at load (agents/model/int8_cache.py).

A small model on one CPU core is bound by reading its weights, not by arithmetic, so a quarter of the
bytes runs faster for the same graph: the shipped agent ran x1.26 the events per CPU-second of its
float32 export (bench/model_speed, side by side). Activations stay float32 at the graph's edges and are
quantised per call inside it, so inputs, outputs and metadata are the export's own.
"""

from __future__ import annotations

from pathlib import Path

QUANT_KEY = "quantization"  # metadata of a graph whose MatMul weights are int8
RECIPE = "w7"  # how the weights are quantised; a copy made another way is made again


def quantize_int8(path: Path) -> None:
    """Rewrite one graph in place with int8 MatMul and embedding weights (ORT's dynamic quantisation),
    keeping its metadata and recording ``quantization: int8-dynamic`` beside it."""
    import onnx
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = path.with_name(path.name + ".int8")
    try:
        # lean graphs: ONNX shape inference cannot type the outputs of ORT's contrib operators.
        # 7-bit weights (reduce_range): x86 CPUs without VNNI (AVX2, AVX-512F) multiply u8 x s8 pairs
        # into a saturating int16 sum, which full-range weights overflow. On such a CPU (an AVX2 EPYC)
        # a small export's top token agreed with float32 at 0.73 with full-range weights, 0.88 with
        # reduced ones (mean KL 0.031 -> 0.004).
        quantize_dynamic(path, out, weight_type=QuantType.QInt8, reduce_range=True,
                         extra_options={"DefaultTensorType": TensorProto.FLOAT})
        model = onnx.load(str(out))
        kept = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        onnx.helper.set_model_props(model, kept | {QUANT_KEY: "int8-dynamic"})
        onnx.save(model, str(out))
        out.replace(path)  # only a finished graph replaces the float32 one
    finally:
        out.unlink(missing_ok=True)
