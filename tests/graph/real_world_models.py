"""Small float models with the features third-party exporters produce, built with onnx.helper.

Each builder returns a model that onnxruntime loads and runs, plus the data it takes:
IR 3 with initializers listed as graph inputs, an old opset, a Paddle-style ``-1`` batch,
a recurrent state input ``(layers, batch, hidden)``, weights in ``Constant`` nodes, an ``If``
with convolutions in each branch, a ``Loop`` and a ``Scan`` with a MatMul in their bodies.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RNG_SEED = 0


def _f32(rng: np.random.Generator, shape, std: float = 0.3) -> np.ndarray:
    return rng.normal(0, std, shape).astype(np.float32)


def _conv_net_nodes(prefix: str = "") -> list[onnx.NodeProto]:
    """input (N,3,8,8) → Conv 3×3 → Relu → Conv 1×1 → GlobalAveragePool → Flatten → Gemm."""
    p = prefix
    return [
        helper.make_node("Conv", ["input", f"{p}w1", f"{p}b1"], ["c1"], name="conv1",
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", f"{p}w2", f"{p}b2"], ["c2"], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", f"{p}fc_w", f"{p}fc_b"], ["logits"], name="fc",
                         transB=1),
    ]


def _conv_net_weights(seed: int = RNG_SEED) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"w1": _f32(rng, (16, 3, 3, 3)), "b1": _f32(rng, (16,), 0.1),
            "w2": _f32(rng, (16, 16, 1, 1)), "b2": _f32(rng, (16,), 0.1),
            "fc_w": _f32(rng, (10, 16)), "fc_b": _f32(rng, (10,), 0.1)}


def conv_net(batch_dim="N", opset: int = 13, ir_version: int = 8,
             inits_as_inputs: bool = False, constant_nodes: bool = False) -> onnx.ModelProto:
    """The small conv net with a choice of batch dim, opset, IR version and weight storage."""
    weights = _conv_net_weights()
    nodes = _conv_net_nodes()
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    if constant_nodes:  # weights held by Constant nodes (older exporters, tf2onnx)
        nodes = [helper.make_node("Constant", [], [t.name], name=f"const_{t.name}", value=t)
                 for t in inits] + nodes
        inits = []
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch_dim, 3, 8, 8])]
    if inits_as_inputs:  # IR 3: every initializer is also a graph input
        inputs += [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape)
                   for k, v in weights.items()]
    graph = helper.make_graph(
        nodes, "conv_net", inputs,
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch_dim, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model


def conv_net_bn_opset9() -> onnx.ModelProto:
    """Opset 9 conv net with a BatchNormalization after the first conv (folded on load)."""
    model = conv_net(opset=9, ir_version=4)
    rng = np.random.default_rng(3)
    g = model.graph
    bn = {"bn_g": rng.uniform(0.5, 1.5, 16), "bn_b": rng.normal(0, 0.1, 16),
          "bn_m": rng.normal(0, 0.1, 16), "bn_v": rng.uniform(0.5, 2.0, 16)}
    g.initializer.extend(numpy_helper.from_array(v.astype(np.float32), k) for k, v in bn.items())
    nodes = list(g.node)
    nodes[1].input[0] = "bn_out"
    nodes.insert(1, helper.make_node("BatchNormalization", ["c1", *bn], ["bn_out"], name="bn"))
    del g.node[:]
    g.node.extend(nodes)
    return model


def images(n: int = 16, seed: int = 1) -> np.ndarray:
    """(n, 3, 8, 8) float32 samples for ``conv_net``."""
    return np.random.default_rng(seed).normal(0, 1, (n, 3, 8, 8)).astype(np.float32)


def state_model(layers: int = 2, hidden: int = 16) -> onnx.ModelProto:
    """Inputs ``x (batch, hidden)`` and ``h0 (layers, batch, hidden)`` (batch on axis 1).

    ``y = MatMul(x, Wx) + ReduceSum(MatMul(h0, Wh), axis 0)`` — like one recurrent step.
    """
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array(_f32(rng, (hidden, hidden)), "wx"),
             numpy_helper.from_array(_f32(rng, (hidden, hidden)), "wh"),
             numpy_helper.from_array(np.array([0], np.int64), "axis0")]
    nodes = [
        helper.make_node("MatMul", ["x", "wx"], ["xw"], name="mm_x"),
        helper.make_node("MatMul", ["h0", "wh"], ["hw"], name="mm_h"),
        helper.make_node("ReduceSum", ["hw", "axis0"], ["hs"], name="sum_layers", keepdims=0),
        helper.make_node("Add", ["xw", "hs"], ["y"], name="add"),
        helper.make_node("Relu", ["y"], ["out"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes, "state",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", hidden]),
         helper.make_tensor_value_info("h0", TensorProto.FLOAT, [layers, "batch", hidden])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", hidden])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def state_data(n: int = 12, layers: int = 2, hidden: int = 16) -> dict[str, np.ndarray]:
    """Samples for ``state_model``: x on axis 0, h0 on axis 1."""
    rng = np.random.default_rng(6)
    return {"x": rng.normal(0, 1, (n, hidden)).astype(np.float32),
            "h0": rng.normal(0, 1, (layers, n, hidden)).astype(np.float32)}


def _branch(name: str, seed: int) -> onnx.GraphProto:
    """A subgraph: Conv 1×1 (weights in the branch) → Relu over the outer tensor ``r1``."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(_f32(rng, (16, 16, 1, 1)), f"{name}_w")
    nodes = [helper.make_node("Conv", ["r1", f"{name}_w"], [f"{name}_c"], name=f"{name}_conv"),
             helper.make_node("Relu", [f"{name}_c"], [f"{name}_out"], name=f"{name}_relu")]
    return helper.make_graph(
        nodes, name, [],
        [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, None)], [w])


def if_model() -> onnx.ModelProto:
    """conv1 → Relu → If(mean(input) > 0) {Conv → Relu} else {Conv → Relu} → conv2 → … → fc."""
    model = conv_net()
    g = model.graph
    nodes = list(g.node)
    cond = [helper.make_node("ReduceMean", ["input"], ["mean"], name="mean", keepdims=0),
            helper.make_node("Greater", ["mean", "zero"], ["cond"], name="gt"),
            helper.make_node("If", ["cond"], ["branch_out"], name="if",
                             then_branch=_branch("then", 11), else_branch=_branch("else", 12))]
    nodes[2].input[0] = "branch_out"  # conv2 reads the If output
    g.initializer.append(numpy_helper.from_array(np.array(0, np.float32), "zero"))
    del g.node[:]
    g.node.extend(nodes[:2] + cond + nodes[2:])
    return model


def loop_model(trips: int = 3) -> onnx.ModelProto:
    """conv1 → Relu → … → Gemm, then a Loop applying ``v ← Tanh(MatMul(v, W))`` ``trips`` times."""
    model = conv_net()
    g = model.graph
    rng = np.random.default_rng(9)
    body = helper.make_graph(
        [helper.make_node("MatMul", ["v_in", "loop_w"], ["v_mm"], name="loop_matmul"),
         helper.make_node("Tanh", ["v_mm"], ["v_out"], name="loop_tanh"),
         helper.make_node("Identity", ["cond_in"], ["cond_out"], name="loop_cond")],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(_f32(rng, (10, 10)), "loop_w")])
    g.initializer.extend([numpy_helper.from_array(np.array(trips, np.int64), "trips"),
                          numpy_helper.from_array(np.array(True), "true")])
    g.node.append(helper.make_node("Loop", ["trips", "true", "logits"], ["looped"], name="loop",
                                   body=body))
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("looped", TensorProto.FLOAT, ["N", 10]))
    return model


def scan_model() -> onnx.ModelProto:
    """conv net → logits (N, 10), then a Scan over the batch rows: ``s ← s + MatMul(row, W)``."""
    model = conv_net()
    g = model.graph
    rng = np.random.default_rng(13)
    body = helper.make_graph(
        [helper.make_node("Unsqueeze", ["row", "ax0"], ["row2"], name="scan_unsqueeze"),
         helper.make_node("MatMul", ["row2", "scan_w"], ["mm"], name="scan_matmul"),
         helper.make_node("Add", ["s_in", "mm"], ["s_out"], name="scan_add"),
         helper.make_node("Identity", ["mm"], ["y_row"], name="scan_y")],
        "scan_body",
        [helper.make_tensor_value_info("s_in", TensorProto.FLOAT, [1, 10]),
         helper.make_tensor_value_info("row", TensorProto.FLOAT, [10])],
        [helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [1, 10]),
         helper.make_tensor_value_info("y_row", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(_f32(rng, (10, 10)), "scan_w"),
         numpy_helper.from_array(np.array([0], np.int64), "ax0")])
    g.initializer.append(numpy_helper.from_array(np.zeros((1, 10), np.float32), "s0"))
    g.node.append(helper.make_node("Scan", ["s0", "logits"], ["s_final", "scanned"],
                                   name="scan", body=body, num_scan_inputs=1))
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info("s_final", TensorProto.FLOAT, [1, 10]),
                     helper.make_tensor_value_info("scanned", TensorProto.FLOAT, ["N", 1, 10])])
    return model
