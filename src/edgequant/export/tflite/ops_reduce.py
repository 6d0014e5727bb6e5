"""Op builders for ReduceSum → SUM, ReduceMax → REDUCE_MAX, ReduceMin → REDUCE_MIN and
ReduceL2 → SQRT(SUM(x·x)) (float), over the ONNX layout (NCHW; an NHWC-stored input is
transposed back first). ReduceMean lives in ``ops_layout`` (it remaps NHWC axes).

Integer SUM / REDUCE_MAX / REDUCE_MIN (int8) write the output's qparams; 16-bit
reductions and ReduceL2 run float (DEQUANTIZE / QUANTIZE around them).
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgequant.errors import UnsupportedOpError
from edgequant.export.tflite.convert import OP, OPT, Converter
from edgequant.export.tflite.ingest import Node
from edgequant.export.tflite.ops_data import float_only


def reduce_axes(cv: Converter, node: Node) -> list[int] | None:
    """Sorted non-negative reduced axes (attribute or constant input); None: a no-op
    (empty axes with ``noop_with_empty_axes``)."""
    rank = len(cv.shape_of(node.inputs[0]))
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1]:
        axes = cv.g.value(node.inputs[1])
        if axes is None:
            raise UnsupportedOpError(f"node {node.name!r}: {node.op_type} with computed axes "
                                     "is not exported (axes must be a constant)")
    if axes is None or np.size(axes) == 0:
        if node.attrs.get("noop_with_empty_axes", 0):
            return None
        return list(range(rank))
    return sorted(int(a) % rank for a in np.ravel(axes))


def _reduce(cv: Converter, node: Node, code: int, float_why: str | None = None) -> None:
    if float_why is not None or cv.act_dtype == np.int16:
        float_only(cv, node, float_why or "16-bit reductions run float")
    axes = reduce_axes(cv, node)
    if axes is None:
        from edgequant.export.tflite.ops_layout import Identity
        Identity(cv, node)
        return
    x = cv.act(node.inputs[0], "nchw")
    keep = bool(node.attrs.get("keepdims", 1))
    opt = schema.ReducerOptionsT()
    opt.keepDims = keep
    axes_t = cv.const(f"{node.name}_axes", np.array(axes, np.int32))
    out = cv.output(node.outputs[0], cv.shape_of(node.outputs[0]))
    if code != "L2":
        cv.op(code, [x, axes_t], [out], OPT.ReducerOptions, opt)
        return
    sq = cv.temp(f"{node.name}_sq", x.shape, np.float32)  # (…) x·x
    cv.op(OP.MUL, [x, x], [sq], OPT.MulOptions, schema.MulOptionsT())
    ssum = cv.temp(f"{node.name}_sum", out.shape, np.float32)  # reduced Σ x²
    cv.op(OP.SUM, [sq, axes_t], [ssum], OPT.ReducerOptions, opt)
    cv.op(OP.SQRT, [ssum], [out])


def ReduceSum(cv: Converter, node: Node) -> None:
    """ReduceSum → SUM."""
    _reduce(cv, node, OP.SUM)


def ReduceMax(cv: Converter, node: Node) -> None:
    """ReduceMax → REDUCE_MAX."""
    _reduce(cv, node, OP.REDUCE_MAX)


def ReduceMin(cv: Converter, node: Node) -> None:
    """ReduceMin → REDUCE_MIN."""
    _reduce(cv, node, OP.REDUCE_MIN)


def ReduceL2(cv: Converter, node: Node) -> None:
    """ReduceL2 → SQRT(SUM(x·x)) in float."""
    _reduce(cv, node, "L2", "the L2 norm runs float")
