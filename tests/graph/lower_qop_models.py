"""Models for the lowering tests: float builders (onnx.helper), QDQ from onnxruntime's
``quantize_static`` or ``edgequant.quantize``, and hand-written QDQ for specific patterns."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import onnx
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

OPSET = 21


# -- model builders -----------------------------------------------------------------------
def _model(nodes, inits, in_shape, out_name="y", in_name="x") -> onnx.ModelProto:
    g = h.make_graph(nodes, "m", [h.make_tensor_value_info(in_name, TensorProto.FLOAT, in_shape)],
                     [h.make_tensor_value_info(out_name, TensorProto.FLOAT, None)],
                     [nh.from_array(v, k) for k, v in inits.items()])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", OPSET)])
    m.ir_version = 10
    m = onnx.shape_inference.infer_shapes(m)
    onnx.checker.check_model(m, full_check=True)
    return m


def _w(rng, *shape, std=0.3):
    return rng.normal(0, std, shape).astype(np.float32)


def _conv(name, x, w, b, y, **kw):
    kw.setdefault("pads", [1, 1, 1, 1])
    return h.make_node("Conv", [x, w, b], [y], name=name, **kw)


def cnn(rng, hw=12, c=12):
    """Conv 3×3 + ReLU → MaxPool 2 → Flatten → Dense 10 (the demo topology)."""
    inits = {"w1": _w(rng, c, 1, 3, 3), "b1": _w(rng, c, std=0.1),
             "w2": _w(rng, 10, c * (hw // 2) ** 2, std=0.1), "b2": _w(rng, 10, std=0.1)}
    nodes = [_conv("conv", "x", "w1", "b1", "c1"), h.make_node("Relu", ["c1"], ["r1"]),
             h.make_node("MaxPool", ["r1"], ["p1"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
             h.make_node("Flatten", ["p1"], ["f1"], name="flatten"),
             h.make_node("Gemm", ["f1", "w2", "b2"], ["y"], name="dense", transB=1)]
    return _model(nodes, inits, ["N", 1, hw, hw]), (1, hw, hw)


def resnet_block(rng, c=8, hw=8):
    """Conv → ReLU → Conv, residual Add, ReLU → GlobalAveragePool → Flatten → Gemm."""
    inits = {"w0": _w(rng, c, 3, 3, 3), "b0": _w(rng, c, std=0.1),
             "w1": _w(rng, c, c, 3, 3, std=0.2), "b1": _w(rng, c, std=0.1),
             "w2": _w(rng, c, 10), "b2": _w(rng, 10, std=0.1)}
    nodes = [_conv("conv0", "x", "w0", "b0", "c0"), h.make_node("Relu", ["c0"], ["r0"]),
             _conv("conv1", "r0", "w1", "b1", "c1"),
             h.make_node("Add", ["c1", "r0"], ["s"], name="residual"),
             h.make_node("Relu", ["s"], ["r1"]),
             h.make_node("GlobalAveragePool", ["r1"], ["g"], name="gap"),
             h.make_node("Flatten", ["g"], ["f"]),
             h.make_node("Gemm", ["f", "w2", "b2"], ["y"], name="dense")]
    return _model(nodes, inits, ["N", 3, hw, hw]), (3, hw, hw)


def branches(rng, c=6, hw=8, pool="AveragePool"):
    """Two convs (one depthwise after a pointwise) → Concat → ``pool`` 2×2 → Conv."""
    inits = {"wa": _w(rng, c, 3, 3, 3), "ba": _w(rng, c, std=0.1),
             "wp": _w(rng, c, 3, 1, 1), "bp": _w(rng, c, std=0.1),
             "wd": _w(rng, c, 1, 3, 3), "bd": _w(rng, c, std=0.1),
             "wo": _w(rng, 10, 2 * c, 4, 4, std=0.1), "bo": _w(rng, 10, std=0.1)}
    nodes = [_conv("conv_a", "x", "wa", "ba", "a"),
             _conv("pointwise", "x", "wp", "bp", "p", pads=[0, 0, 0, 0]),
             _conv("depthwise", "p", "wd", "bd", "d", group=c),
             h.make_node("Concat", ["a", "d"], ["cat"], name="concat", axis=1),
             h.make_node(pool, ["cat"], ["ap"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
             _conv("conv_out", "ap", "wo", "bo", "o", pads=[0, 0, 0, 0]),
             h.make_node("Flatten", ["o"], ["y"])]
    return _model(nodes, inits, ["N", 3, hw, hw]), (3, hw, hw)


def mlp(rng, k=16, n=24):
    """MatMul + Add → Sigmoid → MatMul → LeakyRelu → Mul → MatMul → Softmax."""
    inits = {"w1": _w(rng, k, n), "b1": _w(rng, n, std=0.1), "w2": _w(rng, n, n),
             "m": _w(rng, n, std=1.0), "w3": _w(rng, n, 10)}
    nodes = [h.make_node("MatMul", ["x", "w1"], ["h1"], name="mm1"),
             h.make_node("Add", ["h1", "b1"], ["h2"], name="add_bias"),
             h.make_node("Sigmoid", ["h2"], ["h3"], name="sigmoid"),
             h.make_node("MatMul", ["h3", "w2"], ["h4"], name="mm2"),
             h.make_node("LeakyRelu", ["h4"], ["h5"], name="leaky", alpha=0.1),
             h.make_node("Mul", ["h5", "m"], ["h6"], name="scale"),
             h.make_node("MatMul", ["h6", "w3"], ["h7"], name="mm3"),
             h.make_node("Softmax", ["h7"], ["y"], name="softmax", axis=-1)]
    return _model(nodes, inits, ["N", k]), (k,)


class _Reader(CalibrationDataReader):
    def __init__(self, data: np.ndarray):
        self._it = iter({"x": d[None]} for d in data)

    def get_next(self):
        return next(self._it, None)


def ort_qdq(model: onnx.ModelProto, calib: np.ndarray, act=QuantType.QUInt8,
            extra: dict | None = None, per_channel: bool = True) -> onnx.ModelProto:
    """onnxruntime's quantize_static, QDQ format, int8 weights (per channel by default)."""
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "f.onnx"), os.path.join(d, "q.onnx")
        onnx.save(model, src)
        quantize_static(src, dst, _Reader(calib), quant_format=QuantFormat.QDQ,
                        activation_type=act, weight_type=QuantType.QInt8, per_channel=per_channel,
                        extra_options=extra or {})
        return onnx.load(dst)


def eq_qdq(model: onnx.ModelProto, calib: np.ndarray, recipe: str = "w8a8") -> onnx.ModelProto:
    from edgequant import quantize

    return quantize(model, recipe, {model.graph.input[0].name: calib}).model


# hand-written QDQ (edgequant's contract: the activation sits between op and Q)
def _q(dtype, v):
    return np.asarray(v, dtype=dtype)


def hand_qdq_conv(act: str | None, dtype, y_scale: float, y_zp: int, clip=(0.0, 6.0),
                  middle: str | None = None, middle_q: tuple[float, int] | None = None
                  ) -> onnx.ModelProto:
    """x → Q → DQ → Conv(int8 per-channel w, int32 bias) [→ act] → Q → DQ [→ middle → Q → DQ].

    ``middle`` adds a float op after the conv whose output has qparams ``middle_q`` (scale,
    zero point; default the same as its input) (a
    standalone activation or a float-only op such as Erf).
    """
    rng = np.random.default_rng(7)
    x_scale, x_zp = np.float32(0.02), _q(dtype, 3)
    w = rng.integers(-127, 128, (4, 2, 3, 3)).astype(np.int8)
    w_scale = rng.uniform(0.002, 0.01, 4).astype(np.float32)
    b = rng.integers(-3000, 3000, 4).astype(np.int32)
    inits = {"x_s": x_scale, "x_zp": x_zp, "w_q": w, "w_s": w_scale,
             "w_zp": np.zeros(4, np.int8), "b_q": b, "b_s": (x_scale * w_scale),
             "b_zp": np.zeros(4, np.int32), "y_s": np.float32(y_scale), "y_zp": _q(dtype, y_zp)}
    nodes = [h.make_node("QuantizeLinear", ["x", "x_s", "x_zp"], ["xq"]),
             h.make_node("DequantizeLinear", ["xq", "x_s", "x_zp"], ["xd"]),
             h.make_node("DequantizeLinear", ["w_q", "w_s", "w_zp"], ["wd"], axis=0),
             h.make_node("DequantizeLinear", ["b_q", "b_s", "b_zp"], ["bd"], axis=0),
             _conv("conv", "xd", "wd", "bd", "c")]
    pre = "c"
    if act == "Relu":
        nodes.append(h.make_node("Relu", ["c"], ["a"], name="act"))
        pre = "a"
    elif act == "Clip":
        inits |= {"lo": np.float32(clip[0]), "hi": np.float32(clip[1])}
        nodes.append(h.make_node("Clip", ["c", "lo", "hi"], ["a"], name="act"))
        pre = "a"
    nodes += [h.make_node("QuantizeLinear", [pre, "y_s", "y_zp"], ["yq"]),
              h.make_node("DequantizeLinear", ["yq", "y_s", "y_zp"], ["yd"])]
    if middle is not None:
        extra = ["lo", "hi"] if middle == "Clip" else []
        m_s, m_zp = middle_q or (y_scale, y_zp)
        inits |= {"m_s": np.float32(m_s), "m_zp": _q(dtype, m_zp)}
        nodes += [h.make_node(middle, ["yd", *extra], ["m"], name="middle"),
                  h.make_node("QuantizeLinear", ["m", "m_s", "m_zp"], ["mq"]),
                  h.make_node("DequantizeLinear", ["mq", "m_s", "m_zp"], ["md"])]
        if middle == "Clip":
            inits |= {"lo": np.float32(clip[0]), "hi": np.float32(clip[1])}
    nodes[-1].output[0] = "y"  # the last DQ is the graph output
    return _model(nodes, inits, ["N", 2, 6, 6])


def qdq_conv_case(seed: int, c_in: int, c_out_per_group: int, group: int, k: int, stride: int,
                  pad: int, dilation: int, act: str | None, dtype, hw: int = 7
                  ) -> onnx.ModelProto:
    """One QDQ Conv with random qparams: x → Q → DQ → Conv [→ act] → Q → DQ → y.

    Weights int8 per output channel (symmetric), bias int32 at input·weight scale,
    activation zero points anywhere in the type's range (the hard case for clamps).
    """
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    c_in_total, c_out = c_in * group, c_out_per_group * group
    x_scale = np.float32(rng.uniform(0.005, 0.05))
    w_scale = rng.uniform(0.001, 0.02, c_out).astype(np.float32)
    inits = {"x_s": x_scale, "x_zp": _q(dtype, rng.integers(info.min, info.max + 1)),
             "w_q": rng.integers(-127, 128, (c_out, c_in, k, k)).astype(np.int8),
             "w_s": w_scale, "w_zp": np.zeros(c_out, np.int8),
             "b_q": rng.integers(-2000, 2000, c_out).astype(np.int32),
             "b_s": x_scale * w_scale, "b_zp": np.zeros(c_out, np.int32),
             "y_s": np.float32(rng.uniform(0.02, 0.2)),
             "y_zp": _q(dtype, rng.integers(info.min, info.max + 1)),
             "lo": np.float32(rng.uniform(-2, 0)), "hi": np.float32(rng.uniform(0.5, 4))}
    nodes = [h.make_node("QuantizeLinear", ["x", "x_s", "x_zp"], ["xq"]),
             h.make_node("DequantizeLinear", ["xq", "x_s", "x_zp"], ["xd"]),
             h.make_node("DequantizeLinear", ["w_q", "w_s", "w_zp"], ["wd"], axis=0),
             h.make_node("DequantizeLinear", ["b_q", "b_s", "b_zp"], ["bd"], axis=0),
             h.make_node("Conv", ["xd", "wd", "bd"], ["c"], name="conv", group=group,
                         kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4,
                         dilations=[dilation, dilation])]
    pre = "c"
    if act is not None:
        extra = ["lo", "hi"] if act == "Clip" else []
        nodes.append(h.make_node(act, ["c", *extra], ["a"], name="act"))
        pre = "a"
    if act != "Clip":
        del inits["lo"], inits["hi"]
    nodes += [h.make_node("QuantizeLinear", [pre, "y_s", "y_zp"], ["yq"]),
              h.make_node("DequantizeLinear", ["yq", "y_s", "y_zp"], ["y"])]
    return _model(nodes, inits, ["N", c_in_total, hw, hw])
