"""One lowering function per float op: DQ → op [→ Relu|Clip] → Q becomes integer operators.

Each function takes the anchor node and a :class:`QdqIndex` and returns either an
``Emit`` (:mod:`lower_emit`: the integer nodes that replace anchor + fused activation + Q)
or a string saying why the op stays in float. Integer outputs keep the Q node's output
name, and integer inputs are the DQ nodes' inputs, so lowered neighbours connect and the
DQ nodes in between become dead (removed by the caller).

onnxruntime kernels used (checked against ORT 1.31 on CPU, uint8 and int8 activations):
QLinearConv, QLinearMatMul (per-column B scales), com.microsoft QGemm (int32 bias,
per-column B), QLinearAdd, QLinearMul, QLinearGlobalAveragePool, QLinearAveragePool,
QLinearSigmoid, QLinearLeakyRelu, QLinearConcat, QLinearSoftmax; integer Clip, MaxPool,
Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Concat, nearest Resize, Pad.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper

from edgequant.export.qop.emit import Emit, conform, finish, int32_bias, widen_int4
from edgequant.export.qop.index import KERNEL_ACTIVATION_DTYPES, OutputQ, QdqIndex, QTensor
from edgequant.graph.contract import PASS_THROUGH_OPS

MS = "com.microsoft"

#: Ops that only move or select values: exact on the integer tensor when the input and
#: output carry identical qparams.
PASS_THROUGH = tuple(op for op in PASS_THROUGH_OPS if op != "Dropout")  # Dropout: its mask output

#: Integer types the layout-only ops accept in ONNX and onnxruntime; MaxPool and Clip take
#: 8-bit types only (KERNEL_ACTIVATION_DTYPES).
LAYOUT_DTYPES = (*KERNEL_ACTIVATION_DTYPES, np.dtype(np.int16), np.dtype(np.uint16))
#: Pass-through ops whose onnxruntime CPU kernels take 8-bit integers only.
INTEGER_8BIT_ONLY = ("MaxPool", "Resize", "Pad")

Lowering = Callable[[onnx.NodeProto, QdqIndex], "Emit | str"]


def _attrs(node: onnx.NodeProto, drop: tuple[str, ...] = ()) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name not in drop}


def _activation_input(node: onnx.NodeProto, idx: QdqIndex, i: int) -> QTensor | str:
    """Per-tensor uint8/int8 DQ input ``i`` of ``node`` (an activation), or why not."""
    qt = idx.dq_input(node.input[i])
    if isinstance(qt, str):
        return qt
    if not qt.per_tensor:
        return f"input '{node.input[i]}' is quantized per channel; kernels need per tensor"
    if qt.dtype not in KERNEL_ACTIVATION_DTYPES:
        return f"input '{node.input[i]}' is {qt.dtype}; onnxruntime QLinear kernels take uint8/int8"
    return qt


def _output(node: onnx.NodeProto, idx: QdqIndex) -> OutputQ | str:
    oq = idx.output_q(node)
    if isinstance(oq, str):
        return oq
    if not oq.out.per_tensor:
        return f"output '{oq.out.name}' is quantized per channel; kernels need per tensor"
    if oq.out.dtype not in KERNEL_ACTIVATION_DTYPES:
        return f"output '{oq.out.name}' is {oq.out.dtype}; QLinear kernels take uint8/int8"
    return oq


def _new_name(idx: QdqIndex, node: onnx.NodeProto, suffix: str) -> str:
    return idx.unique(f"{node.name or node.op_type}_{suffix}")


def _weight(node: onnx.NodeProto, idx: QdqIndex, i: int, channel_axis: int, x: QTensor,
            n_dims: int) -> QTensor | str:
    w = idx.dq_input(node.input[i])
    if isinstance(w, str):
        return w
    if w.dtype.name in ("int4", "uint4") and w.name in idx.consts:
        w = widen_int4(idx, w)
    if w.dtype not in KERNEL_ACTIVATION_DTYPES:
        return f"weight '{node.input[i]}' is {w.dtype}; kernels take int8/uint8 weights"
    if x.dtype == np.int8 and w.dtype == np.uint8:
        return "int8 activations with uint8 weights have no onnxruntime kernel"
    if w.axis is not None and w.axis % n_dims != channel_axis:
        return f"weight '{node.input[i]}' is per-channel on axis {w.axis}; need {channel_axis}"
    return w


def lower_conv(node: onnx.NodeProto, idx: QdqIndex) -> Emit | str:
    """Conv → QLinearConv (per-channel int8 weights, int32 bias)."""
    x = _activation_input(node, idx, 0)
    if isinstance(x, str):
        return x
    w_const = idx.consts.get(idx.producer[node.input[1]].input[0]) \
        if idx.is_op(idx.producer.get(node.input[1]), "DequantizeLinear") else None
    if w_const is None:
        return f"weight '{node.input[1]}' is not a constant integer tensor behind DQ"
    oq = _output(node, idx)
    if isinstance(oq, str):
        return oq
    (x,), pre = conform(idx, [x], oq.out.dtype)
    w = _weight(node, idx, 1, 0, x, w_const.ndim)
    if isinstance(w, str):
        return w
    inputs = [x.name, x.scale, x.zero_point, w.name, w.scale, w.zero_point,
              oq.out.scale, oq.out.zero_point]
    if len(node.input) > 2 and node.input[2]:
        bias = int32_bias(node, idx, 2, x, w, w_const.shape[0])
        if isinstance(bias, tuple):
            return bias[0]
        inputs.append(bias)
    core = helper.make_node("QLinearConv", inputs, [""], name=_new_name(idx, node, "qlinear"),
                            **_attrs(node))
    return finish(idx, core, oq, pre=pre)


def lower_matmul(node: onnx.NodeProto, idx: QdqIndex) -> Emit | str:
    """MatMul → QLinearMatMul (B per tensor or per column)."""
    a = _activation_input(node, idx, 0)
    if isinstance(a, str):
        return a
    oq = _output(node, idx)
    if isinstance(oq, str):
        return oq
    (a,), pre = conform(idx, [a], oq.out.dtype)
    b = idx.dq_input(node.input[1])
    if isinstance(b, str):
        return b
    if not b.per_tensor:
        b_const = idx.consts.get(b.name)
        if b_const is None or b_const.ndim != 2:
            return "per-column B needs a 2-D constant weight"
        b = _weight(node, idx, 1, 1, a, 2)
        if isinstance(b, str):
            return b
    elif b.dtype not in KERNEL_ACTIVATION_DTYPES:
        return f"input '{node.input[1]}' is {b.dtype}; QLinearMatMul takes uint8/int8"
    elif b.name not in idx.consts:  # an activation: same type rule as A
        (b,), pre_b = conform(idx, [b], oq.out.dtype)
        pre += pre_b
    core = helper.make_node(
        "QLinearMatMul",
        [a.name, a.scale, a.zero_point, b.name, b.scale, b.zero_point,
         oq.out.scale, oq.out.zero_point], [""], name=_new_name(idx, node, "qlinear"))
    return finish(idx, core, oq, pre=pre)


def lower_gemm(node: onnx.NodeProto, idx: QdqIndex) -> Emit | str:
    """Gemm → com.microsoft QGemm: int32 bias added in the accumulator, as ORT's own fusion.

    Chosen over QLinearMatMul + QLinearAdd (would re-quantize the bias to 8 bits, not exact)
    and over MatMulInteger + Add + float requantization (three kernels instead of one).
    """
    at = _attrs(node)
    if at.get("transA", 0) or at.get("alpha", 1.0) != 1.0 or at.get("beta", 1.0) != 1.0:
        return "Gemm with transA or alpha/beta != 1 is not lowered"
    a = _activation_input(node, idx, 0)
    if isinstance(a, str):
        return a
    b_dq = idx.producer.get(node.input[1])
    b_const = idx.consts.get(b_dq.input[0]) if idx.is_op(b_dq, "DequantizeLinear") else None
    if b_const is None or b_const.ndim != 2:
        return f"weight '{node.input[1]}' is not a 2-D constant integer tensor behind DQ"
    trans_b = int(at.get("transB", 0))
    n_out = b_const.shape[0] if trans_b else b_const.shape[1]
    oq = _output(node, idx)
    if isinstance(oq, str):
        return oq
    (a,), pre = conform(idx, [a], oq.out.dtype)
    b = _weight(node, idx, 1, 0 if trans_b else 1, a, 2)
    if isinstance(b, str):
        return b
    bias = ""
    if len(node.input) > 2 and node.input[2]:
        bias = int32_bias(node, idx, 2, a, b, n_out)
        if isinstance(bias, tuple):
            return bias[0]
    core = helper.make_node(
        "QGemm",
        [a.name, a.scale, a.zero_point, b.name, b.scale, b.zero_point, bias,
         oq.out.scale, oq.out.zero_point], [""], name=_new_name(idx, node, "qgemm"),
        domain=MS, transB=trans_b)
    return finish(idx, core, oq, pre=pre)


def _quantized_io(node: onnx.NodeProto, idx: QdqIndex, n_inputs: int):
    """The node's first ``n_inputs`` quantized inputs, conformed to the output's integer type,
    the nodes that conform them, and the output's qparams — or the reason it can't lower."""
    ins = [_activation_input(node, idx, i) for i in range(n_inputs)]
    bad = next((q for q in ins if isinstance(q, str)), None)
    if bad is not None:
        return bad
    oq = _output(node, idx)
    if isinstance(oq, str):
        return oq
    ins, pre = conform(idx, ins, oq.out.dtype)
    return ins, pre, oq


def _lower_elementwise(contrib_op: str, n_inputs: int, attrs: dict | None = None) -> Lowering:
    """Op with per-tensor quantized inputs → com.microsoft ``contrib_op`` (x, s, zp)*, y_s, y_zp."""

    def lower(node: onnx.NodeProto, idx: QdqIndex) -> Emit | str:
        io = _quantized_io(node, idx, n_inputs)
        if isinstance(io, str):
            return io
        ins, pre, oq = io
        names = [n for q in ins for n in (q.name, q.scale, q.zero_point)]
        kw = dict(attrs(node) if callable(attrs) else (attrs or {}))
        core = helper.make_node(contrib_op, [*names, oq.out.scale, oq.out.zero_point], [""],
                                name=_new_name(idx, node, "qlinear"), domain=MS, **kw)
        return finish(idx, core, oq, pre=pre)

    lower.__doc__ = f"→ com.microsoft {contrib_op}."
    return lower


def _avgpool_attrs(node: onnx.NodeProto) -> dict:
    return {**_attrs(node, drop=("dilations",)), "channels_last": 0}


def lower_avgpool(node: onnx.NodeProto, idx: QdqIndex) -> Emit | str:
    """AveragePool → QLinearAveragePool (no dilations in the contrib kernel)."""
    if any(d != 1 for d in _attrs(node).get("dilations", [])):
        return "AveragePool with dilations has no QLinearAveragePool kernel"
    return _lower_elementwise("QLinearAveragePool", 1, _avgpool_attrs)(node, idx)


def lower_reduce_mean(node: onnx.NodeProto, idx: QdqIndex) -> Emit | str:
    """ReduceMean over H, W of a 4-D tensor with keepdims → QLinearGlobalAveragePool.

    torch exports ``AdaptiveAvgPool2d(1)`` / ``x.mean((2, 3), keepdim=True)`` this way.
    """
    at = _attrs(node)
    rank = idx.ranks.get(node.input[0])
    axes_name = node.input[1] if len(node.input) > 1 else ""
    axes = idx.consts.get(axes_name) if axes_name else at.get("axes")
    if rank != 4 or axes is None or not at.get("keepdims", 1):
        return "only ReduceMean over axes (2, 3) of a 4-D tensor with keepdims=1 is lowered"
    if sorted(int(a) % 4 for a in np.asarray(axes).ravel()) != [2, 3]:
        return f"ReduceMean over axes {list(np.asarray(axes).ravel())}; only (2, 3) is lowered"
    return _lower_elementwise("QLinearGlobalAveragePool", 1, {"channels_last": 0})(node, idx)


def lower_softmax(node: onnx.NodeProto, idx: QdqIndex) -> Emit | str:
    """Softmax → QLinearSoftmax (opset-13 semantics: normalise along ``axis`` only)."""
    attrs = {"axis": _attrs(node).get("axis", -1), "opset": 13}
    return _lower_elementwise("QLinearSoftmax", 1, attrs)(node, idx)


def lower_concat(node: onnx.NodeProto, idx: QdqIndex) -> Emit | str:
    """Concat → integer Concat when all qparams agree, else QLinearConcat."""
    io = _quantized_io(node, idx, len(node.input))
    if isinstance(io, str):
        return io
    ins, pre, oq = io
    axis = _attrs(node)["axis"]
    if all(q.same_qparams(oq.out) for q in ins):
        core = helper.make_node("Concat", [q.name for q in ins], [""],
                                name=_new_name(idx, node, "int"), axis=axis)
    else:
        names = [n for q in ins for n in (q.name, q.scale, q.zero_point)]
        core = helper.make_node("QLinearConcat", [oq.out.scale, oq.out.zero_point, *names],
                                [""], name=_new_name(idx, node, "qlinear"), domain=MS, axis=axis)
    return finish(idx, core, oq, pre=pre)


def lower_pass_through(node: onnx.NodeProto, idx: QdqIndex) -> Emit | str:
    """MaxPool / Reshape / Flatten / ... run on the integer tensor when qparams are identical;
    so do nearest Resize and Pad (a constant fill becomes the zero point: see
    :func:`_pad_operands`)."""
    if node.op_type == "MaxPool" and len(node.output) > 1:
        return "MaxPool with an Indices output is not lowered"
    if node.op_type == "Resize" and _attrs(node).get("mode", b"nearest") not in (b"nearest", "nearest"):
        return "only nearest Resize is exact on the integer tensor"
    x = idx.dq_input(node.input[0])
    if isinstance(x, str):
        return x
    allowed = KERNEL_ACTIVATION_DTYPES if node.op_type in INTEGER_8BIT_ONLY else LAYOUT_DTYPES
    if x.dtype not in allowed:
        return f"input '{node.input[0]}' is {x.dtype}; integer {node.op_type} takes {allowed}"
    for name in node.input[1:]:  # shape / axes / perm operands must stay non-float
        if name and idx.producer.get(name) is not None and \
                idx.is_op(idx.producer[name], "DequantizeLinear"):
            return f"operand '{name}' is a quantized tensor"
    oq = idx.output_q(node)
    if isinstance(oq, str):
        return oq
    if not x.same_qparams(oq.out):
        return "input and output qparams differ; the integer op would not be exact"
    operands = list(node.input[1:])
    if node.op_type == "Pad":
        operands = _pad_operands(node, idx, x)
        if isinstance(operands, str):
            return operands
    core = helper.make_node(node.op_type, [x.name, *operands], [""],
                            name=_new_name(idx, node, "int"), **_attrs(node))
    return finish(idx, core, oq)


def _pad_operands(node: onnx.NodeProto, idx: QdqIndex, x: QTensor) -> list[str] | str:
    """Pad's operands for the integer tensor: a constant fill value 0 becomes the zero point
    (Q(0) = zero point exactly); any other fill value stays float."""
    operands = list(node.input[1:])
    if len(operands) < 2 or not operands[1]:
        if _attrs(node).get("mode", b"constant") in (b"constant", "constant"):
            operands[1:2] = [idx.add_const(f"{node.name or 'pad'}_zero_point",
                                           x.zp_value.reshape(()).astype(x.dtype))]
        return operands
    value = idx.consts.get(operands[1])
    if value is None or value.size != 1 or float(value.reshape(-1)[0]) != 0.0:
        return f"Pad fill '{operands[1]}' is not the constant 0"
    operands[1] = idx.add_const(f"{node.name or 'pad'}_zero_point",
                                x.zp_value.reshape(()).astype(x.dtype))
    return operands


def lower_activation(node: onnx.NodeProto, idx: QdqIndex) -> Emit | str:
    """Standalone Relu / Clip → integer Clip to [Q(lo), Q(hi)] when in/out qparams agree.

    With different qparams (onnxruntime's ``QDQKeepRemovableActivations``) the input is first
    requantized by com.microsoft QLinearLeakyRelu — alpha 0 is Relu itself, alpha 1 a pure
    requantization before the integer Clip; its 256-entry table is Q(f(DQ(x))) per value.
    """
    x = _activation_input(node, idx, 0)
    if isinstance(x, str):
        return x
    bounds = idx.activation_bounds(node)
    if isinstance(bounds, str):
        return bounds
    oq = _output(node, idx)
    if isinstance(oq, str):
        return oq
    if x.same_qparams(oq.out):
        core = helper.make_node("Identity", [x.name], [""], name=_new_name(idx, node, "int"))
        emit = finish(idx, core, oq, *bounds)
        if len(emit.nodes) == 2:  # Identity → Clip: read the integer tensor directly
            emit.nodes[1].input[0] = x.name
            return Emit([emit.nodes[1]], emit.consumed)
        return emit
    (x,), pre = conform(idx, [x], oq.out.dtype)
    is_relu = node.op_type == "Relu"
    core = helper.make_node(
        "QLinearLeakyRelu", [x.name, x.scale, x.zero_point, oq.out.scale, oq.out.zero_point],
        [""], name=_new_name(idx, node, "qlinear"), domain=MS, alpha=0.0 if is_relu else 1.0)
    # The alpha-0 table already clamps at Q(0); only Clip still needs its bounds.
    return finish(idx, core, oq, *(() if is_relu else bounds), pre=pre)


LOWERINGS: dict[str, Lowering] = {
    "Conv": lower_conv,
    "MatMul": lower_matmul,
    "Gemm": lower_gemm,
    "Add": _lower_elementwise("QLinearAdd", 2),
    "Mul": _lower_elementwise("QLinearMul", 2),
    "GlobalAveragePool": _lower_elementwise("QLinearGlobalAveragePool", 1, {"channels_last": 0}),
    "AveragePool": lower_avgpool,
    "ReduceMean": lower_reduce_mean,
    "Sigmoid": _lower_elementwise("QLinearSigmoid", 1),
    "LeakyRelu": _lower_elementwise(
        "QLinearLeakyRelu", 1, lambda n: {"alpha": _attrs(n).get("alpha", 0.01)}),
    "Softmax": lower_softmax,
    "Concat": lower_concat,
    "Relu": lower_activation,
    "Clip": lower_activation,
    **dict.fromkeys((*PASS_THROUGH, "Resize", "Pad"), lower_pass_through),
}
