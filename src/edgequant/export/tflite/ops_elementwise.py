"""Op builders for elementwise ops: Add / Sub / Mul (with broadcasting constants), Relu, Clip,
Sigmoid → LOGISTIC, Tanh → TANH, HardSwish → HARD_SWISH, Softmax → SOFTMAX.

TFLite's integer LOGISTIC / TANH / SOFTMAX kernels require fixed output qparams (e.g. int8
softmax: scale 1/256, zero point −128); when the ONNX model chose others, the op writes the
fixed qparams and a QUANTIZE brings the result to the ONNX ones.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgequant.errors import UnsupportedOpError
from edgequant.export.tflite.builder import Quant
from edgequant.export.tflite.convert import ACT, LAST, OP, OPT, Converter, TVal
from edgequant.export.tflite.ingest import Node, QConst, clip_activation
from edgequant.export.tflite.layout import to_last
from edgequant.qparams import choose_qparams
from edgequant.spec import PerTensor, QType, QuantSpec

#: Output qparams TFLite's integer kernels require: op → {dtype: (scale, zero_point)}.
FIXED_OUTPUT_QPARAMS = {
    OP.LOGISTIC: {np.dtype(np.int8): (1 / 256, -128), np.dtype(np.int16): (1 / 32768, 0)},
    OP.SOFTMAX: {np.dtype(np.int8): (1 / 256, -128), np.dtype(np.int16): (1 / 32768, 0)},
    OP.TANH: {np.dtype(np.int8): (1 / 128, 0), np.dtype(np.int16): (1 / 32768, 0)},
}


def _const_operand(cv: Converter, name: str, rank: int, nhwc: bool) -> TVal:
    """A constant operand broadcast-aligned to ``rank`` (and NHWC when the other side is)."""
    raw = cv.g.qconsts.get(name)
    value = cv.g.value(name)
    if value.ndim < rank:
        value = value.reshape((1,) * (rank - value.ndim) + value.shape)
    if nhwc:
        value = value.transpose(to_last(rank))
    if not cv.q:
        return cv.float_const(name, value, name in cv.g.half)
    if isinstance(raw, QConst) and raw.axis is None and raw.values.dtype in (np.int8, np.uint8) \
            and cv.act_dtype == np.int8:
        vals = raw.values.reshape(value.shape) if raw.values.size == value.size else None
        if vals is not None:
            vals = vals.transpose(to_last(rank)) if nhwc and raw.values.ndim == rank else vals
            shift = 128 if raw.values.dtype == np.uint8 else 0
            vals = (vals.astype(np.int16) - shift).astype(np.int8).reshape(value.shape)
            return cv.const(name, vals, Quant.of(raw.scale, int(raw.zero_point) - shift))
    bits = cv.act_dtype.itemsize * 8
    spec = QuantSpec(QType(bits, True), PerTensor(), symmetric=bits == 16)
    qp = choose_qparams(value.min(), value.max(), spec)
    q = np.clip(np.rint(value / qp.scale) + qp.zero_point, QType(bits, True).qmin,
                QType(bits, True).qmax).astype(cv.act_dtype)
    return cv.const(name, q, Quant.of(qp.scale, int(qp.zero_point)))


def _binary(cv: Converter, node: Node, code: int, opt_type: int, opt) -> None:
    a, b = node.inputs[:2]
    out_rank = len(cv.shape_of(node.outputs[0]))
    consts = [cv.g.value(n) is not None for n in (a, b)]
    if all(consts):
        raise UnsupportedOpError(f"node {node.name!r}: both inputs constant (fold it first)")
    acts = [n for n, c in zip((a, b), consts, strict=True) if not c]
    # channels-last (NHWC, or (N, L, C) after a Conv1d) only when every activation operand
    # has the output's rank (numpy broadcasting aligns trailing axes, so a lower-rank operand
    # would meet W instead of C in channels-last storage)
    nhwc = out_rank in (3, 4) and all(len(cv.shape_of(n)) == out_rank for n in acts) and any(
        cv.vals.get((n, "src", False)) is not None and cv.vals[(n, "src", False)].nhwc
        for n in acts)
    ins = []
    for n, c in zip((a, b), consts, strict=True):
        if c:
            ins.append(_const_operand(cv, n, out_rank, nhwc))
        else:
            ins.append(cv.act(n, LAST[out_rank] if nhwc else "nchw"))
    out = cv.output(node.outputs[0], cv.tflite_shape(node.outputs[0], nhwc), nhwc)
    opt.fusedActivationFunction = ACT[node.attrs.get("_act")]
    cv.op(code, ins, [out], opt_type, opt)


def Add(cv: Converter, node: Node) -> None:
    """Add → ADD (fused Relu / Relu6 allowed)."""
    _binary(cv, node, OP.ADD, OPT.AddOptions, schema.AddOptionsT())


def Sub(cv: Converter, node: Node) -> None:
    """Sub → SUB."""
    _binary(cv, node, OP.SUB, OPT.SubOptions, schema.SubOptionsT())


def Mul(cv: Converter, node: Node) -> None:
    """Mul → MUL."""
    _binary(cv, node, OP.MUL, OPT.MulOptions, schema.MulOptionsT())


def _unary(cv: Converter, node: Node, code: int, opt_type: int = 0, opt=None,
           layout: str = "any") -> None:
    """An activation-wise op, in the input's layout unless ``layout`` says otherwise."""
    x = cv.act(node.inputs[0], layout)
    shape = cv.tflite_shape(node.outputs[0], x.nhwc)
    fixed = FIXED_OUTPUT_QPARAMS.get(code, {}).get(cv.act_dtype) if cv.q else None
    want = cv.act_quant(node.outputs[0]) if cv.q else None
    if fixed is not None and not Quant.of(*fixed).same_as(want):
        tmp = cv.temp(f"{node.outputs[0]}_fixed", shape, cv.act_dtype, Quant.of(*fixed), x.nhwc)
        cv.op(code, [x], [tmp], opt_type, opt)
        out = cv.output(node.outputs[0], shape, x.nhwc)
        cv.op(OP.QUANTIZE, [tmp], [out])
        return
    out = cv.output(node.outputs[0], shape, x.nhwc)
    cv.op(code, [x], [out], opt_type, opt)


def Relu(cv: Converter, node: Node) -> None:
    """Standalone Relu → RELU."""
    _unary(cv, node, OP.RELU)


def Clip(cv: Converter, node: Node) -> None:
    """Clip(0, 6) → RELU6, Clip(0, ∞) → RELU, Clip(−1, 1) → RELU_N1_TO_1."""
    act = clip_activation(node, cv.g.consts)
    if act is None:
        raise UnsupportedOpError(f"node {node.name!r}: Clip bounds must be constant (0, 6), "
                                 "(0, inf) or (-1, 1)")
    _unary(cv, node, {"RELU": OP.RELU, "RELU6": OP.RELU6, "RELU_N1_TO_1": OP.RELU_N1_TO_1}[act])


def Sigmoid(cv: Converter, node: Node) -> None:
    """Sigmoid → LOGISTIC."""
    _unary(cv, node, OP.LOGISTIC)


def Tanh(cv: Converter, node: Node) -> None:
    """Tanh → TANH."""
    _unary(cv, node, OP.TANH)


def HardSwish(cv: Converter, node: Node) -> None:
    """HardSwish → HARD_SWISH."""
    _unary(cv, node, OP.HARD_SWISH, OPT.HardSwishOptions, schema.HardSwishOptionsT())


def Softmax(cv: Converter, node: Node) -> None:
    """Softmax over the last axis (axis 1 of an NHWC-stored NCHW tensor is its last axis)."""
    rank = len(cv.shape_of(node.inputs[0]))
    axis = int(node.attrs.get("axis", -1)) % rank
    src = cv.vals.get((node.inputs[0], "src", False))
    layout = "nchw"
    if rank == 4 and axis == 1:
        layout = "nhwc"  # the channel axis is last in NHWC storage
    elif axis != rank - 1:
        raise UnsupportedOpError(f"node {node.name!r}: Softmax axis {axis} of rank {rank}: "
                                 "TFLite SOFTMAX works on the last axis only")
    del src
    opt = schema.SoftmaxOptionsT()
    opt.beta = 1.0
    _unary(cv, node, OP.SOFTMAX, OPT.SoftmaxOptions, opt, layout)
