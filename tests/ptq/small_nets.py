"""Small float ONNX nets with deliberately unequal per-channel weight ranges (CLE / bias
correction tests)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _conv(name: str, x: str, w: np.ndarray, b: np.ndarray, group: int = 1, pad: int = 0):
    inits = [numpy_helper.from_array(w.astype(np.float32), f"{name}.w"),
             numpy_helper.from_array(b.astype(np.float32), f"{name}.b")]
    node = helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [f"{name}.y"], name=name,
                            group=group, pads=[pad] * 4)
    return node, inits


def conv_chain(act: str = "Relu", seed: int = 0, spread: float = 30.0) -> onnx.ModelProto:
    """x (N,4,8,8) → conv1x1 (16) → act → depthwise 3x3 (16) → act → conv1x1 (8) → Gemm (5).

    Output channels of the first two layers get weight scales spread over ``spread``×, the
    case cross-layer equalization targets. ``act``: "Relu", "Clip" (0..6) or "" (identity).
    """
    rng = np.random.default_rng(seed)
    span = np.exp(rng.uniform(0, np.log(spread), 16))  # (16,) per-channel scales
    w1 = rng.normal(0, 0.3, (16, 4, 1, 1)) * span[:, None, None, None]
    w2 = rng.normal(0, 0.5, (16, 1, 3, 3)) / span[:, None, None, None] * \
        np.exp(rng.uniform(0, np.log(spread), 16))[:, None, None, None]
    w3 = rng.normal(0, 0.3, (8, 16, 1, 1))
    wg = rng.normal(0, 0.3, (5, 8 * 8 * 8))
    nodes, inits = [], []
    x = "x"
    for name, w, g, pad in (("c1", w1, 1, 0), ("dw", w2, 16, 1), ("c3", w3, 1, 0)):
        n, i = _conv(name, x, w, rng.normal(0, 0.2, w.shape[0]), g, pad)
        nodes.append(n)
        inits += i
        x = n.output[0]
        if act and name != "c3":
            if act == "Clip":
                nodes.append(helper.make_node("Clip", [x, "lo", "hi"], [f"{name}.a"], name=f"{name}_act"))
            else:
                nodes.append(helper.make_node(act, [x], [f"{name}.a"], name=f"{name}_act"))
            x = f"{name}.a"
    inits += [numpy_helper.from_array(np.array(0, np.float32), "lo"),
              numpy_helper.from_array(np.array(6, np.float32), "hi"),
              numpy_helper.from_array(np.array([0, -1], np.int64), "flat_shape"),
              numpy_helper.from_array(wg.astype(np.float32), "fc.w"),
              numpy_helper.from_array(rng.normal(0, 0.1, 5).astype(np.float32), "fc.b")]
    nodes += [helper.make_node("Reshape", [x, "flat_shape"], ["flat"], name="flatten"),
              helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                             ["N", 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def mlp(seed: int = 0) -> onnx.ModelProto:
    """x (N,6) → Gemm (transB=0, 10) → Relu → MatMul (10→7) → y: Gemm/MatMul pairs."""
    rng = np.random.default_rng(seed)
    span = np.exp(rng.uniform(0, np.log(50), 10))
    w1 = rng.normal(0, 0.5, (6, 10)) * span
    w2 = rng.normal(0, 0.5, (10, 7)) / span[:, None]
    inits = [numpy_helper.from_array(w1.astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.3, 10).astype(np.float32), "b1"),
             numpy_helper.from_array(w2.astype(np.float32), "w2")]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["a"], name="relu"),
             helper.make_node("MatMul", ["a", "w2"], ["y"], name="fc2")]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 7])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def images(n: int, seed: int) -> np.ndarray:
    """(n, 4, 8, 8) float32 inputs."""
    return np.random.default_rng(seed).normal(0, 1, (n, 4, 8, 8)).astype(np.float32)
