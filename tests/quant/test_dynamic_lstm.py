"""LSTM under ``w8_dynamic``: onnxruntime's com.microsoft DynamicQuantizeLSTM, checked against
onnxruntime (it runs the written model), the float model (cosine) and the interpreter.

onnxruntime's float LSTM uses approximate sigmoid / tanh, so no float reference matches it
bit for bit; the interpreter's kernel is checked to follow the quantized one more closely
than float math on the dequantized weights does (it quantizes the GEMM inputs at run time
as the kernel does), and its run-time quantization is checked exactly against onnxruntime's
DynamicQuantizeLinear, which computes the same scale and zero point.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

import edgequant as eq
from edgequant.interp import Interpreter
from edgequant.interp.ops.rnn_quant import dynamic_uint8

T, N, IN, H = 12, 3, 8, 16  # steps, batch, input size, hidden size
#: Cosine of the dynamic-int8 LSTM's Y against the float LSTM's (measured ≈ 0.99997).
MIN_COSINE = 0.999


def _lstm_model(direction="forward", layout=0, op="LSTM", seed=0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    d = 2 if direction == "bidirectional" else 1
    g = 4 if op == "LSTM" else 3
    inits = {"W": rng.normal(0, 0.3, (d, g * H, IN)), "R": rng.normal(0, 0.3, (d, g * H, H)),
             "B": rng.normal(0, 0.1, (d, 2 * g * H))}
    shape = [T, "n", IN] if layout == 0 else ["n", T, IN]
    attrs = {"hidden_size": H, "direction": direction}
    if layout:
        attrs["layout"] = 1
    node = h.make_node(op, ["x", "W", "R", "B"], ["y", "yh"], name="rnn", **attrs)
    graph = h.make_graph([node], "m", [h.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, None),
                          h.make_tensor_value_info("yh", TensorProto.FLOAT, None)],
                         [nh.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    m = h.make_model(graph, opset_imports=[h.make_opsetid("", 21)])
    m.ir_version = 10
    return m


def _x(seed=1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (T, N, IN)).astype(np.float32)


def _ort(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})


def _cos(a, b) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_w8_dynamic_lstm_runs_as_dynamic_quantize_lstm(direction):
    m, x = _lstm_model(direction), _x()
    qm = eq.quantize(m, "w8_dynamic", {"x": x})
    (d,) = [d for d in qm.plan.nodes if d.op_type == "LSTM"]
    assert d.action == "quantize" and d.mode == "dynamic"
    ops = [n.op_type for n in qm.model.graph.node]
    assert ops == ["DynamicQuantizeLSTM"]
    inits = {t.name: nh.to_array(t) for t in qm.model.graph.initializer}
    assert not any(v.dtype == np.float32 and v.size >= 4 * H * IN for v in inits.values())
    # the int8 weights dequantize to the float ones within half a step per gate row
    w = nh.to_array(next(t for t in m.graph.initializer if t.name == "W"))  # (D, 4H, I)
    node = qm.model.graph.node[0]
    wq, ws = inits[node.input[1]], inits[node.input[8]]  # (D, I, 4H) int8, (D, 4H)
    assert wq.dtype == np.int8 and ws.shape == (w.shape[0], 4 * H)
    back = wq.transpose(0, 2, 1).astype(np.float32) * ws[..., None]
    assert np.all(np.abs(back - w) <= ws[..., None] / 2 + 1e-7)
    got, ref = _ort(qm.model, x), _ort(m, x)
    assert _cos(got[0], ref[0]) > MIN_COSINE
    interp = Interpreter(qm.model).run({"x": x})
    interp = interp if isinstance(interp, list | tuple) else list(interp.values())
    # float math on the dequantized weights (no run-time activation quantization)
    deq = onnx.ModelProto.FromString(m.SerializeToString())
    for t in deq.graph.initializer:
        if t.name in ("W", "R"):
            tag = t.name
            q, s = inits[f"rnn_{tag}_quantized"], inits[f"rnn_{tag}_scale"]
            t.CopyFrom(nh.from_array((q.transpose(0, 2, 1) * s[..., None]).astype(np.float32), tag))
    float_deq = _ort(deq, x)[0]
    err_interp = np.abs(interp[0] - got[0]).max()
    assert err_interp < np.abs(float_deq - got[0]).max()
    assert err_interp < 5e-3  # measured 2.2e-3 (onnxruntime's approximate sigmoid / tanh)


def test_run_time_quantization_matches_dynamic_quantize_linear():
    node = h.make_node("DynamicQuantizeLinear", ["a"], ["q", "s", "z"])
    g = h.make_graph([node], "m", [h.make_tensor_value_info("a", TensorProto.FLOAT, [None, None])],
                     [h.make_tensor_value_info(k, t, None) for k, t in
                      (("q", TensorProto.UINT8), ("s", TensorProto.FLOAT), ("z", TensorProto.UINT8))])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 21)])
    m.ir_version = 10
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    for a in (rng.normal(0, 1, (5, 7)), rng.uniform(0.1, 2, (4, 9)), -rng.uniform(0, 3, (3, 3)),
              np.zeros((2, 4)), rng.normal(0, 1e-3, (6, 6))):
        a = a.astype(np.float32)
        q, s, z = sess.run(None, {"a": a})
        mq, ms, mz = dynamic_uint8(a)
        assert ms == s and mz == z and np.array_equal(mq, q.astype(np.int64)), (s, ms, z, mz)


@pytest.mark.parametrize("op,layout,reason", [
    ("GRU", 0, "no dynamic int8 GRU kernel"),
    ("LSTM", 1, "layout=1"),
])
def test_recurrent_nodes_without_a_kernel_stay_float_with_the_reason(op, layout, reason):
    m = _lstm_model(op=op, layout=layout)
    x = _x() if layout == 0 else _x().transpose(1, 0, 2).copy()
    qm = eq.quantize(m, "w8_dynamic", {"x": x})
    (d,) = [d for d in qm.plan.nodes if d.op_type == op]
    assert d.action == "float" and reason in d.reason
    assert [n.op_type for n in qm.model.graph.node] == [op]
    if layout == 0:  # onnxruntime runs no batch-first LSTM at all
        assert np.array_equal(_ort(qm.model, x)[0], _ort(m, x)[0])
