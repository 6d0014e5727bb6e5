"""LLM.int8()-style decomposition: exact in float, a no-op at threshold ∞, reported."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from tiny_bert import tokens

import edgequant as eq
from edgequant.graph.info import GraphInfo
from edgequant.graph.passes.outlier_split import split_matmuls

#: The split reorders a float sum (K_in + K_out terms): float32 rounding only.
FLOAT_ATOL = 1e-5
#: The outlier threshold used in the quantized test (the tiny model's LayerNorm outputs
#: reach ~12 on the feature whose γ is 12, ~3 elsewhere).
THRESHOLD = 6.0


def run(model, feeds) -> np.ndarray:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, feeds)[0]


def test_split_is_exact_in_float(bert_onnx):
    model = onnx.load(bert_onnx)
    info = GraphInfo.build(model)
    targets = {n.name: np.array([3, 7]) for n in model.graph.node
               if n.op_type == "MatMul" and info.is_constant(n.input[1])}
    feeds = tokens(6, seed=2)
    ref = run(model, feeds)
    splits = split_matmuls(model, targets, info)
    assert len(splits) == len(targets)
    np.testing.assert_allclose(run(model, feeds), ref, atol=FLOAT_ATOL, rtol=0)


def test_infinite_threshold_is_plain_w8a8(bert_onnx):
    cal, feeds = tokens(16, seed=0), tokens(8, seed=3)
    plain = eq.quantize(bert_onnx, "w8a8", cal)
    inf = eq.quantize(bert_onnx, eq.get_recipe("w8a8").with_options(
        outlier_threshold=float("inf")), cal)
    assert inf.report["outliers"]["share"] == 0 and inf.report["outliers"]["layers"] == []
    np.testing.assert_array_equal(run(inf.model, feeds), run(plain.model, feeds))


def test_outliers_float_rest_int8_and_verified(bert_onnx):
    r = eq.get_recipe("w8a8").with_options(outlier_threshold=THRESHOLD)
    qm = eq.quantize(bert_onnx, r, tokens(32, seed=0))
    rep = qm.report["outliers"]
    assert 0 < rep["share"] < 0.1 and rep["layers"]
    producers = {o: n for n in qm.model.graph.node for o in n.output}
    for layer in rep["layers"]:
        by_name = {n.name: n for n in qm.model.graph.node}
        inl = by_name[layer["int8_matmul"]]
        out = by_name[layer["int8_matmul"].replace("_inlier_", "_outlier_")]
        assert producers[inl.input[0]].op_type == "DequantizeLinear"
        assert producers[out.input[0]].op_type == "Gather"  # float features, no Q/DQ
    assert eq.verify(qm.model, tokens(4, seed=5), isolate_integer=True).max_lsb == 0
