"""MatMul of two activations → BATCH_MATMUL (float, int8, 16x8).

LiteRT's default CPU path (the XNNPACK delegate) runs an int8 BATCH_MATMUL only when the
right-hand operand has zero point 0; otherwise the op falls back to the builtin kernel
(measured ~10x slower at BERT's attention sizes) and splits the delegated graph. An int8
right-hand operand with another zero point is therefore requantized (one QUANTIZE int8 →
int8) to zero point 0 over the same real range: its step grows by at most
``(128 + |zp|) / 127`` (≤ 1.2x for MiniLM's keys and values), noted in the export result.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgequant.errors import UnsupportedOpError
from edgequant.export.tflite.builder import Quant
from edgequant.export.tflite.convert import OP, OPT, Converter, TVal
from edgequant.export.tflite.ingest import Node


def zero_point_0_scale(scale: np.float32, zero_point: int) -> np.float32:
    """The step of an int8 grid (``scale``, ``zero_point``) re-expressed with zero point 0 over
    the same real range (float32, as the exporter writes it)."""
    z, s = int(zero_point), np.float32(scale)
    return np.float32(s * np.float32(max(128 + z, 127 - z)) / np.float32(127))


def symmetric_rhs(cv: Converter, y: TVal, name: str) -> TVal:
    """``y`` (int8, zero point z) requantized to zero point 0 covering its whole range."""
    if not cv.q or y.dtype != np.int8 or not y.quant.per_tensor or int(y.quant.zero_point[0]) == 0:
        return y
    s = np.float32(y.quant.scale[0])
    scale = zero_point_0_scale(s, int(y.quant.zero_point[0]))
    cv.note(f"tensor {name!r}: right-hand BATCH_MATMUL operand requantized to zero point 0 "
            f"(step x{scale / s:.3f}) so LiteRT's XNNPACK delegate runs the int8 kernel")
    return cv.requant(y, Quant.of(scale, 0), f"{name}_zp0")


def batch_matmul(cv: Converter, node: Node) -> None:
    """Two activations (or a constant right-hand side) → BATCH_MATMUL."""
    if node.attrs.get("_act"):
        raise UnsupportedOpError(f"node {node.name!r}: BATCH_MATMUL has no fused activation")
    x = cv.act(node.inputs[0], "nchw")
    b = cv.g.value(node.inputs[1])
    if b is None:
        y = symmetric_rhs(cv, cv.act(node.inputs[1], "nchw"), node.inputs[1])
    else:
        y = cv.float_const(node.inputs[1], b, node.inputs[1] in cv.g.half)
    out = cv.output(node.outputs[0], cv.shape_of(node.outputs[0]))
    cv.op(OP.BATCH_MATMUL, [x, y], [out], OPT.BatchMatMulOptions, schema.BatchMatMulOptionsT())
