"""Op builders for the data and mask plumbing of transformer graphs: Cast → CAST, Where →
SELECT_V2, Equal / Greater / Less / … → comparisons, And / Or / Not → LOGICAL_*, IsNaN →
NOT_EQUAL(x, x), Expand → BROADCAST_TO, Slice → STRIDED_SLICE.

These ops run on ids (int32 / int64), masks (bool) or float values. Integer data is *plain*
(:attr:`TVal.plain`: no qparams, never dequantized). A node whose tensors carry activation
qparams but whose TFLite kernel is float-only (comparisons of quantized values, IsNaN)
runs float between DEQUANTIZE and QUANTIZE (:func:`float_only`, with a note). Where and
Slice keep their integer kernels (values are moved, not computed): Where's two value inputs
are first requantized to the output's qparams (SELECT_V2 copies integers as they are).
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgequant.errors import UnsupportedOpError
from edgequant.export.tflite.builder import TENSOR_TYPES, Quant
from edgequant.export.tflite.convert import OP, OPT, Converter, TVal
from edgequant.export.tflite.ingest import Node

#: ONNX element type (``Cast`` attribute ``to``) → numpy dtype of the TFLite tensor; float16 /
#: double / bfloat16 compute in float32 inside the exported graph.
CAST_TYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64,
              9: np.bool_, 10: np.float32, 11: np.float32, 16: np.float32}


def float_only(cv: Converter, node: Node, what: str) -> None:
    """Run ``node`` in float although its tensors carry qparams (``what`` says why); an error
    in strict mode."""
    if not cv.q:
        return
    if cv.strict:
        raise UnsupportedOpError(f"node {node.name!r} ({node.op_type}): {what}; strict export "
                                 "allows integer ops only")
    cv.note(f"node {node.name!r} ({node.op_type}) runs float in TFLite: {what}")
    cv.float_nodes.append(node.name)
    cv.dom = "f"


def operand(cv: Converter, name: str, quant: Quant | None = None) -> TVal:
    """Input ``name`` of the current node: an activation in the node's domain, or a constant
    (bool / integer data as is; real values float32, or quantized with ``quant`` in an
    integer domain)."""
    value = cv.g.value(name)
    if value is None:
        return cv.act(name, "nchw")
    value = np.asarray(value)
    if value.dtype.kind == "f" or value.dtype not in TENSOR_TYPES:
        if cv.q:
            if quant is None:
                raise UnsupportedOpError(f"constant {name!r}: an integer node needs qparams for it")
            info = np.iinfo(cv.act_dtype)
            s, z = float(quant.scale[0]), int(quant.zero_point[0])
            q = np.clip(np.rint(value.astype(np.float64) / s) + z, info.min, info.max)
            return cv.const(name, q.astype(cv.act_dtype), quant)
        if cv.g.half and name in cv.g.half:
            return cv.float_const(name, value, True)
        return cv.const(name, value.astype(np.float32))
    tv = cv.const(name, value)
    tv.plain = True
    return tv


def _elementwise(cv: Converter, node: Node, code: int, names: list[str], opt_type=0,
                 opt=None) -> None:
    ins = [operand(cv, n) for n in names]
    out = cv.output(node.outputs[0], cv.shape_of(node.outputs[0]))
    cv.op(code, ins, [out], opt_type, opt)


def Cast(cv: Converter, node: Node) -> None:
    """Cast → CAST (float ↔ int ↔ bool); float → float is an identity. A quantized input is
    dequantized first (the Cast sees real values, as in onnxruntime)."""
    to = int(node.attrs["to"])
    if to not in CAST_TYPES:
        raise UnsupportedOpError(f"node {node.name!r}: Cast to ONNX type {to} is not exported "
                                 f"(allowed: {sorted(CAST_TYPES)})")
    float_only(cv, node, "CAST has no quantized kernel")
    x = operand(cv, node.inputs[0])
    want = np.dtype(CAST_TYPES[to])
    out = cv.output(node.outputs[0], cv.shape_of(node.outputs[0]))
    if out.dtype != want:  # shape inference did not type it: follow the attribute
        out = cv.temp(node.outputs[0], out.shape, want)
        out.plain = want != np.float32
        cv.vals[(node.outputs[0], "f", False)] = out
        cv.vals[(node.outputs[0], "src", False)] = out
    if x.dtype == out.dtype:
        cv.op(OP.RESHAPE, [x, cv.const(f"{node.name}_shape", np.array(out.shape, np.int32))],
              [out])
        return
    opt = schema.CastOptionsT()
    opt.inDataType, opt.outDataType = TENSOR_TYPES[x.dtype], TENSOR_TYPES[out.dtype]
    cv.op(OP.CAST, [x], [out], OPT.CastOptions, opt)


def Where(cv: Converter, node: Node) -> None:
    """Where(cond, x, y) → SELECT_V2 (broadcasting). Integer: x and y requantized to the
    output's qparams first (constants quantized straight into them)."""
    cond = operand(cv, node.inputs[0])
    quant = cv.act_quant(node.outputs[0]) if cv.q else None
    vals = []
    for k, n in enumerate(node.inputs[1:3]):
        tv = operand(cv, n, quant)
        if cv.q:
            tv = cv.requant(tv, quant, f"{node.name}_in{k + 1}")
        vals.append(tv)
    out = cv.output(node.outputs[0], cv.shape_of(node.outputs[0]))
    cv.op(OP.SELECT_V2, [cond, *vals], [out], OPT.SelectV2Options, schema.SelectV2OptionsT())


#: ONNX comparison / logic op → (TFLite op, options type, options class).
LOGIC = {
    "Equal": (OP.EQUAL, 0, None),
    "Greater": (OP.GREATER, 0, None),
    "GreaterOrEqual": (OP.GREATER_EQUAL, 0, None),
    "Less": (OP.LESS, 0, None),
    "LessOrEqual": (OP.LESS_EQUAL, 0, None),
    "And": (OP.LOGICAL_AND, OPT.LogicalAndOptions, schema.LogicalAndOptionsT),
    "Or": (OP.LOGICAL_OR, OPT.LogicalOrOptions, schema.LogicalOrOptionsT),
}


def _logic(cv: Converter, node: Node) -> None:
    """Comparison / logic op: float (or plain integer / bool) inputs, bool output."""
    float_only(cv, node, "comparisons run on real values")
    code, opt_type, opt_cls = LOGIC[node.op_type]
    _elementwise(cv, node, code, node.inputs[:2], opt_type, opt_cls() if opt_cls else None)


Equal = Greater = GreaterOrEqual = Less = LessOrEqual = And = Or = _logic


def Not(cv: Converter, node: Node) -> None:
    """Not → LOGICAL_NOT."""
    _elementwise(cv, node, OP.LOGICAL_NOT, node.inputs[:1], OPT.LogicalNotOptions,
                 schema.LogicalNotOptionsT())


def IsNaN(cv: Converter, node: Node) -> None:
    """IsNaN(x) → NOT_EQUAL(x, x) (NaN is the only value unequal to itself)."""
    float_only(cv, node, "NaN exists only in float")
    x = operand(cv, node.inputs[0])
    out = cv.output(node.outputs[0], cv.shape_of(node.outputs[0]))
    cv.op(OP.NOT_EQUAL, [x, x], [out])


def Expand(cv: Converter, node: Node) -> None:
    """Expand → BROADCAST_TO the (static) output shape; a no-op Expand is a RESHAPE."""
    x = cv.act(node.inputs[0], "nchw")
    shape = cv.shape_of(node.outputs[0])
    target = cv.const(f"{node.name}_shape", np.array(shape, np.int32))
    if tuple(x.shape) == tuple(shape):
        cv.passthrough(OP.RESHAPE, [x, target], node.outputs[0], shape, False, x.quant)
        return
    if cv.q:  # BROADCAST_TO copies integers: write the output's qparams first
        x = cv.requant(x, cv.act_quant(node.outputs[0]), node.name)
    out = cv.output(node.outputs[0], shape)
    # LiteRT registers BROADCAST_TO from version 2 (version 1 was the flex op)
    cv.b.add_op(OP.BROADCAST_TO, [x.idx, target.idx], [out.idx], version=2)


def Slice(cv: Converter, node: Node) -> None:
    """Slice with constant starts / ends / axes / steps → STRIDED_SLICE (bounds clamped to
    the static shape, so INT64_MAX ends and negative indices are resolved here)."""
    names = node.inputs[1:5]
    vals = [cv.g.value(n) if n else None for n in names] + [None] * (4 - len(names))
    if vals[0] is None or vals[1] is None or any(
            n and v is None for n, v in zip(names, vals, strict=False)):
        raise UnsupportedOpError(f"node {node.name!r}: Slice with computed starts / ends / axes "
                                 "/ steps is not exported (they must fold to constants)")
    shape = cv.shape_of(node.inputs[0])
    rank = len(shape)
    starts, ends = np.ravel(vals[0]).astype(np.int64), np.ravel(vals[1]).astype(np.int64)
    axes = np.arange(len(starts)) if vals[2] is None else np.ravel(vals[2]).astype(np.int64)
    steps = np.ones(len(starts), np.int64) if vals[3] is None else np.ravel(vals[3])
    begin, end, stride = [0] * rank, list(shape), [1] * rank
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        a = int(a) % rank
        dim = shape[a]
        b, e2, _ = slice(int(s), int(e), int(st)).indices(dim)
        if st < 0 and e2 < 0:
            raise UnsupportedOpError(f"node {node.name!r}: Slice with a negative step to the "
                                     "start of the axis is not exported")
        begin[a], end[a], stride[a] = b, e2, int(st)
    x = cv.act(node.inputs[0], "nchw")
    ins = [x, *(cv.const(f"{node.name}_{k}", np.array(v, np.int32))
                for k, v in (("begin", begin), ("end", end), ("strides", stride)))]
    cv.passthrough(OP.STRIDED_SLICE, ins, node.outputs[0], cv.shape_of(node.outputs[0]), False,
                   x.quant, OPT.StridedSliceOptions, schema.StridedSliceOptionsT())
