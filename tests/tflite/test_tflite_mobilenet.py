"""A MobileNet-style model (depthwise-separable inverted residual blocks, residual adds,
global average pool, ≥ 1 M parameters) exports in every mode and runs in LiteRT."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tflite_models as M

from edgequant.export.tflite import export_tflite
from edgequant.runtime.litert import LiteRTRunner
from edgequant.runtime.verify_tflite import verify_tflite

#: Float modes vs onnxruntime, as a fraction of the logits' range (see test_tflite_export_float
#: for the reasons; dynamic range compounds over 23 layers, hence the wider bound).
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "dynamic": 0.15}
SHAPE = (1, 3, 64, 64)


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
    root = tmp_path_factory.mktemp("mobilenet")
    module = M.MobileNetish()
    assert sum(p.numel() for p in module.parameters()) >= 1_000_000
    f = M.export_onnx(module, SHAPE, root / "mbn.onnx")
    x = np.random.default_rng(0).standard_normal((8, *SHAPE[1:])).astype(np.float32)
    q = M.quantize_qdq(f, root / "mbn_qdq.onnx", x)
    return f, q, x, root


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(TOLERANCE))
def test_mobilenet_float_modes(mobilenet, mode):
    f, _, x, root = mobilenet
    res = export_tflite(onnx.load(f), root / f"mbn_{mode}.tflite", mode=mode)
    want = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"]).run(
        None, {"x": x[:1]})[0]
    got = LiteRTRunner(res.path).run({"x": x[:1]})[0]
    assert np.abs(got - want).max() <= TOLERANCE[mode] * float(want.max() - want.min())


@pytest.mark.slow
def test_mobilenet_16x8_runs_close_to_ort(mobilenet):
    """16x8 (onnxruntime QInt16 symmetric activations): runs in LiteRT, close to ORT's QDQ."""
    f, _, x, root = mobilenet
    q16 = M.quantize_qdq(f, root / "mbn_q16.onnx", x, activation="QInt16")
    res = export_tflite(onnx.load(q16), root / "mbn_16x8.tflite")
    assert res.mode == "int16x8" and not res.float_nodes
    want = ort.InferenceSession(str(q16), providers=["CPUExecutionProvider"]).run(
        None, {"x": x[:1]})[0]
    got = LiteRTRunner(res.path).run({"x": x[:1]})[0]
    assert np.abs(got - want).max() <= 1e-2 * float(want.max() - want.min())  # a few int16 LSB


@pytest.mark.slow
def test_mobilenet_int8_bit_exact(mobilenet):
    _, q, x, root = mobilenet
    res = export_tflite(onnx.load(q), root / "mbn_int8.tflite")
    assert res.float_nodes == [] and res.ops["DEPTHWISE_CONV_2D"] == 7
    report = verify_tflite(res.path, {"x": x[:4]})
    assert report.ok(), report
