"""w8_dynamic: per-row activation quantization, checked against a numpy oracle built from
edgequant's primitives, and against onnxruntime's per-tensor dynamic quantizer on outliers."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from float_models import mlp_softmax
from onnx import helper, numpy_helper

import edgequant as eq
from edgequant.analysis.metrics import sqnr_db
from edgequant.primitives import quantize
from edgequant.qparams import QParams, qparams_for
from edgequant.spec import PerChannel, PerTensor, QType, QuantSpec

#: float32 products in a different order than the oracle: relative 1e-5 of the output.
DYNAMIC_RTOL = 1e-5


def one_matmul(k=48, n=24, seed=0):
    w = np.random.default_rng(seed).normal(0, 0.2, (k, n)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "mm",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", "T", k])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", "T", n])],
        [numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m, w


def oracle(x, w):
    """Per-row symmetric int8 activations × per-column int8 weights, integer GEMM, rescale."""
    wq_p = qparams_for(w, QuantSpec(QType(8, True, True), PerChannel(1), symmetric=True))
    wq = quantize(w, wq_p).astype(np.int64)  # (K, N)
    out = np.empty((*x.shape[:-1], w.shape[1]), np.float64)  # (..., N)
    for idx in np.ndindex(x.shape[:-1]):
        row = x[idx]
        s = np.float32(max(np.abs(row).max(), 1e-12)) / np.float32(127)
        qp = QParams(np.float32(s), np.int8(0), QType(8, True), PerTensor())
        acc = quantize(row, qp).astype(np.int64) @ wq  # exact integer dot products
        out[idx] = acc.astype(np.float32) * np.float32(s) * wq_p.scale
    return out.astype(np.float32)


def run(model, x):
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


def test_per_row_matches_integer_oracle():
    model, w = one_matmul()
    x = np.random.default_rng(1).normal(size=(3, 5, 48)).astype(np.float32)
    qm = eq.quantize(model, "w8_dynamic")
    assert "MatMulIntegerToFloat" in [n.op_type for n in qm.model.graph.node]
    np.testing.assert_allclose(run(qm.model, x), oracle(x, w), rtol=DYNAMIC_RTOL, atol=1e-6)


def test_zero_rows_give_zero_not_nan():
    model, _ = one_matmul()
    x = np.zeros((1, 2, 48), np.float32)
    y = run(eq.quantize(model, "w8_dynamic").model, x)
    assert np.all(y == 0)


def test_per_row_beats_per_tensor_on_outlier_rows(tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model, _ = one_matmul()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 16, 48)).astype(np.float32)
    x[:, 0] *= 60.0  # one outlier token per sequence, as in transformers
    ref = run(model, x)
    ours = run(eq.quantize(model, "w8_dynamic").model, x)
    onnx.save(model, tmp_path / "f.onnx")
    quantize_dynamic(tmp_path / "f.onnx", tmp_path / "d.onnx", weight_type=QuantType.QInt8,
                     per_channel=True)
    theirs = run(onnx.load(tmp_path / "d.onnx"), x)
    # the non-outlier tokens are where a per-tensor scale loses precision
    assert sqnr_db(ref[:, 1:], ours[:, 1:]) > sqnr_db(ref[:, 1:], theirs[:, 1:]) + 10


def test_shared_input_is_quantized_once():
    model = mlp_softmax()
    qm = eq.quantize(model, "w8_dynamic")
    ops = [n.op_type for n in qm.model.graph.node]
    assert ops.count("MatMulIntegerToFloat") == 2 and ops.count("ReduceMax") == 2
