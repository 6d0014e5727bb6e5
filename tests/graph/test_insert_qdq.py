"""insert_qdq's steps one at a time on a hand-made plan: what each adds, where, and for whom.

Model: ``x → conv_a (uint8) → a``, ``a → conv_b (int16 rule) → b``; plan from ``resolve``.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgequant.graph.info import GraphInfo
from edgequant.graph.passes.insert_qdq import (
    Edits,
    activation_edits,
    apply_edits,
    bias_edits,
    constant_edits,
    insert_qdq,
    seam_edits,
)
from edgequant.qparams import QParams
from edgequant.recipes import Rule, get_recipe, resolve
from edgequant.recipes.builtin import activation_spec
from edgequant.spec import PerTensor, QType

U8 = QType(8, False)
I16 = QType(16, True)


def chain() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (4, 2, 3, 3)).astype(np.float32), "wa"),
             numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "ba"),
             numpy_helper.from_array(rng.normal(0, 0.3, (4, 4, 3, 3)).astype(np.float32), "wb"),
             numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "bb")]
    nodes = [helper.make_node("Conv", ["x", "wa", "ba"], ["a"], name="conv_a", pads=[1] * 4),
             helper.make_node("Conv", ["a", "wb", "bb"], ["y"], name="conv_b", pads=[1] * 4)]
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                         ["N", 2, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 6, 6])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m


def plan_and_qparams():
    model = chain()
    rec = get_recipe("w8a8").with_rules(Rule(nodes=("conv_b",), activations=activation_spec(16)))
    plan = resolve(rec, model)
    act = {"x": QParams(np.float32(1 / 255), np.uint8(0), U8, PerTensor()),
           "a": QParams(np.float32(0.02), np.uint8(100), U8, PerTensor()),
           "a@conv_b": QParams(np.float32(1e-4), np.int16(0), I16, PerTensor()),
           "y": QParams(np.float32(1e-3), np.int16(0), I16, PerTensor())}
    return model, plan, act


def test_activation_edits_put_qdq_after_the_producer_and_rename_consumers():
    model, plan, act = plan_and_qparams()
    e = Edits()
    activation_edits(plan, GraphInfo.build(model), act, "float", e)
    assert [n.op_type for n in e.after["a"]] == ["QuantizeLinear", "DequantizeLinear"]
    assert e.rename_in == {"x": "x_dequantized", "a": "a_dequantized"}
    assert e.rename_out == {"y": "y_float"}  # graph output keeps its name on the DQ
    assert "a@conv_b" not in e.used  # seams are seam_edits' job


def test_seam_edits_read_the_first_dq_and_rename_only_their_consumer():
    model, plan, act = plan_and_qparams()
    info = GraphInfo.build(model)
    e = Edits()
    activation_edits(plan, info, act, "float", e)
    seam_edits(plan, info, act, e)
    q, dq = e.after["a"][2:]
    assert (q.op_type, q.input[0], dq.output[0]) == \
        ("QuantizeLinear", "a_dequantized", "a_for_conv_b_dequantized")
    assert e.rename_for == {("conv_b", "a"): "a_for_conv_b_dequantized"}
    assert e.used["a@conv_b"] is act["a@conv_b"]


def test_bias_scale_uses_the_precision_its_conv_reads():
    model, plan, act = plan_and_qparams()
    info = GraphInfo.build(model)
    e = Edits()
    activation_edits(plan, info, act, "float", e)
    seam_edits(plan, info, act, e)
    constant_edits(plan, info, act, {}, e)
    bias_edits(plan, info, e)
    w_scale = e.used["wb"].scale.astype(np.float32)  # (4,) per output channel
    np.testing.assert_array_equal(e.used["bb"].scale, np.float32(1e-4) * w_scale)
    apply_edits(model, e)
    onnx.checker.check_model(model)


def test_insert_qdq_model_runs_and_keeps_the_given_qparams():
    model, plan, act = plan_and_qparams()
    out, used, notes = insert_qdq(model, plan, act)
    assert notes == [] and set(used) == {"x", "a", "a@conv_b", "y", "wa", "wb", "ba", "bb"}
    inits = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    assert inits["a_for_conv_b_scale"] == np.float32(1e-4)
    assert inits["a_for_conv_b_zero_point"].dtype == np.int16
    x = np.random.default_rng(1).random((2, 2, 6, 6), dtype=np.float32)
    sess = ort.InferenceSession(out.SerializeToString(), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": x})[0]
    ref = ort.InferenceSession(chain().SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    # y is an int16 grid of step 1e-3 saturating at ±32.767; a, x on 8-bit grids
    assert y.shape == ref.shape and np.max(np.abs(y - ref)) < 0.1 * np.max(np.abs(ref))
