"""fp32 / fp16 / dynamic-range export: LiteRT outputs vs the float ONNX model in onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgequant.export.tflite import export_tflite
from edgequant.runtime.litert import LiteRTRunner

#: Max |LiteRT − onnxruntime| as a fraction of the output's range, per mode:
#: fp32 — different float summation orders only (≈1e-6 relative, margin ×10);
#: fp16 — weights rounded to 11 significant bits (2^-11 ≈ 5e-4 relative per weight);
#: dynamic — int8 weights and inputs quantized per call (≈1/127 of range each; a few %).
TOLERANCE = {"fp32": 1e-5, "fp16": 3e-3, "dynamic": 5e-2}


@pytest.mark.parametrize("xnnpack", [True, False], ids=["xnnpack", "builtin"])
@pytest.mark.parametrize("mode", sorted(TOLERANCE))
@pytest.mark.parametrize("name", ["mnist", "ops", "stride"])
def test_float_modes_close_to_onnxruntime(tfl_models, name, mode, xnnpack, tmp_path):
    case = tfl_models[name]
    res = export_tflite(onnx.load(case.float_path), tmp_path / f"{name}_{mode}.tflite", mode=mode)
    assert res.mode == mode
    sess = ort.InferenceSession(str(case.float_path), providers=["CPUExecutionProvider"])
    lite = LiteRTRunner(res.path, xnnpack=xnnpack)
    for i in range(4):
        x = case.x[i:i + 1]
        want = sess.run(None, {"x": x})[0]
        got = lite.run({"x": x})[0]
        assert got.shape == want.shape and got.dtype == np.float32
        span = float(want.max() - want.min()) or 1.0
        assert np.abs(got - want).max() <= TOLERANCE[mode] * span, (i, np.abs(got - want).max())


def test_weight_sizes_by_mode(tfl_models, tmp_path):
    """fp16 halves and dynamic quarters the (weight-dominated) MNIST file."""
    f = onnx.load(tfl_models["mnist"].float_path)
    sizes = {m: export_tflite(f, tmp_path / f"{m}.tflite", mode=m).size_bytes
             for m in ("fp32", "fp16", "dynamic")}
    assert sizes["fp16"] < 0.55 * sizes["fp32"]
    assert sizes["dynamic"] < 0.3 * sizes["fp32"]


def test_fp16_stores_half_weights(tfl_models, tmp_path):
    res = export_tflite(onnx.load(tfl_models["ops"].float_path), tmp_path / "h.tflite",
                        mode="fp16")
    assert res.ops["DEQUANTIZE"] >= 5  # one per weight / bias constant
