"""Static ``w8a8`` on encoders: the FFN-output MatMuls (post-GELU, long-tailed input) keep no
float weights. Default ``dynamic``: int8 weights and per-row int8 activations at run time,
checked against an exact numpy per-row oracle; ``weight_only``: int8 weights, float compute,
checked against ``onnx.reference``; ``float``: the old layout. Plus 0 LSB and QOperator."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from tiny_bert import tokens

import edgequant as eq
from edgequant.graph.contract import tensor_stem
from edgequant.graph.info import GraphInfo
from edgequant.graph.passes.fold import prepare_float
from edgequant.recipes.recipe import Recipe
from edgequant.recipes.transformer import FFN_RULE, ffn_output_matmuls, ffn_rule
from edgequant.runtime.verify import run, run_onnxruntime
from edgequant.spec import PerChannel, QType, QuantSpec

#: onnx.reference vs onnxruntime (graph optimizations off) on the whole float-compute graph:
#: the same ops in float32, summation order differs (a few ulp on values of order 1–10).
FLOAT_ORDER_ATOL = 1e-4


@pytest.fixture(scope="module")
def ffn(bert_onnx):
    """(float weight (K, N), input tensor, output tensor) per FFN-output MatMul name."""
    model = prepare_float(onnx.load(bert_onnx), [])
    info = GraphInfo.build(model)
    by_name = {(n.name or n.output[0]): n for n in model.graph.node}
    out = {}
    for name in ffn_output_matmuls(model, info):
        node = by_name[name]
        out[name] = (info.const_array(node.input[1]).astype(np.float32), node.input[0],
                     node.output[0])
    assert len(out) == 2  # one per layer of the tiny BERT
    return out


@pytest.fixture(scope="module")
def calib():
    return tokens(32, seed=0)


@pytest.fixture(scope="module")
def default(bert_onnx, calib):
    return eq.quantize(bert_onnx, "w8a8", calib)


def _inits(model) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in model.graph.initializer}


def test_ffn_output_is_dynamic_with_exact_int8_weights(default, ffn):
    modes = {d.node: (d.mode, d.rule) for d in default.plan.nodes}
    inits = _inits(default.model)
    floats = [t for t in inits.values() if t.data_type == onnx.TensorProto.FLOAT]
    for name, (w, _, _) in ffn.items():
        assert modes[name] == ("dynamic", FFN_RULE)
        stem = tensor_stem(name)
        q = onnx.numpy_helper.to_array(inits[f"{stem}_W_quantized"])  # (K, N) int8
        s = onnx.numpy_helper.to_array(inits[f"{stem}_W_scale"])  # (N,) float32
        assert q.dtype == np.int8 and q.shape == w.shape
        oracle_s = np.abs(w).max(0) / np.float32(127)  # symmetric per output column
        np.testing.assert_allclose(s, oracle_s, rtol=1e-6)
        np.testing.assert_array_equal(q, np.clip(np.rint(w / s), -127, 127))
        assert not any(tuple(t.dims) == w.shape for t in floats), "a float copy stayed"


def test_ffn_output_matches_per_row_oracle_in_onnxruntime(default, ffn):
    """y = (rint(a / s_row) · W_q) · s_w · s_row, s_row = max|a_row| / 127: exact in int64,
    then the kernel's two float32 roundings (columns, then rows)."""
    feeds = tokens(5, seed=11)
    inits = _inits(default.model)
    names = [t for _, a, y in ffn.values() for t in (a, y)]
    got = run_onnxruntime(default.model, feeds, outputs=names)
    for name, (_, a_name, y_name) in ffn.items():
        stem = tensor_stem(name)
        wq = onnx.numpy_helper.to_array(inits[f"{stem}_W_quantized"]).astype(np.int64)
        sw = onnx.numpy_helper.to_array(inits[f"{stem}_W_scale"])  # (N,) float32
        a = got[a_name]  # (B, S, K) float32
        s_row = np.maximum(np.abs(a).max(-1, keepdims=True), np.float32(1e-12)) / np.float32(127)
        aq = np.clip(np.rint(a / s_row), -127, 127).astype(np.int64)  # (B, S, K)
        acc = aq @ wq  # (B, S, N) exact
        oracle = (acc.astype(np.float32) * sw) * s_row  # (B, S, N) float32
        np.testing.assert_array_equal(got[y_name], oracle)


def test_verify_zero_lsb_and_qoperator(default, tmp_path):
    feeds = tokens(4, seed=3)
    assert eq.verify(default.model, feeds).max_lsb == 0
    qop = default.save(tmp_path / "qop.onnx", format="qop")
    assert eq.verify(str(qop), feeds).max_lsb == 0


def test_weight_only_option_int8_weights_float_compute(bert_onnx, calib, ffn):
    r = eq.get_recipe("w8a8").with_options(transformer_ffn_output="weight_only")
    qm = eq.quantize(bert_onnx, r, calib)
    inits = _inits(qm.model)
    producers = {o: n for n in qm.model.graph.node for o in n.output}
    mms = {(n.name or n.output[0]): n for n in qm.model.graph.node if n.op_type == "MatMul"}
    for name, (w, a_name, _) in ffn.items():
        mm = mms[name]
        assert mm.input[0] == a_name  # float activation, no Q/DQ in front
        dq = producers[mm.input[1]]
        assert dq.op_type == "DequantizeLinear"
        q = onnx.numpy_helper.to_array(inits[dq.input[0]])
        s = onnx.numpy_helper.to_array(inits[dq.input[1]])
        assert q.dtype == np.int8 and q.shape == w.shape
        assert np.all(np.abs(q.astype(np.float32) * s - w) <= s / 2 * (1 + 1e-6))
    from onnx.reference import ReferenceEvaluator

    feeds = tokens(3, seed=4)
    ref = ReferenceEvaluator(qm.model).run(None, feeds)[0]
    ours = run(qm.model, feeds, engine="reference")
    theirs = run_onnxruntime(qm.model, feeds, optimize=False)
    name = qm.model.graph.output[0].name
    np.testing.assert_allclose(theirs[name], ref, atol=FLOAT_ORDER_ATOL)
    np.testing.assert_allclose(ours[name], ref, atol=FLOAT_ORDER_ATOL)


def test_float_option_keeps_float_weights_and_bigger_file(bert_onnx, calib, default, ffn,
                                                          tmp_path):
    r = eq.get_recipe("w8a8").with_options(transformer_ffn_output="float")
    qm = eq.quantize(bert_onnx, r, calib)
    modes = {d.node: d.action for d in qm.plan.nodes}
    assert all(modes[n] == "float" for n in ffn)
    small = default.save(tmp_path / "default.onnx")
    big = qm.save(tmp_path / "float_ffn.onnx")
    assert os.path.getsize(small) < os.path.getsize(big)


@pytest.mark.parametrize("weights, action, mode", [
    (QuantSpec(QType(8, True, narrow_range=True), PerChannel(0), symmetric=True),
     "quantize", "dynamic"),
    (QuantSpec(QType(8, True), PerChannel(0), symmetric=False), "quantize", "weight_only"),
    (QuantSpec(QType(4, True, narrow_range=True), PerChannel(0), symmetric=True), "float", None),
])
def test_ffn_rule_by_weight_spec(weights, action, mode):
    """Dynamic needs symmetric int8 weights (MatMulIntegerToFloat without a weight zero
    point); asymmetric int8 falls back to weight-only; other widths stay float."""
    r = Recipe("r", "static", weights=weights,
               activations=QuantSpec(QType(8, False), symmetric=False))
    rule = ffn_rule(("mm",), r)
    assert (rule.action, rule.mode) == (action, mode) and rule.name == FFN_RULE


def test_unknown_option_value_is_refused():
    from edgequant.errors import RecipeError

    with pytest.raises(RecipeError, match=r"transformer_ffn_output.*dynamic"):
        eq.get_recipe("w8a8").with_options(transformer_ffn_output="int4")
