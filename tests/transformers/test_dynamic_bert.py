"""``w8_dynamic`` on the tiny BERT encoders: every MatMul with a constant weight equals an
exact numpy per-row oracle in onnxruntime, Q/K/V share one quantization of their input, and
the reference interpreter agrees with onnxruntime at 0 LSB."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from tiny_bert import tokens

import edgequant as eq
from edgequant.runtime.verify import run_onnxruntime


@pytest.fixture(scope="module")
def dynamic(bert_onnx):
    return eq.quantize(bert_onnx, "w8_dynamic")


def _kernels(model) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == "MatMulIntegerToFloat"]


def test_every_projection_matches_per_row_oracle(dynamic):
    """Oracle per MatMul: s_row = max|a_row| / 127; y = float32(rint(a / s_row) · W_q) · s_w
    · s_row, read from the quantized file's own int8 weights and scales."""
    m = dynamic.model
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    kernels = _kernels(m)
    assert len(kernels) == 12  # 2 layers × (Q, K, V, O, FFN in, FFN out)
    rows = {}
    for k in kernels:
        ql = producer[k.input[0]]  # the blocked per-row QuantizeLinear
        assert ql.op_type == "QuantizeLinear"
        mul = next(n for n in m.graph.node if n.op_type == "Mul" and k.output[0] in n.input)
        rows[k.name] = (ql.input[0], mul.output[0], k.input[1], k.input[3])
    names = sorted({t for a, y, _, _ in rows.values() for t in (a, y)})
    got = run_onnxruntime(m, tokens(4, seed=21), outputs=names)
    for a_name, y_name, wq_name, sw_name in rows.values():
        a = got[a_name]  # (B, S, K) float32
        s_row = np.maximum(np.abs(a).max(-1, keepdims=True), np.float32(1e-12)) / np.float32(127)
        aq = np.clip(np.rint(a / s_row), -127, 127).astype(np.int64)  # (B, S, K)
        acc = aq @ inits[wq_name].astype(np.int64)  # (B, S, N) exact
        oracle = (acc.astype(np.float32) * inits[sw_name]) * s_row  # (B, S, N) float32
        np.testing.assert_array_equal(got[y_name], oracle)


def test_qkv_input_quantized_once(dynamic):
    quantized_inputs = [n.input[0] for n in dynamic.model.graph.node
                        if n.op_type == "QuantizeLinear"]
    assert len(quantized_inputs) == len(set(quantized_inputs)) == 2 * 4  # QKV, O, FFN in, out
    users = [k.input[0] for k in _kernels(dynamic.model)]
    assert max(users.count(u) for u in users) == 3  # Q, K and V read one quantized input


def test_verify_zero_lsb(dynamic):
    assert eq.verify(dynamic.model, tokens(5, seed=8)).max_lsb == 0
