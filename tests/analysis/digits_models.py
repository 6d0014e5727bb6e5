"""Small real models for the analysis tests: a digits CNN (float) and its QDQ int8 version.

The CNN has random convolution / hidden weights and a least-squares classifier head fitted
on sklearn's ``load_digits`` (8×8 images), so its accuracy is real (well above chance) and the
int8 model's accuracy and agreement are meaningful, yet building it takes well under a second.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from sklearn.datasets import load_digits

OPSET = 21
HIDDEN = 128
N_CALIB = 64
RIDGE = 1e-2  # ridge penalty of the least-squares head: keeps it well conditioned


def digits() -> tuple[np.ndarray, np.ndarray]:
    """(N, 1, 8, 8) float32 in [0, 1] and (N,) int64 labels, shuffled with a fixed seed."""
    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.target))
    x = (d.images[order] / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8)
    return x, d.target[order].astype(np.int64)


def _graph(inits: dict[str, np.ndarray], with_head: bool, batch: int | str) -> onnx.ModelProto:
    nodes = [
        h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        h.make_node("Relu", ["c1"], ["r1"]),
        h.make_node("Flatten", ["r1"], ["f1"]),
        h.make_node("Gemm", ["f1", "w2", "b2"], ["g2"], transB=1),
        h.make_node("Relu", ["g2"], ["hidden"]),
    ]
    out = "hidden"
    if with_head:
        nodes.append(h.make_node("Gemm", ["hidden", "w3", "b3"], ["logits"], transB=1))
        out = "logits"
    g = h.make_graph(
        nodes,
        "digits_cnn",
        [h.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, 8, 8])],
        [h.make_tensor_value_info(out, TensorProto.FLOAT, [batch, None])],
        [nh.from_array(v, k) for k, v in inits.items() if with_head or k not in ("w3", "b3")],
    )
    m = h.make_model(g, opset_imports=[h.make_opsetid("", OPSET)])
    m.ir_version = 10
    onnx.checker.check_model(m)
    return m


def build_digits_cnn(batch: int | str = "N") -> onnx.ModelProto:
    """Conv(16, 3×3) → Relu → Flatten → Gemm(128) → Relu → Gemm(10), head fitted on digits."""
    rng = np.random.default_rng(1)
    inits = {
        "w1": rng.normal(0, 0.5, (16, 1, 3, 3)).astype(np.float32),
        "b1": rng.normal(0, 0.1, 16).astype(np.float32),
        "w2": rng.normal(0, 1 / np.sqrt(1024), (HIDDEN, 1024)).astype(np.float32),
        "b2": np.zeros(HIDDEN, np.float32),
    }
    x, y = digits()
    body = _graph(inits, with_head=False, batch="N")
    feats = ort.InferenceSession(body.SerializeToString()).run(None, {"x": x})[0]  # (N, 128)
    a = np.concatenate([feats, np.ones((len(feats), 1), np.float32)], 1).astype(np.float64)
    onehot = np.eye(10)[y]  # (N, 10)
    coef = np.linalg.solve(a.T @ a + RIDGE * np.eye(a.shape[1]), a.T @ onehot)  # (129, 10)
    inits["w3"] = coef[:-1].T.astype(np.float32)  # (10, 128)
    inits["b3"] = coef[-1].astype(np.float32)
    return _graph(inits, with_head=True, batch=batch)


class _Reader(CalibrationDataReader):
    def __init__(self, x: np.ndarray) -> None:
        self.it = iter([{"x": x[i : i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self.it, None)


def quantize_qdq(src: str, dst: str, x: np.ndarray) -> None:
    """onnxruntime ``quantize_static``: QDQ, uint8 activations, per-channel int8 weights."""
    quantize_static(
        src,
        dst,
        _Reader(x[:N_CALIB]),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )
