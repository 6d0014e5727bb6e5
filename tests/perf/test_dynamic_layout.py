"""The w8_dynamic layout (blocked per-row QuantizeLinear + com.microsoft MatMulIntegerToFloat):
the interpreter's kernels against onnxruntime bit for bit, and whole models against
onnxruntime (0 LSB) and an exact per-row integer oracle."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import edgequant as eq
from edgequant.interp import Interpreter
from edgequant.runtime.sessions import ort_session


def _model(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21),
                                               helper.make_opsetid("com.microsoft", 1)],
                             ir_version=10)


def _ort(model, feeds, optimization="disable"):
    return ort_session(model.SerializeToString(), optimization=optimization).run(None, feeds)


def _ref(model, feeds):
    interp = Interpreter(model)
    out = interp.run(feeds)
    return [out[n] for n in interp.output_names]


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matmul_integer_to_float_is_bit_exact_vs_onnxruntime(seed, bias):
    rng = np.random.default_rng(seed)
    k, n = int(rng.integers(1, 300)), int(rng.integers(1, 40))
    a = rng.integers(0, 256, (2, 7, k)).astype(np.uint8)  # (B, M, K) uint8
    inits = [numpy_helper.from_array(rng.integers(-127, 128, (k, n)).astype(np.int8), "b"),
             numpy_helper.from_array(np.float32(rng.uniform(0.5, 2)), "sa"),
             numpy_helper.from_array(rng.uniform(1e-4, 1e-2, n).astype(np.float32), "sb"),
             numpy_helper.from_array(np.uint8(rng.integers(0, 256)), "za"),
             numpy_helper.from_array(rng.normal(size=n).astype(np.float32), "bias")]
    ins = ["a", "b", "sa", "sb", "za", "", "bias"] if bias else ["a", "b", "sa", "sb", "za"]
    node = helper.make_node("MatMulIntegerToFloat", ins, ["y"], domain="com.microsoft")
    m = _model([node], [helper.make_tensor_value_info("a", onnx.TensorProto.UINT8, a.shape)],
               [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], inits)
    np.testing.assert_array_equal(_ref(m, {"a": a})[0], _ort(m, {"a": a})[0])


def test_matmul_integer_to_float_rejects_per_row_a_scale():
    m = _model([helper.make_node("MatMulIntegerToFloat", ["a", "b", "sa", "sb"], ["y"],
                                 domain="com.microsoft", name="mi2f")],
               [helper.make_tensor_value_info("a", onnx.TensorProto.UINT8, [3, 4])],
               [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
               [numpy_helper.from_array(np.ones((4, 2), np.int8), "b"),
                numpy_helper.from_array(np.ones(4, np.float32), "sa"),
                numpy_helper.from_array(np.ones(2, np.float32), "sb")])
    with pytest.raises(ValueError, match=r"mi2f.*a_scale"):
        _ref(m, {"a": np.ones((3, 4), np.uint8)})


def test_row_blocked_quantize_linear_is_bit_exact_vs_onnxruntime():
    """QuantizeLinear with a run-time (B, S, 1) scale and zero point, one block per row."""
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(3, 9, 40)) * rng.uniform(0.01, 50, (3, 9, 1))).astype(np.float32)
    s = (np.abs(x).max(-1, keepdims=True) / np.float32(127)).astype(np.float32)
    zp = np.full(s.shape, 128, np.uint8)
    m = _model([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=-1,
                                 block_size=40)],
               [helper.make_tensor_value_info(k, v, sh) for k, v, sh in
                (("x", onnx.TensorProto.FLOAT, x.shape), ("s", onnx.TensorProto.FLOAT, s.shape),
                 ("z", onnx.TensorProto.UINT8, s.shape))],
               [helper.make_tensor_value_info("y", onnx.TensorProto.UINT8, None)])
    feeds = {"x": x, "s": s, "z": zp}
    ours, theirs = _ref(m, feeds)[0], _ort(m, feeds)[0]
    np.testing.assert_array_equal(ours, theirs)
    assert ours.min() >= 1 and ours.max() <= 255  # symmetric: ±127 around 128


def mlp(k=64, h=96, n=10, seed=0):
    """x (N, T, K) → MatMul → Relu → Gemm-like MatMul + bias; Q/K/V-style shared input."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.2, (k, h)).astype(np.float32)
    w2 = rng.normal(0, 0.2, (k, h)).astype(np.float32)
    w3 = rng.normal(0, 0.2, (h, n)).astype(np.float32)
    b3 = rng.normal(0, 0.1, n).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h1"], name="mm1"),
             helper.make_node("MatMul", ["x", "w2"], ["h2"], name="mm2"),
             helper.make_node("Mul", ["h1", "h2"], ["h"], name="gate"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w3"], ["y0"], name="mm3"),
             helper.make_node("Add", ["y0", "b3"], ["y"], name="bias")]
    return _model(nodes, [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", "T", k])],
                  [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", "T", n])],
                  [numpy_helper.from_array(v, name) for name, v in
                   (("w1", w1), ("w2", w2), ("w3", w3), ("b3", b3))])


def test_w8_dynamic_layout_emits_fused_kernels_and_shares_row_quantization():
    qm = eq.quantize(mlp(), "w8_dynamic")
    ops = [n.op_type for n in qm.model.graph.node]
    assert ops.count("MatMulIntegerToFloat") == 3
    assert ops.count("QuantizeLinear") == 2  # x quantized once for mm1 and mm2, r once
    assert "MatMulInteger" not in ops and "Round" not in ops


def test_w8_dynamic_interpreter_matches_onnxruntime_exactly():
    qm = eq.quantize(mlp(), "w8_dynamic")
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 6, 64)).astype(np.float32)
    x[:, 0] *= 40  # an outlier token
    feeds = {"x": x}
    np.testing.assert_array_equal(_ref(qm.model, feeds)[0], _ort(qm.model, feeds)[0])
    rep = eq.verify(qm.model, feeds)
    assert rep.max_lsb == 0


def test_w8_dynamic_tracks_float_closely():
    model = mlp()
    x = np.random.default_rng(6).normal(size=(4, 8, 64)).astype(np.float32)
    ref = _ort(model, {"x": x})[0]
    ours = _ort(eq.quantize(model, "w8_dynamic").model, {"x": x}, "all")[0]
    cos = float(np.sum(ref * ours) / np.linalg.norm(ref) / np.linalg.norm(ours))
    assert cos >= 0.999


#: Issue 12's accuracy bar for the fast layout: mean cosine to fp32 over 200 docstrings.
MINILM_MIN_MEAN_COSINE = 0.997


@pytest.mark.slow
def test_minilm_fast_layout_keeps_per_row_accuracy(tmp_path):
    pytest.importorskip("sentence_transformers")
    from edgequant.analysis.metrics import cosine
    from edgequant_zoo.corpus import docstring_corpus
    from edgequant_zoo.minilm import export_minilm, tokenize

    path = export_minilm(tmp_path / "minilm.onnx")
    feeds = tokenize(docstring_corpus(200), 128)
    qm = eq.quantize(path, "w8_dynamic")
    assert "MatMulIntegerToFloat" in {n.op_type for n in qm.model.graph.node}

    def embed(model):
        s = ort_session(model)
        names = [i.name for i in s.get_inputs()]
        return np.concatenate([s.run(None, {k: feeds[k][i:i + 25] for k in names})[0]
                               for i in range(0, 200, 25)])

    assert cosine(embed(path), embed(qm.model)) >= MINILM_MIN_MEAN_COSINE
