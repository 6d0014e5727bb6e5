"""``resolve(..., forced=...)``: the plan extension QAT convert relies on, on hand-built graphs.

Oracles: onnxruntime runs the QDQ model the one writer (``insert_qdq``) makes from the plan;
numpy applies ONNX's quantize-dequantize formula to the float value the graph computed.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgequant.graph.passes.insert_qdq import insert_qdq
from edgequant.qparams import QParams
from edgequant.recipes import Recipe, Rule, get_recipe, resolve
from edgequant.recipes.plan import TensorDecision
from edgequant.spec import PerTensor, QType

W8A8 = get_recipe("w8a8")
SPEC = W8A8.activations
#: The head (a Sigmoid) is a float region at the graph end, like a QAT float region.
HEAD_FLOAT = Recipe("head_float", "static", weights=W8A8.weights, activations=SPEC,
                    rules=(Rule(nodes=("head",), action="float"),))


def conv_relu_pool_sigmoid() -> onnx.ModelProto:
    """x (N,2,5,5) → Conv 3×3 → c → Relu → r → MaxPool 2 → p → Sigmoid (``head``) → y."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (3, 2, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(0, 0.1, (3,)).astype(np.float32), "b")]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Sigmoid", ["p"], ["y"], name="head"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 2, 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return model


def _qp(scale: float, zero_point: int) -> QParams:
    return QParams(np.asarray(scale, np.float32), np.asarray(zero_point, np.uint8),
                   QType(8, False), PerTensor())


def _quantize(t: str) -> TensorDecision:
    return TensorDecision(t, "activation", "quantize", SPEC, "caller", "trained")


def _float(t: str) -> TensorDecision:
    return TensorDecision(t, "activation", "float", None, "caller", "float in training")


def test_forced_quantize_puts_a_float_node_output_at_the_graph_end_on_its_grid():
    model = conv_relu_pool_sigmoid()
    assert "y" not in resolve(HEAD_FLOAT, model).tensors  # the gap: no quantized node writes y
    plan = resolve(HEAD_FLOAT, model, forced={"y": _quantize("y")})
    assert plan.tensors["y"].action == "quantize" and plan.tensors["y"].rule == "caller"
    assert {d.node: d.action for d in plan.nodes}["head"] == "float"
    qps = {"x": _qp(0.02, 128), "r": _qp(0.01, 0), "y": _qp(1 / 255, 3)}
    qm, used, notes = insert_qdq(model, plan, act_qparams=qps)
    assert used["y"] is qps["y"] and not notes
    quant = [n for n in qm.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "y_float"]
    assert len(quant) == 1  # the producer's output is renamed, the graph output keeps "y"
    qm.graph.output.append(helper.make_tensor_value_info("y_float", TensorProto.FLOAT, None))
    sess = ort.InferenceSession(qm.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).uniform(-2, 2, (4, 2, 5, 5)).astype(np.float32)
    y, y_float = sess.run(["y", "y_float"], {"x": x})
    s, z = np.float32(1 / 255), 3
    want = (np.clip(np.rint(y_float / s) + z, 0, 255) - z).astype(np.float32) * s  # (4, 3, 2, 2)
    np.testing.assert_array_equal(y, want)


def test_forced_float_is_neither_fused_nor_a_sharing_source():
    model = conv_relu_pool_sigmoid()
    plain = resolve(HEAD_FLOAT, model)
    assert plain.tensors["c"].action == "fused" and plain.tensors["p"].action == "share"
    plan = resolve(HEAD_FLOAT, model, forced={"c": _float("c"), "r": _float("r")})
    assert plan.tensors["c"].action == "float" and plan.tensors["c"].reason == "float in training"
    assert plan.tensors["r"].action == "float"
    assert plan.tensors["p"].action == "quantize"  # not a share of the float r


def test_forced_float_input_leaves_the_bias_float():
    model = conv_relu_pool_sigmoid()
    plan = resolve(HEAD_FLOAT, model, forced={"x": _float("x")})
    qm, used, notes = insert_qdq(model, plan, act_qparams={"r": _qp(0.01, 0)})
    assert "x" not in used and "w" in used and "b" not in used
    assert any("'b'" in n for n in notes)
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] == "x" for n in qm.graph.node)


def test_forced_decisions_are_checked():
    model = conv_relu_pool_sigmoid()
    with pytest.raises(ValueError, match="'nope' is not a float activation"):
        resolve(HEAD_FLOAT, model, forced={"nope": _float("nope")})
    with pytest.raises(ValueError, match="'w' is not a float activation"):
        resolve(HEAD_FLOAT, model, forced={"w": _float("w")})
    with pytest.raises(TypeError, match="'y'"):
        resolve(HEAD_FLOAT, model, forced={"y": _float("c")})
    with pytest.raises(ValueError, match=r"'y'.*'fused'"):
        resolve(HEAD_FLOAT, model, forced={"y": TensorDecision("y", "activation", "fused")})
    with pytest.raises(ValueError, match=r"'y'.*with a spec"):
        resolve(HEAD_FLOAT, model, forced={"y": TensorDecision("y", "activation", "quantize")})
    with pytest.raises(ValueError, match=r"static recipe.*w8_dynamic"):
        resolve(get_recipe("w8_dynamic"), model, forced={"y": _float("y")})
