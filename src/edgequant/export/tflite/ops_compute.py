"""Op builders for the weighted ops: Conv (2-D, and 1-D between RESHAPEs) → CONV_2D /
DEPTHWISE_CONV_2D, Gemm / MatMul → FULLY_CONNECTED, MatMul of two activations →
BATCH_MATMUL.

Weights follow the node's tensors: integer node → int8 weights with int32 (int8 kernels) or
int64 (16x8) bias; float node with ≤ 8-bit integer weights → hybrid (LiteRT quantizes the
input on the fly); float FC with int4 blocked weights → INT4 blockwise; float node → float32
weights (float16 + DEQUANTIZE when the ONNX model stores them as float16, or ``mode='fp16'``).
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgequant.errors import UnsupportedOpError
from edgequant.export.tflite.builder import Quant
from edgequant.export.tflite.convert import ACT, OP, OPT, Converter, TVal
from edgequant.export.tflite.ingest import Node, QConst
from edgequant.export.tflite.layout import (
    conv_weight_ohwi,
    depthwise_weight_1hwc,
    onnx_pads,
    padding_mode,
)
from edgequant.export.tflite.ops_batch_matmul import batch_matmul
from edgequant.export.tflite.weights import (
    blockwise_int4_fits,
    float_weight,
    narrow_int8,
    quantized_bias,
)

PADDING = {"SAME": schema.Padding.SAME, "VALID": schema.Padding.VALID}


def _weight(cv: Converter, node: Node, name: str):
    w = cv.g.qconsts.get(name)
    if w is None:
        w = cv.g.consts.get(name)
    if w is None:
        raise UnsupportedOpError(f"node {node.name!r} ({node.op_type}): weight {name!r} must be "
                                 "a constant initializer")
    return w


def _optional(node: Node, k: int) -> str | None:
    return node.inputs[k] if len(node.inputs) > k and node.inputs[k] else None


def hybrid_weight(cv: Converter, w) -> bool:
    """A float node whose weight is stored as ≤ 8-bit integers (per tensor / per channel) runs
    LiteRT's hybrid (dynamic-range) kernels; so does every weight in ``mode='dynamic'``."""
    if cv.q:
        return False
    if cv.mode == "dynamic":
        return True
    return isinstance(w, QConst) and w.block_size is None and w.qparams.qtype.bits <= 8


def weight_and_bias(cv: Converter, node: Node, w, b, axis: int, x: TVal, layout) -> tuple:
    """TFLite weight and bias TVals; ``layout`` maps an ONNX-layout array to TFLite's.

    Integer node: int8 narrow weights, int32 bias (int64 for 16x8). Float node with integer
    weights: hybrid (int8 weights, float bias). Float node: float weights (float16 + DEQUANTIZE
    when the ONNX model stores them as float16).
    """
    n_out = float_weight(w).shape[axis]
    base = node.name
    wname = node.inputs[1]
    bname = _optional(node, 2)
    if isinstance(w, QConst) and w.block_size is not None:
        cv.note(f"weight {wname!r}: blocked {w.qparams.qtype.name} weights have no TFLite "
                f"{node.op_type} kernel here; " + (
                    "requantized to int8 per channel" if cv.q or cv.mode == "dynamic"
                    else "stored dequantized (float32)"))
        if not (cv.q or cv.mode == "dynamic"):
            w = w.dequantized()
    if cv.q or hybrid_weight(cv, w):
        q, scale = narrow_int8(w, axis, wname)
        wq = layout(q)
        qaxis = 3 if node.attrs.get("_depthwise") else 0
        wt = cv.const(f"{base}_weight", wq, Quant.of(scale, 0, qaxis))
        if not cv.q:  # dynamic range: float bias, hybrid kernel quantizes the input on the fly
            cv.kind = "hybrid"
            bf = float_weight(b) if b is not None else np.zeros(n_out, np.float32)
            return wt, cv.const(f"{base}_bias", np.asarray(bf, np.float32).reshape(n_out))
        bias_dtype = np.int64 if cv.act_dtype == np.int16 else np.int32
        bq, bscale = quantized_bias(b, n_out, float(x.quant.scale[0]), scale, bias_dtype)
        return wt, cv.const(f"{base}_bias", bq, Quant.of(bscale, 0, 0))
    wf = layout(float_weight(w))
    bf = float_weight(b) if b is not None else np.zeros(n_out, np.float32)
    half = cv.g.half
    return (cv.float_const(f"{base}_weight", wf, wname in half),
            cv.float_const(f"{base}_bias", bf.reshape(n_out), bname in half))


def pad_nhwc(cv: Converter, x: TVal, pads: tuple[int, ...], name: str) -> TVal:
    """Explicit PAD (t, l, b, r) of an NHWC tensor; integer PAD fills with the zero point."""
    t, left, bot, r = pads
    paddings = np.array([[0, 0], [t, bot], [left, r], [0, 0]], np.int32)  # (4, 2)
    shape = (x.shape[0], x.shape[1] + t + bot, x.shape[2] + left + r, x.shape[3])
    out = cv.temp(f"{name}_padded", shape, x.dtype, x.quant, True)
    cv.op(OP.PAD, [x, cv.const(f"{name}_paddings", paddings)], [out], OPT.PadOptions,
          schema.PadOptionsT())
    return out


def Conv(cv: Converter, node: Node) -> None:
    """ONNX Conv → CONV_2D, or DEPTHWISE_CONV_2D when group == input channels.

    1-D Conv (weight rank 3) runs as the TFLite converter writes it: the (N, L, C)
    channels-last activation is RESHAPEd to (N, 1, L, C), convolved with a 1×k kernel and
    RESHAPEd back (the output stays channels-last for the next layer).
    """
    w = _weight(cv, node, node.inputs[1])
    b = _weight(cv, node, _optional(node, 2)) if _optional(node, 2) else None
    wshape = float_weight(w).shape
    xshape = cv.shape_of(node.inputs[0])
    if len(wshape) not in (3, 4):
        raise UnsupportedOpError(f"node {node.name!r}: only 1-D and 2-D Conv are exported "
                                 f"(weight rank {len(wshape)})")
    group = int(node.attrs.get("group", 1))
    cin = xshape[1]
    depthwise = group > 1 and group == cin and wshape[1] == 1
    if group > 1 and not depthwise:
        raise UnsupportedOpError(f"node {node.name!r}: grouped Conv (group={group}, C_in={cin}) "
                                 "has no TFLite op; only group 1 and depthwise are exported")
    one_d = len(wshape) == 3
    attrs = conv1d_as_2d(node.attrs) if one_d else node.attrs
    kernel = (1, *wshape[2:]) if one_d else wshape[2:]
    hw = (1, *xshape[2:]) if one_d else xshape[2:]
    strides = tuple(attrs.get("strides", [1, 1]))
    dil = tuple(attrs.get("dilations", [1, 1]))
    pads = onnx_pads(attrs, hw, kernel, strides, dil)
    mode = padding_mode(hw, kernel, strides, dil, pads)
    x = nhwc_input(cv, node, one_d)
    if mode is None:
        x = pad_nhwc(cv, x, pads, node.name)
        mode = "VALID"
    node.attrs["_depthwise"] = depthwise
    base = depthwise_weight_1hwc if depthwise else conv_weight_ohwi
    layout = (lambda a: base(a[:, :, None, :])) if one_d else base  # (O, I, k) → (O, I, 1, k)
    wt, bt = weight_and_bias(cv, node, w, b, 0, x, layout)
    y_name = node.outputs[0]
    if one_d:
        n, c_out, length = cv.shape_of(y_name)
        quant = cv.act_quant(y_name) if cv.q else None
        out = cv.temp(f"{y_name}_2d", (n, 1, length, c_out), cv.act_dtype if cv.q else
                      np.float32, quant, True)  # (N, 1, L_out, C_out)
    else:
        out = cv.output(y_name, cv.tflite_shape(y_name, True), nhwc=True)
    act = ACT[node.attrs.get("_act")]
    if depthwise:
        opt = schema.DepthwiseConv2DOptionsT()
        opt.depthMultiplier = wshape[0] // cin
        code, opt_type = OP.DEPTHWISE_CONV_2D, OPT.DepthwiseConv2DOptions
    else:
        opt = schema.Conv2DOptionsT()
        code, opt_type = OP.CONV_2D, OPT.Conv2DOptions
    opt.padding = PADDING[mode]
    opt.strideH, opt.strideW = strides
    opt.dilationHFactor, opt.dilationWFactor = dil
    opt.fusedActivationFunction = act
    cv.op(code, [x, wt, bt], [out], opt_type, opt)
    if one_d:  # (N, 1, L_out, C_out) → (N, L_out, C_out), channels-last
        y = cv.output(y_name, cv.tflite_shape(y_name, True), nhwc=True)
        cv.op(OP.RESHAPE, [out, cv.const(f"{y_name}_shape", np.array(y.shape, np.int32))], [y],
              OPT.ReshapeOptions, _reshape_options(y.shape))


def conv1d_as_2d(attrs: dict) -> dict:
    """A 1-D Conv's attributes as those of the 2-D Conv with a 1×k kernel (height 1)."""
    out = dict(attrs)
    for key in ("strides", "dilations"):
        if key in attrs:
            out[key] = [1, *attrs[key]]
    if "pads" in attrs:
        begin, end = attrs["pads"]
        out["pads"] = [0, begin, 0, end]
    return out


def _reshape_options(shape) -> schema.ReshapeOptionsT:
    opt = schema.ReshapeOptionsT()
    opt.newShape = [int(d) for d in shape]
    return opt


def nhwc_input(cv: Converter, node: Node, one_d: bool) -> TVal:
    """Input 0 of a Conv / pooling node channels-last (N, H, W, C); a 1-D op's (N, L, C) input
    is reshaped to (N, 1, L, C), as the TFLite converter runs 1-D ops as 2-D ones."""
    if not one_d:
        return cv.act(node.inputs[0], "nhwc")
    x3 = cv.act(node.inputs[0], "nlc")
    x = reshape_to(cv, x3, (x3.shape[0], 1, *x3.shape[1:]), f"{node.name}_2d")
    x.nhwc = True
    return x


def reshape_to(cv: Converter, x: TVal, shape: tuple[int, ...], name: str) -> TVal:
    """A RESHAPE of ``x`` to ``shape`` (same dtype and qparams: integers are only moved)."""
    out = cv.temp(name, shape, x.dtype, x.quant)
    cv.op(OP.RESHAPE, [x, cv.const(f"{name}_shape", np.array(shape, np.int32))], [out],
          OPT.ReshapeOptions, _reshape_options(shape))
    return out


def _fully_connected(cv: Converter, node: Node, w_oi, b, axis: int) -> None:
    """FULLY_CONNECTED with ONNX weight ``w_oi`` (output axis ``axis``), input node.inputs[0]."""
    x = cv.act(node.inputs[0], "nchw", allow_perm=True)  # FC contracts the ONNX last axis
    perm = x.flat_perm

    def layout(a: np.ndarray) -> np.ndarray:
        a = a if axis == 0 else a.T  # (O, I)
        return np.ascontiguousarray(a[:, perm] if perm is not None else a)

    if not cv.q and blockwise_int4_fits(w_oi, 1 - axis) and perm is None:
        wt, bt = _int4_weight_and_bias(cv, node, w_oi, b, axis, layout)
    else:
        wt, bt = weight_and_bias(cv, node, w_oi, b, axis, x, layout)
    out_shape = cv.shape_of(node.outputs[0])
    out = cv.output(node.outputs[0], out_shape)
    opt = schema.FullyConnectedOptionsT()
    opt.fusedActivationFunction = ACT[node.attrs.get("_act")]
    opt.keepNumDims = len(out_shape) > 2
    opt.asymmetricQuantizeInputs = not cv.q and wt.is_int
    cv.op(OP.FULLY_CONNECTED, [x, wt, bt], [out], OPT.FullyConnectedOptions, opt)


def _int4_weight_and_bias(cv: Converter, node: Node, w: QConst, b, axis: int, layout) -> tuple:
    """INT4 blockwise weight (float16 block scales) + float bias: LiteRT's hybrid FC."""
    cv.kind = "int4"
    scale = np.asarray(w.scale, np.float32)  # blocked along the input axis, ONNX layout
    scale_oi = scale if axis == 0 else scale.T  # (O, I / block)
    if not np.array_equal(scale_oi.astype(np.float16).astype(np.float32), scale_oi):
        cv.note(f"weight {node.inputs[1]!r}: int4 block scales rounded to float16 (TFLite's "
                "blockwise format stores float16 scales)")
    values = layout(w.values)  # (O, I) int8 holding int4 values
    idx = cv.b.add_blockwise_int4(f"{node.name}_weight", values, scale_oi.astype(np.float16),
                                  int(w.block_size))
    wt = TVal(idx, tuple(values.shape), np.dtype(np.int8))
    n_out = values.shape[0]
    bf = float_weight(b) if b is not None else np.zeros(n_out, np.float32)
    return wt, cv.float_const(f"{node.name}_bias", np.asarray(bf).reshape(n_out))


def Gemm(cv: Converter, node: Node) -> None:
    """ONNX Gemm (A · Bᵀ + C with constant B) → FULLY_CONNECTED."""
    a = node.attrs
    if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
        raise UnsupportedOpError(f"node {node.name!r}: Gemm with transA / alpha / beta ≠ defaults "
                                 "is not exported")
    w = _weight(cv, node, node.inputs[1])
    b = _weight(cv, node, _optional(node, 2)) if _optional(node, 2) else None
    if b is not None and float_weight(b).size == 1:  # scalar C broadcast over outputs
        n_out = float_weight(w).shape[0 if a.get("transB", 0) else 1]
        b = np.full(n_out, float(float_weight(b).reshape(())), np.float32)
    _fully_connected(cv, node, w, b, 0 if a.get("transB", 0) else 1)


def MatMul(cv: Converter, node: Node) -> None:
    """MatMul with a constant 2-D B → FULLY_CONNECTED; two activations → BATCH_MATMUL."""
    if cv.g.value(node.inputs[1]) is not None and cv.g.value(node.inputs[1]).ndim == 2:
        bias = _optional(node, 2)  # fused from a following Add (patterns_bias)
        _fully_connected(cv, node, _weight(cv, node, node.inputs[1]),
                         _weight(cv, node, bias) if bias else None, 1)
        return
    batch_matmul(cv, node)
