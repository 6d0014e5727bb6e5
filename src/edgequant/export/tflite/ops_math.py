"""Op builders for arithmetic ONNX ops TFLite has no one-to-one builtin for:

===================  ==========================================  ===============================
ONNX                 float                                       int8 / 16x8
===================  ==========================================  ===============================
Div                  DIV (x / c exactly as onnxruntime)          MUL by the constant reciprocal
                                                                 (LiteRT has no int8 DIV; the
                                                                 constant is quantized anyway)
HardSigmoid          MUL α, ADD β, RELU_0_TO_1                   same ops, integer kernels: the
                                                                 ADD writes the output's qparams
                                                                 and RELU_0_TO_1 clamps in them
                                                                 (one op, LiteRT's int8 kernel);
                                                                 16x8: MAXIMUM / MINIMUM (no
                                                                 int16 RELU_0_TO_1 in LiteRT)
BatchNormalization   MUL s, ADD t (s = γ/√(σ²+ε), t = β − μs)    same ops, integer kernels
Sum                  ADD (2 inputs) / ADD_N                      a chain of ADDs (LiteRT's ADD_N
                                                                 is float / int32 only)
LRN                  LOCAL_RESPONSE_NORMALIZATION                float only in TFLite: the op
                                                                 runs float between DEQUANTIZE
                                                                 and QUANTIZE
===================  ==========================================  ===============================

Integer intermediates (the MUL's output) get qparams covering every value their integer
inputs can produce, so they never saturate.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgequant.errors import UnsupportedOpError
from edgequant.export.tflite.builder import Quant
from edgequant.export.tflite.convert import OP, OPT, Converter, TVal
from edgequant.export.tflite.ingest import Node
from edgequant.export.tflite.ops_data import float_only
from edgequant.export.tflite.ops_elementwise import _binary
from edgequant.qparams import choose_qparams
from edgequant.spec import PerTensor, QType, QuantSpec


def _qtype(cv: Converter) -> QType:
    return QType(cv.act_dtype.itemsize * 8, True)


def _int_range(tv: TVal) -> tuple[float, float]:
    """Real range an integer tensor can hold."""
    info = np.iinfo(tv.dtype)
    s, z = float(tv.quant.scale[0]), int(tv.quant.zero_point[0])
    return (info.min - z) * s, (info.max - z) * s


def _quant_for(cv: Converter, lo: float, hi: float) -> Quant:
    """Activation qparams of the current domain covering [lo, hi] (16-bit: symmetric)."""
    qt = _qtype(cv)
    qp = choose_qparams(np.float32(lo), np.float32(hi), QuantSpec(qt, PerTensor(),
                                                                  symmetric=qt.bits == 16))
    return Quant.of(float(qp.scale), int(qp.zero_point))


def _const(cv: Converter, name: str, value: np.ndarray) -> TVal:
    """A float constant, or in an integer domain one quantized per tensor (symmetric)."""
    value = np.asarray(value, np.float32)
    if not cv.q:
        return cv.const(name, value)
    qt = _qtype(cv)
    peak = float(np.abs(value).max()) or 1.0
    scale = np.float32(peak / qt.qmax)
    q = np.clip(np.rint(value / scale), -qt.qmax, qt.qmax).astype(cv.act_dtype)
    return cv.const(name, q, Quant.of(scale, 0))


def _layout(cv: Converter, name: str) -> bool:
    src = cv.vals.get((name, "src", False))
    return src is not None and src.nhwc and len(cv.shape_of(name)) == 4


def _channel_const(value: np.ndarray, rank: int, nhwc: bool) -> np.ndarray:
    """A per-channel (axis 1) vector shaped to broadcast against the stored tensor."""
    shape = [1] * rank
    shape[-1 if nhwc else 1] = value.size
    return value.reshape(shape)


def _scale_shift(cv: Converter, x: TVal, scale: np.ndarray, shift: np.ndarray, out: TVal,
                 tag: str) -> TVal:
    """``out = x · scale + shift`` as MUL then ADD (integer: the MUL's output covers every
    value it can take)."""
    mul_quant = None
    if cv.q:
        lo, hi = _int_range(x)
        ends = np.outer([lo, hi], np.ravel(scale))
        mul_quant = _quant_for(cv, min(float(ends.min()), 0.0), max(float(ends.max()), 0.0))
    t = cv.temp(f"{tag}_mul", x.shape, x.dtype, mul_quant, x.nhwc)
    cv.op(OP.MUL, [x, _const(cv, f"{tag}_scale", scale)], [t], OPT.MulOptions,
          schema.MulOptionsT())
    cv.op(OP.ADD, [t, _const(cv, f"{tag}_shift", shift)], [out], OPT.AddOptions,
          schema.AddOptionsT())
    return out


def Div(cv: Converter, node: Node) -> None:
    """Div → DIV (float); int8 / 16x8 Div by a constant → MUL by its reciprocal."""
    a, b = node.inputs[:2]
    if not cv.q:
        _binary(cv, node, OP.DIV, OPT.DivOptions, schema.DivOptionsT())
        return
    c = cv.g.value(b)
    if c is None or cv.g.value(a) is not None:
        raise UnsupportedOpError(f"node {node.name!r}: integer Div needs a constant divisor "
                                 "(LiteRT has no int8 / int16 DIV kernel)")
    if np.any(c == 0):
        raise UnsupportedOpError(f"node {node.name!r}: Div by a constant holding 0")
    rank = len(cv.shape_of(node.outputs[0]))
    nhwc = _layout(cv, a) and rank == 4
    recip = (1.0 / np.asarray(c, np.float64)).astype(np.float32)
    recip = recip.reshape((1,) * (rank - recip.ndim) + recip.shape)
    if nhwc:
        recip = recip.transpose(0, 2, 3, 1)
    x = cv.act(a, "nhwc" if nhwc else "nchw")
    out = cv.output(node.outputs[0], cv.tflite_shape(node.outputs[0], nhwc), nhwc)
    cv.op(OP.MUL, [x, _const(cv, f"{node.name}_reciprocal", recip)], [out], OPT.MulOptions,
          schema.MulOptionsT())


def HardSigmoid(cv: Converter, node: Node) -> None:
    """HardSigmoid(α, β) → MUL α, ADD β, RELU_0_TO_1 (module docstring)."""
    alpha = np.float32(node.attrs.get("alpha", 0.2))
    beta = np.float32(node.attrs.get("beta", 0.5))
    x = cv.act(node.inputs[0])
    y = node.outputs[0]
    shape = cv.tflite_shape(y, x.nhwc)
    quant = cv.act_quant(y) if cv.q else None  # the ADD writes the output's qparams
    pre = cv.temp(f"{node.name}_affine", shape, x.dtype, quant, x.nhwc)
    _scale_shift(cv, x, np.array([alpha]), np.array([beta]), pre, node.name)
    out = cv.output(y, shape, x.nhwc)
    if cv.act_dtype != np.int16:
        cv.op(OP.RELU_0_TO_1, [pre], [out])
        return
    # LiteRT's RELU_0_TO_1 has no int16 kernel: MAXIMUM 0, MINIMUM 1 (in the output's qparams)
    s, z = float(quant.scale[0]), int(quant.zero_point[0])
    bound = {v: cv.const(f"{node.name}_{v}", np.array([np.clip(np.rint(v / s) + z, -32768, 32767)],
                                                      np.int16), quant) for v in (0, 1)}
    floor = cv.temp(f"{node.name}_max0", shape, x.dtype, quant, x.nhwc)
    cv.op(OP.MAXIMUM, [pre, bound[0]], [floor])
    cv.op(OP.MINIMUM, [floor, bound[1]], [out])


def BatchNormalization(cv: Converter, node: Node) -> None:
    """Inference BatchNormalization (not folded into a Conv) → MUL + ADD per channel."""
    if len(node.outputs) > 1 and any(node.outputs[1:]):
        raise UnsupportedOpError(f"node {node.name!r}: BatchNormalization with training "
                                 "outputs (running mean / var) is not exported")
    vals = [cv.g.value(n) for n in node.inputs[1:5]]
    if any(v is None for v in vals):
        raise UnsupportedOpError(f"node {node.name!r}: BatchNormalization needs constant "
                                 "scale, bias, mean and var")
    gamma, beta, mean, var = (np.asarray(v, np.float64) for v in vals)
    eps = float(node.attrs.get("epsilon", 1e-5))
    s = gamma / np.sqrt(var + eps)  # (C,)
    t = beta - mean * s  # (C,)
    rank = len(cv.shape_of(node.inputs[0]))
    nhwc = _layout(cv, node.inputs[0])
    x = cv.act(node.inputs[0], "nhwc" if nhwc else "nchw")
    out = cv.output(node.outputs[0], cv.tflite_shape(node.outputs[0], nhwc), nhwc)
    _scale_shift(cv, x, _channel_const(s.astype(np.float32), rank, nhwc),
                 _channel_const(t.astype(np.float32), rank, nhwc), out, node.name)


def Sum(cv: Converter, node: Node) -> None:
    """Sum → ADD (2 inputs) / ADD_N (float); integer: a chain of ADDs, the partial sums with
    qparams covering the sum of their inputs' ranges."""
    names = [n for n in node.inputs if n]
    y = node.outputs[0]
    if any(cv.g.value(n) is not None for n in names):
        raise UnsupportedOpError(f"node {node.name!r}: Sum of a constant is not exported "
                                 "(fold it into an Add first)")
    if len(names) == 1:
        from edgequant.export.tflite.ops_layout import Identity
        Identity(cv, node)
        return
    shape = cv.shape_of(y)
    if any(cv.shape_of(n) != shape for n in names):
        raise UnsupportedOpError(f"node {node.name!r}: Sum with broadcasting is not exported "
                                 f"(input shapes {[cv.shape_of(n) for n in names]})")
    nhwc = len(shape) == 4 and any(_layout(cv, n) for n in names)
    xs = [cv.act(n, "nhwc" if nhwc else "nchw") for n in names]
    out_shape = cv.tflite_shape(y, nhwc)
    if not cv.q and len(xs) > 2:
        cv.op(OP.ADD_N, xs, [cv.output(y, out_shape, nhwc)], OPT.AddNOptions,
              schema.AddNOptionsT())
        return
    acc = xs[0]
    lo, hi = _int_range(acc) if cv.q else (0.0, 0.0)
    for k, x in enumerate(xs[1:], start=1):
        if k == len(xs) - 1:
            out = cv.output(y, out_shape, nhwc)
        else:
            quant = None
            if cv.q:
                xl, xh = _int_range(x)
                lo, hi = lo + xl, hi + xh
                quant = _quant_for(cv, lo, hi)
            out = cv.temp(f"{node.name}_partial{k}", out_shape, acc.dtype, quant, nhwc)
        cv.op(OP.ADD, [acc, x], [out], OPT.AddOptions, schema.AddOptionsT())
        acc = out


def LRN(cv: Converter, node: Node) -> None:
    """LRN → LOCAL_RESPONSE_NORMALIZATION (float: TFLite has no integer kernel, so an integer
    graph dequantizes around it). ONNX sums ``size`` channels centred on c with ``alpha /
    size``; TFLite sums ``2·radius + 1`` with ``alpha``: odd sizes only."""
    size = int(node.attrs["size"])
    if size % 2 == 0:
        raise UnsupportedOpError(f"node {node.name!r}: LRN attribute size={size}: TFLite's "
                                 "window is symmetric (2·radius + 1), only odd sizes export")
    if len(cv.shape_of(node.inputs[0])) != 4:
        raise UnsupportedOpError(f"node {node.name!r}: LRN exports for 4-D NCHW inputs only")
    float_only(cv, node, "no integer TFLite kernel (DEQUANTIZE / QUANTIZE around it)")
    x = cv.act(node.inputs[0], "nhwc")
    opt = schema.LocalResponseNormalizationOptionsT()
    opt.radius = (size - 1) // 2
    opt.bias = float(node.attrs.get("bias", 1.0))
    opt.alpha = float(node.attrs.get("alpha", 1e-4)) / size
    opt.beta = float(node.attrs.get("beta", 0.75))
    out = cv.output(node.outputs[0], cv.tflite_shape(node.outputs[0], True), True)
    cv.op(OP.LOCAL_RESPONSE_NORMALIZATION, [x], [out], OPT.LocalResponseNormalizationOptions,
          opt)
