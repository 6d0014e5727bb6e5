"""The mixed recipe (examples/mixed_recipe.json: a new name, per-rule int8 / int16 / fp16 /
float / int4) exports to all three formats from one QuantizedModel, and each verifies:
onnxruntime vs the interpreter at 0 LSB on integer parts, LiteRT (builtin and XNNPACK kernels)
vs edgequant's TFLite reference at 0 LSB, and the .tflite close to the ONNX QDQ model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from float_models import mixed_cnn, rgb_images

import edgequant as eq
from edgequant.analysis.metrics import sqnr_db
from edgequant.recipes import Recipe

pytest.importorskip("ai_edge_litert")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mixed_recipe.json"
#: The .tflite against the QDQ model in onnxruntime: the same integers except where float
#: layers (conv2's int16 path computed in float by onnxruntime, conv3/conv4 float) round the
#: last bit differently and TFLite rounds requantization ties its own way.
MIN_TFLITE_VS_QDQ_SQNR_DB = 30.0


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("mixed3")
    model = mixed_cnn()
    recipe = Recipe.from_json(EXAMPLE.read_text())
    qm = eq.quantize(model, recipe, calibration={"input": rgb_images(64)})
    paths = {fmt: qm.save(d / f"m_{fmt}.{'tflite' if fmt == 'tflite' else 'onnx'}",
                          format=None if fmt == "tflite" else fmt)
             for fmt in ("qdq", "qop", "tflite")}
    return qm, paths


def test_recipe_name_is_not_a_builtin(exported):
    qm, _ = exported
    assert qm.report["recipe"] not in ("w8a8", "w8a16", "w8_dynamic", "fp16", "w4a16_g128")


def test_tflite_holds_each_precision(exported):
    qm, _ = exported
    ops = qm.report["tflite"]["ops"]
    assert ops["CONV_2D"] == 5 and ops["FULLY_CONNECTED"] == 2
    assert ops.get("DEQUANTIZE", 0) >= 1 and ops.get("QUANTIZE", 0) >= 1  # seams
    kinds = set(qm.report["tflite"].get("kinds", {}).values())
    assert {"int8", "int16x8", "float"} <= kinds, kinds


@pytest.mark.parametrize("fmt", ["qdq", "qop"])
def test_onnx_integer_parts_verify_at_zero_lsb(exported, fmt):
    _, paths = exported
    report = eq.verify(str(paths[fmt]), {"input": rgb_images(16, seed=7)}, isolate_integer=True)
    assert report.max_lsb == 0, report.to_dict()


def test_tflite_verifies_at_zero_lsb_on_both_kernel_paths(exported):
    from edgequant.runtime.verify_tflite import verify_tflite

    _, paths = exported
    report = verify_tflite(paths["tflite"], {"input": rgb_images(8, seed=7)})
    assert set(report.engines) == {"litert/builtin", "litert/xnnpack"}
    assert report.ok(0), report.to_dict()


def test_tflite_agrees_with_the_onnx_model(exported):
    from edgequant.runtime.litert import LiteRTRunner

    _, paths = exported
    x = rgb_images(8, seed=9)
    ref = ort.InferenceSession(str(paths["qdq"]), providers=["CPUExecutionProvider"]).run(
        None, {"input": x})[0]
    lite = LiteRTRunner(paths["tflite"])
    got = np.concatenate([lite.run({"input": x[k:k + 1]})[0] for k in range(len(x))])
    assert sqnr_db(ref, got) >= MIN_TFLITE_VS_QDQ_SQNR_DB
