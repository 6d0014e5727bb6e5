"""Ops real exported models use, under the static planner, checked against onnxruntime.

For each op the planner quantizes, the oracle is onnxruntime itself: its optimized QDQ graph
(``SessionOptions.optimized_model_filepath``) must run the op on integers (no
DequantizeLinear feeding it), the quantized model must stay close to the float one (cosine),
and the lowered QOperator model must match the interpreter bit for bit (``verify``, 0 LSB).
For each op it keeps float, a hand-written ``DQ → op → Q`` proves onnxruntime does not fuse
it either, so quantizing it would only add error.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh
from onnx.reference import ReferenceEvaluator

import edgequant as eq
from edgequant.export.qop.lower import lower
from edgequant.graph.contract import NO_INTEGER_KERNEL
from edgequant.graph.passes.fold import prepare_float

#: Cosine between the w8a8 model's and the float model's outputs (8-bit, a few layers).
MIN_COSINE = 0.99
N = 16


def _model(nodes, inits, shape=(N, 4, 8, 8), opset=21) -> onnx.ModelProto:
    g = h.make_graph(nodes, "m", [h.make_tensor_value_info("x", TensorProto.FLOAT, ["n", *shape[1:]])],
                     [h.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                     [nh.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 10
    return onnx.shape_inference.infer_shapes(m, strict_mode=True)


def _conv_w(rng, o, i, k=3):
    return {"w": rng.normal(0, 0.3, (o, i, k, k)).astype(np.float32),
            "b": rng.normal(0, 0.1, o).astype(np.float32)}


def _between_convs(op_nodes, extra, rng, c=4, relu=True) -> onnx.ModelProto:
    """x → Conv [→ Relu] → <op nodes reading 'a', writing 'm'> → Conv → y."""
    w1, w2 = _conv_w(rng, c, c), _conv_w(rng, c, c)
    inits = {"w1": w1["w"], "b1": w1["b"], "w2": w2["w"], "b2": w2["b"], **extra}
    nodes = [h.make_node("Conv", ["x", "w1", "b1"], ["c" if relu else "a"], name="conv1",
                         pads=[1] * 4),
             *([h.make_node("Relu", ["c"], ["a"], name="relu1")] if relu else []), *op_nodes,
             h.make_node("Conv", ["m", "w2", "b2"], ["y"], name="conv2", pads=[1] * 4)]
    return _model(nodes, inits)


def _x(seed=0, shape=(N, 4, 8, 8)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def _run(model: onnx.ModelProto, x: np.ndarray, optimize=True) -> np.ndarray:
    opts = ort.SessionOptions()
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def _optimized(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxruntime's optimized graph (basic + extended: the QDQ fusions, no layout changes)."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "opt.onnx")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = path
        ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        return onnx.load(path)


def _reads_dequantized(model: onnx.ModelProto, op_type: str) -> list[bool]:
    """For each ``op_type`` node: does its first input come from a DequantizeLinear?"""
    prod = {o: n for n in model.graph.node for o in n.output}
    return [prod.get(n.input[0]) is not None and prod[n.input[0]].op_type == "DequantizeLinear"
            for n in model.graph.node if n.op_type == op_type]


def _cos(a, b) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _decision(qm, op_type):
    return [d for d in qm.plan.nodes if d.op_type == op_type]


def _quantize_and_check(model, op_type, kernel_op):
    """w8a8: the op is quantized, onnxruntime runs ``kernel_op`` on integers, cosine, 0 LSB."""
    x = _x()
    qm = eq.quantize(model, "w8a8", {"x": x})
    ds = _decision(qm, op_type)
    assert ds and all(d.action == "quantize" for d in ds), ds
    opt = _optimized(qm.model)
    assert kernel_op in [n.op_type for n in opt.graph.node]
    assert _reads_dequantized(opt, kernel_op) and not any(_reads_dequantized(opt, kernel_op))
    assert _cos(_run(qm.model, x), _run(model, x)) > MIN_COSINE
    qop = lower(qm.model)
    assert kernel_op in [n.op_type for n in qop.model.graph.node]
    assert not qop.float_nodes, qop.float_nodes
    rep = eq.verify(qop.model, {"x": x})
    assert rep.ok(max_lsb=0), rep
    return qm, qop


# -- quantized: share ops ---------------------------------------------------------------------
@pytest.mark.parametrize("nearest_mode", ["round_prefer_floor", "floor"])
def test_nearest_resize_shares_qparams_and_runs_on_integers(nearest_mode):
    rng = np.random.default_rng(1)
    nodes = [h.make_node("Resize", ["a", "", "scales"], ["m"], name="up", mode="nearest",
                         nearest_mode=nearest_mode)]
    m = _between_convs(nodes, {"scales": np.array([1, 1, 2, 2], np.float32)}, rng)
    qm, qop = _quantize_and_check(m, "Resize", "Resize")
    assert qm.plan.tensors["m"].action == "share"
    r = next(n for n in qop.model.graph.node if n.op_type == "Resize")
    types = {vi.name: vi.type.tensor_type.elem_type
             for vi in onnx.shape_inference.infer_shapes(qop.model).graph.value_info}
    assert types[r.input[0]] == TensorProto.UINT8  # the integer tensor, not a DQ output


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad_shares_qparams_and_matches_the_qdq_model_exactly(mode):
    rng = np.random.default_rng(2)
    # the Transpose keeps a constant Pad from folding into the next Conv's own padding
    nodes = [h.make_node("Pad", ["a", "pads"], ["p"], name="pad", mode=mode),
             h.make_node("Transpose", ["p"], ["m"], name="swap_hw", perm=[0, 1, 3, 2])]
    # no Relu: the padded tensor's zero point is not 0, so the fill must be mapped to it
    m = _between_convs(nodes, {"pads": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)}, rng,
                       relu=False)
    x = _x(3)
    qm = eq.quantize(m, "w8a8", {"x": x})
    (d,) = _decision(qm, "Pad")
    assert d.action == "quantize"
    assert qm.plan.tensors["p"].action == "share"
    qop = lower(qm.model)
    pads = [n for n in qop.model.graph.node if n.op_type == "Pad"]
    assert len(pads) == 1 and not qop.float_nodes
    # onnxruntime's integer Pad (zero point as the fill) == its DQ → float Pad → Q in the QDQ
    # model (whose convs are the same fused QLinearConv), bit for bit
    assert np.array_equal(_run(qop.model, x), _run(qm.model, x))
    assert eq.verify(qop.model, {"x": x}).ok(max_lsb=0)
    assert _cos(_run(qm.model, x), _run(m, x)) > MIN_COSINE


def test_pad_with_a_nonzero_fill_stays_float_with_the_reason():
    rng = np.random.default_rng(4)
    nodes = [h.make_node("Pad", ["a", "pads", "v"], ["m"], name="pad", mode="constant")]
    m = _between_convs(nodes, {"pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
                               "v": np.array(0.5, np.float32)}, rng)
    qm = eq.quantize(m, "w8a8", {"x": _x()})
    (d,) = _decision(qm, "Pad")
    assert d.action == "float" and "0.5" in d.reason


def test_linear_resize_stays_float_because_onnxruntime_does_not_fuse_it():
    rng = np.random.default_rng(5)
    nodes = [h.make_node("Resize", ["a", "", "scales"], ["m"], name="up", mode="linear")]
    m = _between_convs(nodes, {"scales": np.array([1, 1, 2, 2], np.float32)}, rng)
    qm = eq.quantize(m, "w8a8", {"x": _x()})
    (d,) = _decision(qm, "Resize")
    assert d.action == "float" and "nearest" in d.reason
    assert all(_reads_dequantized(_optimized(_hand_qdq("Resize", ["", "scales"], {
        "scales": np.array([1, 1, 2, 2], np.float32)}, mode="linear")), "Resize"))


# -- rewritten to Add / Mul in float preparation ---------------------------------------------
def test_sum_becomes_an_add_chain_of_qlinear_adds():
    rng = np.random.default_rng(6)
    w3 = _conv_w(rng, 4, 4)
    nodes = [h.make_node("Conv", ["a", "w3", "b3"], ["c3"], name="conv3", pads=[1] * 4),
             h.make_node("Sum", ["a", "c3", "c"], ["m"], name="sum")]
    m = _between_convs(nodes, {"w3": w3["w"], "b3": w3["b"]}, rng)
    prepared = prepare_float(onnx.ModelProto.FromString(m.SerializeToString()))
    assert [n.op_type for n in prepared.graph.node].count("Add") == 2
    assert "Sum" not in [n.op_type for n in prepared.graph.node]
    x = _x(7)
    # the same sum, up to float32 rounding of the association
    assert np.allclose(_run(prepared, x), _run(m, x), rtol=1e-6, atol=1e-6)
    _, qop = _quantize_and_check(m, "Add", "QLinearAdd")
    assert [n.op_type for n in qop.model.graph.node].count("QLinearAdd") == 2


def test_div_by_a_constant_becomes_a_qlinear_mul():
    rng = np.random.default_rng(8)
    nodes = [h.make_node("Div", ["a", "six"], ["m"], name="div")]
    m = _between_convs(nodes, {"six": np.array(6.0, np.float32)}, rng)
    x = _x(9)
    prepared = prepare_float(onnx.ModelProto.FromString(m.SerializeToString()))
    assert "Div" not in [n.op_type for n in prepared.graph.node]
    ref, got = _run(m, x), _run(prepared, x)
    assert np.allclose(got, ref, rtol=1e-6, atol=1e-6)  # x·(1/6) vs x/6: a float32 ulp apart
    _quantize_and_check(m, "Mul", "QLinearMul")


def test_div_by_a_runtime_tensor_stays_float_with_the_reason():
    rng = np.random.default_rng(10)
    nodes = [h.make_node("Div", ["a", "c"], ["m"], name="div")]
    m = _between_convs(nodes, {}, rng)
    qm = eq.quantize(m, "w8a8", {"x": _x()})
    (d,) = _decision(qm, "Div")
    assert d.action == "float" and d.reason == NO_INTEGER_KERNEL


def test_lone_batchnorm_becomes_mul_add_with_the_same_float_outputs():
    rng = np.random.default_rng(11)
    c = 4
    bn = {"g": rng.uniform(0.5, 2, c), "be": rng.normal(0, 0.2, c), "mu": rng.normal(0, 0.2, c),
          "var": rng.uniform(0.2, 2, c)}
    nodes = [h.make_node("BatchNormalization", ["a", "g", "be", "mu", "var"], ["m"], name="bn")]
    m = _between_convs(nodes, {k: v.astype(np.float32) for k, v in bn.items()}, rng)
    prepared = prepare_float(onnx.ModelProto.FromString(m.SerializeToString()))
    ops = [n.op_type for n in prepared.graph.node]
    assert "BatchNormalization" not in ops and ops.count("Mul") == 1
    x = _x(12)
    ref = ReferenceEvaluator(m).run(None, {"x": x})[0]  # independent float oracle
    assert np.allclose(_run(prepared, x), ref, rtol=1e-5, atol=1e-5)
    _quantize_and_check(m, "Mul", "QLinearMul")


# -- float, with the reason: onnxruntime has no integer kernel ------------------------------
def _hand_qdq(op, extra_inputs, inits, **attrs) -> onnx.ModelProto:
    """x(uint8) → DQ → op → Q: what onnxruntime does with the op if it were quantized."""
    nodes = [h.make_node("DequantizeLinear", ["x", "s", "z"], ["d"]),
             h.make_node(op, ["d", *extra_inputs], ["f"], **attrs),
             h.make_node("QuantizeLinear", ["f", "s", "z"], ["y"])]
    inits = {"s": np.array(0.05, np.float32), "z": np.array(128, np.uint8), **inits}
    g = h.make_graph(nodes, "m", [h.make_tensor_value_info("x", TensorProto.UINT8, [1, 4, 8, 8])],
                     [h.make_tensor_value_info("y", TensorProto.UINT8, None)],
                     [nh.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 21)])
    m.ir_version = 10
    return m


@pytest.mark.parametrize("op,attrs", [("HardSigmoid", {"alpha": 0.2, "beta": 0.5}),
                                      ("HardSwish", {}), ("LRN", {"size": 3})])
def test_ops_without_an_onnxruntime_integer_kernel_stay_float(op, attrs):
    assert all(_reads_dequantized(_optimized(_hand_qdq(op, [], {}, **attrs)), op)) or \
        op == "HardSwish"  # onnxruntime splits HardSwish into HardSigmoid · x, on floats
    if op == "HardSwish":
        opt = _optimized(_hand_qdq(op, [], {}))
        assert "DequantizeLinear" in [n.op_type for n in opt.graph.node]
        assert not any(n.op_type.startswith("QLinear") for n in opt.graph.node)
    rng = np.random.default_rng(13)
    m = _between_convs([h.make_node(op, ["a"], ["m"], name="op", **attrs)], {}, rng)
    qm = eq.quantize(m, "w8a8", {"x": _x()})
    (d,) = _decision(qm, op)
    assert d.action == "float" and d.reason == NO_INTEGER_KERNEL
    assert _cos(_run(qm.model, _x(14)), _run(m, _x(14))) > MIN_COSINE
