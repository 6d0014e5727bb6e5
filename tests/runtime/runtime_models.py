"""Small models for the runtime tests (fixtures in conftest.py): a float conv net (dynamic
batch), its edgequant w8a8 QDQ twin, that twin's ``.tflite`` export (batch fixed at 1), and a
fixed-batch MatMul.

Everything is built with ``onnx.helper`` and edgequant's own quantizer / exporter in well
under a second per model; the oracles live in the tests (numpy formulas, plain onnxruntime
sessions, LiteRT's own interpreter).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

OPSET = 21
CHANNELS = 4
SIDE = 6
CLASSES = 5
SAMPLES = 6


def conv_net(batch: int | str = "N") -> onnx.ModelProto:
    """Conv → Relu → Flatten → Gemm; input (batch, 1, SIDE, SIDE) float32."""
    rng = np.random.default_rng(0)
    inits = {
        "w1": rng.normal(0, 0.5, (CHANNELS, 1, 3, 3)).astype(np.float32),
        "b1": rng.normal(0, 0.1, CHANNELS).astype(np.float32),
        "w2": rng.normal(0, 0.2, (CLASSES, CHANNELS * SIDE * SIDE)).astype(np.float32),
        "b2": rng.normal(0, 0.1, CLASSES).astype(np.float32),
    }
    g = h.make_graph(
        [h.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1, 1, 1]),
         h.make_node("Relu", ["c"], ["r"]),
         h.make_node("Flatten", ["r"], ["f"]),
         h.make_node("Gemm", ["f", "w2", "b2"], ["y"], transB=1)],
        "conv_net",
        [h.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, SIDE, SIDE])],
        [h.make_tensor_value_info("y", TensorProto.FLOAT, [batch, CLASSES])],
        [nh.from_array(v, k) for k, v in inits.items()],
    )
    m = h.make_model(g, opset_imports=[h.make_opsetid("", OPSET)])
    m.ir_version = 10
    onnx.checker.check_model(m)
    return m


def images(n: int = SAMPLES, seed: int = 1) -> np.ndarray:
    """(n, 1, SIDE, SIDE) float32 in [0, 1]."""
    return np.random.default_rng(seed).uniform(0, 1, (n, 1, SIDE, SIDE)).astype(np.float32)


def fixed_matmul(batch: int) -> tuple[onnx.ModelProto, np.ndarray]:
    """``y = x @ w`` with the batch dimension fixed at ``batch``; returns (model, w)."""
    w = np.random.default_rng(2).normal(0, 1, (3, 2)).astype(np.float32)
    g = h.make_graph(
        [h.make_node("MatMul", ["x", "w"], ["y"])], "fixed",
        [h.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3])],
        [h.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 2])],
        [nh.from_array(w, "w")],
    )
    m = h.make_model(g, opset_imports=[h.make_opsetid("", OPSET)])
    m.ir_version = 10
    onnx.checker.check_model(m)
    return m, w


@dataclass
class Models:
    """Paths of the runtime test models and their evaluation data."""

    float_path: Path
    qdq_path: Path
    tflite_path: Path  # float I/O, batch 1
    tflite_int8_path: Path  # int8 I/O, batch 1
    x: np.ndarray
