"""edgequant's own quantizer output (every recipe with a TFLite mode) exports and runs:
integer recipes bit-exact with the reference on both LiteRT kernel paths, float-weight
recipes close to the float ONNX model in onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from edgequant import quantize
from edgequant.export.tflite import export_tflite
from edgequant.runtime.litert import LiteRTRunner
from edgequant.runtime.verify_tflite import verify_tflite

#: fp16 / w8_dynamic vs the float model, fraction of the output range (reasons: see
#: test_tflite_export_float.TOLERANCE).
TOLERANCE = {"fp16": 3e-3, "w8_dynamic": 5e-2}


@pytest.mark.parametrize(("recipe", "io"), [("w8a8", "float"), ("w8a8", "int8"),
                                            ("w8a8", "uint8"), ("w8a16", "float")])
def test_integer_recipes_bit_exact(tfl_models, recipe, io, tmp_path):
    case = tfl_models["ops"]
    qm = quantize(str(case.float_path), recipe, calibration={"x": case.x}, io=io)
    out = tmp_path / f"ops_{recipe}_{io}.tflite"
    qm.save(out)  # the quantizer's own save path goes through export_tflite
    assert out.exists()
    res = export_tflite(qm.model, tmp_path / "again.tflite")
    assert res.mode == {"w8a8": "int8", "w8a16": "int16x8"}[recipe] and not res.float_nodes
    report = verify_tflite(res.path, {"x": case.x})
    assert report.ok(), report


@pytest.mark.parametrize("recipe", sorted(TOLERANCE))
def test_float_weight_recipes(tfl_models, recipe, tmp_path):
    case = tfl_models["mnist"]
    qm = quantize(str(case.float_path), recipe)
    res = export_tflite(qm.model, tmp_path / f"m_{recipe}.tflite")
    assert res.mode == {"fp16": "fp16", "w8_dynamic": "dynamic"}[recipe]
    want = ort.InferenceSession(str(case.float_path), providers=["CPUExecutionProvider"]).run(
        None, {"x": case.x[:1]})[0]
    got = LiteRTRunner(res.path).run({"x": case.x[:1]})[0]
    assert np.abs(got - want).max() <= TOLERANCE[recipe] * float(want.max() - want.min())
