"""Small ONNX models with the features real third-party exports have, one per failure class.

Each builder returns a :class:`RealWorldCase`: the model (with seeded random weights laid out
the way that exporter writes them), calibration feeds, the batch axis of each input and what
the case exercises. ``bench/coverage.py`` runs every case through every recipe and format.

Cases:

- ``paddle_ocr`` (a Paddle OCR detection net): ``-1`` batch dim, Constant-node weights, Pad,
  HardSwish, HardSigmoid squeeze-excitation, Div by a constant, Resize, unfolded BatchNorm.
- ``zoo_ir3`` (a classic model-zoo CNN): IR version 3, opset 8, initializers listed as graph
  inputs, LRN, Sum, fixed batch 1.
- ``vad_lstm`` (a TorchScript voice-activity net): LSTM with state ``(layers, batch, hidden)``
  (batch on axis 1), an ``If`` with MatMuls in both branches, a scalar int input.
- ``gru_loop`` (a recurrent decoder): time-major GRU (batch axis 1), a ``Loop`` whose body
  holds a MatMul, a dynamic time dim.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


@dataclass
class RealWorldCase:
    """One model with a real-world export feature, and the data to calibrate it."""

    name: str
    model: onnx.ModelProto
    feeds: dict[str, np.ndarray]
    batch_axes: dict[str, int] = field(default_factory=dict)
    features: str = ""


def _w(rng, *shape, scale=None) -> np.ndarray:
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    return (rng.standard_normal(shape) * (scale or 1.0 / np.sqrt(fan_in))).astype(np.float32)


def _const_node(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], name=f"{name}_const",
                            value=numpy_helper.from_array(value, name))


def paddle_ocr(seed: int = 0) -> RealWorldCase:
    """Paddle-style detection head: ``-1`` batch, weights in Constant nodes, odd activations."""
    rng = np.random.default_rng(seed)
    nodes, c = [], 16
    nodes += [_const_node("w0", _w(rng, c, 3, 3, 3)), _const_node("b0", _w(rng, c, scale=0.1))]
    nodes.append(helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="conv0",
                                  pads=[1, 1, 1, 1], strides=[2, 2]))
    bn = [rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c), rng.normal(0, 0.1, c), rng.uniform(0.5, 2, c)]
    for nm, v in zip(("bn_s", "bn_b", "bn_m", "bn_v"), bn, strict=True):
        nodes.append(_const_node(nm, v.astype(np.float32)))
    nodes.append(helper.make_node("BatchNormalization", ["c0", "bn_s", "bn_b", "bn_m", "bn_v"],
                                  ["bn0"], name="bn0", epsilon=1e-5))
    nodes.append(helper.make_node("HardSwish", ["bn0"], ["a0"], name="hswish0"))
    nodes.append(_const_node("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)))
    nodes.append(helper.make_node("Pad", ["a0", "pads"], ["p0"], name="pad0", mode="constant"))
    nodes += [_const_node("wd", _w(rng, c, 1, 3, 3)), _const_node("bd", _w(rng, c, scale=0.1))]
    nodes.append(helper.make_node("Conv", ["p0", "wd", "bd"], ["d0"], name="dwconv", group=c))
    nodes.append(helper.make_node("Relu", ["d0"], ["r0"], name="relu0"))
    # squeeze-and-excitation with HardSigmoid
    nodes.append(helper.make_node("GlobalAveragePool", ["r0"], ["se0"], name="se_pool"))
    nodes += [_const_node("ws", _w(rng, c, c, 1, 1)), _const_node("bs", _w(rng, c, scale=0.1))]
    nodes.append(helper.make_node("Conv", ["se0", "ws", "bs"], ["se1"], name="se_conv"))
    nodes.append(helper.make_node("HardSigmoid", ["se1"], ["se2"], name="se_hsig", alpha=0.2, beta=0.5))
    nodes.append(helper.make_node("Mul", ["r0", "se2"], ["m0"], name="se_mul"))
    nodes += [_const_node("w1", _w(rng, 8, c, 1, 1)), _const_node("b1", _w(rng, 8, scale=0.1))]
    nodes.append(helper.make_node("Conv", ["m0", "w1", "b1"], ["c1"], name="conv1"))
    nodes.append(_const_node("six", np.array(6.0, np.float32)))
    nodes.append(helper.make_node("Div", ["c1", "six"], ["dv"], name="div_const"))
    nodes.append(_const_node("scales", np.array([1, 1, 2, 2], np.float32)))
    nodes.append(_const_node("roi", np.array([], np.float32)))
    nodes.append(helper.make_node("Resize", ["dv", "roi", "scales"], ["up"], name="upsample",
                                  mode="nearest"))
    nodes += [_const_node("w2", _w(rng, 1, 8, 3, 3)), _const_node("b2", _w(rng, 1, scale=0.1))]
    nodes.append(helper.make_node("Conv", ["up", "w2", "b2"], ["c2"], name="head", pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node("Sigmoid", ["c2"], ["prob"], name="prob"))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, 32, 32])
    y = helper.make_tensor_value_info("prob", TensorProto.FLOAT, [-1, 1, 32, 32])
    g = helper.make_graph(nodes, "paddle_ocr", [x], [y])
    # Paddle writes -1 for the batch: make_tensor_value_info turns -1 into dim_value -1
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)], ir_version=7,
                          producer_name="PaddlePaddle")
    feeds = {"x": rng.uniform(-1, 1, (32, 3, 32, 32)).astype(np.float32)}
    return RealWorldCase("paddle_ocr", m, feeds, {"x": 0},
                         "-1 batch, Constant weights, BN, HardSwish, Pad, HardSigmoid SE, Div, Resize")


def zoo_ir3(seed: int = 0) -> RealWorldCase:
    """A model-zoo CNN at IR 3 / opset 8: initializers are graph inputs; LRN and Sum."""
    rng = np.random.default_rng(seed)
    inits = {"conv1_w": _w(rng, 8, 3, 5, 5), "conv1_b": _w(rng, 8, scale=0.1),
             "conv2_w": _w(rng, 8, 8, 3, 3), "conv2_b": _w(rng, 8, scale=0.1),
             "conv3_w": _w(rng, 8, 8, 3, 3), "conv3_b": _w(rng, 8, scale=0.1),
             "fc_w": _w(rng, 10, 8 * 8 * 8), "fc_b": _w(rng, 10, scale=0.1),
             "shape": np.array([1, -1], np.int64)}
    nodes = [
        helper.make_node("Conv", ["data", "conv1_w", "conv1_b"], ["c1"], name="conv1", pads=[2] * 4),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("LRN", ["r1"], ["n1"], name="norm1", size=5, alpha=1e-4, beta=0.75, bias=1.0),
        helper.make_node("MaxPool", ["n1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2_w", "conv2_b"], ["c2"], name="conv2", pads=[1] * 4),
        helper.make_node("Conv", ["p1", "conv3_w", "conv3_b"], ["c3"], name="conv3", pads=[1] * 4),
        helper.make_node("Sum", ["c2", "c3", "p1"], ["s"], name="sum"),
        helper.make_node("Relu", ["s"], ["r2"], name="relu2"),
        helper.make_node("MaxPool", ["r2"], ["p2"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Reshape", ["p2", "shape"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["fc"], name="fc", transB=1),
        helper.make_node("Softmax", ["fc"], ["prob"], name="softmax"),
    ]
    x = helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 32, 32])
    inputs = [x] + [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                    for k, v in inits.items()]
    y = helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 10])
    g = helper.make_graph(nodes, "zoo_ir3", inputs, [y],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 8)], ir_version=3)
    feeds = {"data": rng.uniform(0, 1, (16, 3, 32, 32)).astype(np.float32)}
    return RealWorldCase("zoo_ir3", m, feeds, {"data": 0},
                         "IR 3, opset 8, initializers as inputs, LRN, Sum, fixed batch 1")


def _branch(name: str, rng, hidden: int, out: str) -> onnx.GraphProto:
    w = numpy_helper.from_array(_w(rng, hidden, hidden), f"{name}_w")
    b = numpy_helper.from_array(_w(rng, hidden, scale=0.1), f"{name}_b")
    nodes = [helper.make_node("MatMul", ["hlast", f"{name}_w"], [f"{name}_mm"], name=f"{name}_mm"),
             helper.make_node("Add", [f"{name}_mm", f"{name}_b"], [f"{name}_add"], name=f"{name}_add"),
             helper.make_node("Relu", [f"{name}_add"], [out], name=f"{name}_relu")]
    return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(out, TensorProto.FLOAT,
                                                                            None)], [w, b])


def vad_lstm(seed: int = 0) -> RealWorldCase:
    """Voice-activity style: LSTM with state inputs (layers, batch, hidden) and an ``If``."""
    rng = np.random.default_rng(seed)
    f, h, t = 16, 32, 10
    inits = {
        "enc_w": _w(rng, f, f), "enc_b": _w(rng, f, scale=0.1),
        "W": _w(rng, 1, 4 * h, f), "R": _w(rng, 1, 4 * h, h), "B": _w(rng, 1, 8 * h, scale=0.1),
        "dec_w": _w(rng, h, 1), "dec_b": _w(rng, 1, scale=0.1),
        "sr_16k": np.array(16000, np.int64), "axis0": np.array([0], np.int64),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "enc_w"], ["e0"], name="enc_mm"),
        helper.make_node("Add", ["e0", "enc_b"], ["e1"], name="enc_add"),
        helper.make_node("Relu", ["e1"], ["e2"], name="enc_relu"),
        helper.make_node("Transpose", ["e2"], ["seq"], name="to_time_major", perm=[1, 0, 2]),
        helper.make_node("LSTM", ["seq", "W", "R", "B", "", "h0", "c0"], ["Y", "hn", "cn"],
                         name="lstm", hidden_size=h),
        helper.make_node("Squeeze", ["hn", "axis0"], ["hlast"], name="squeeze_h"),
        helper.make_node("Equal", ["sr", "sr_16k"], ["is16k"], name="is_16k"),
        helper.make_node("If", ["is16k"], ["feat"], name="rate_branch",
                         then_branch=_branch("then16k", rng, h, "feat_then"),
                         else_branch=_branch("else8k", rng, h, "feat_else")),
        helper.make_node("MatMul", ["feat", "dec_w"], ["d0"], name="dec_mm"),
        helper.make_node("Add", ["d0", "dec_b"], ["d1"], name="dec_add"),
        helper.make_node("Sigmoid", ["d1"], ["prob"], name="prob"),
    ]
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", t, f]),
           helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, "batch", h]),
           helper.make_tensor_value_info("c0", TensorProto.FLOAT, [1, "batch", h]),
           helper.make_tensor_value_info("sr", TensorProto.INT64, [])]
    outs = [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("hn", TensorProto.FLOAT, [1, "batch", h]),
            helper.make_tensor_value_info("cn", TensorProto.FLOAT, [1, "batch", h])]
    g = helper.make_graph(nodes, "vad_lstm", ins, outs,
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 16)], ir_version=8,
                          producer_name="pytorch")
    n = 32
    feeds = {"x": rng.standard_normal((n, t, f)).astype(np.float32),
             "h0": (0.1 * rng.standard_normal((1, n, h))).astype(np.float32),
             "c0": (0.1 * rng.standard_normal((1, n, h))).astype(np.float32),
             "sr": np.array(16000, np.int64)}
    return RealWorldCase("vad_lstm", m, feeds, {"x": 0, "h0": 1, "c0": 1},
                         "LSTM, state batch on axis 1, If with MatMuls in both branches, scalar int input")


def gru_loop(seed: int = 0) -> RealWorldCase:
    """A GRU encoder and a ``Loop`` that refines the state a fixed number of times."""
    rng = np.random.default_rng(seed)
    f, h, t = 8, 16, 12
    body_w = numpy_helper.from_array(_w(rng, h, h), "body_w")
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="loop_cond"),
         helper.make_node("MatMul", ["state_in", "body_w"], ["bm"], name="loop_mm"),
         helper.make_node("Tanh", ["bm"], ["state_out"], name="loop_tanh")],
        "loop_body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("state_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("state_out", TensorProto.FLOAT, None)], [body_w])
    inits = {"W": _w(rng, 1, 3 * h, f), "R": _w(rng, 1, 3 * h, h), "B": _w(rng, 1, 6 * h, scale=0.1),
             "fc_w": _w(rng, h, 4), "fc_b": _w(rng, 4, scale=0.1), "trips": np.array(3, np.int64),
             "true": np.array(True), "axis0": np.array([0], np.int64)}
    nodes = [
        helper.make_node("GRU", ["x", "W", "R", "B"], ["Y", "hn"], name="gru", hidden_size=h),
        helper.make_node("Squeeze", ["hn", "axis0"], ["h"], name="squeeze_h"),
        helper.make_node("Loop", ["trips", "true", "h"], ["refined"], name="refine", body=body),
        helper.make_node("MatMul", ["refined", "fc_w"], ["o0"], name="fc_mm"),
        helper.make_node("Add", ["o0", "fc_b"], ["logits"], name="fc_add"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["time", "batch", f])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])
    g = helper.make_graph(nodes, "gru_loop", [x], [y],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    feeds = {"x": rng.standard_normal((t, 24, f)).astype(np.float32)}
    return RealWorldCase("gru_loop", m, feeds, {"x": 1},
                         "GRU (time-major, batch axis 1), Loop body with a MatMul, dynamic time")


CASES = {"paddle_ocr": paddle_ocr, "zoo_ir3": zoo_ir3, "vad_lstm": vad_lstm, "gru_loop": gru_loop}

__all__ = ["CASES", "RealWorldCase", "gru_loop", "paddle_ocr", "vad_lstm", "zoo_ir3"]
