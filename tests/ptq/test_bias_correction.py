"""Empirical bias correction and the recovery report; w4a8 end to end (onnxruntime at 0 LSB,
.tflite on LiteRT at 0 LSB)."""

from __future__ import annotations

import numpy as np
import pytest
from small_nets import conv_chain, images

import edgequant as eq
from edgequant.recipes import get_recipe
from edgequant.runtime.sessions import ort_session
from edgequant.runtime.verify_tflite import verify_tflite


def _feeds(n: int, seed: int) -> np.ndarray:
    return images(n, seed) + 0.5  # a non-zero input mean: weight rounding shifts the means


def _mean_error(qmodel, fmodel, x: np.ndarray) -> float:
    """Mean over output channels of |E[quantized − float]| on ``x``, in onnxruntime."""
    q = ort_session(qmodel).run(None, {"x": x})[0]
    f = ort_session(fmodel).run(None, {"x": x})[0]
    return float(np.mean(np.abs((q - f).mean(axis=0))))


@pytest.mark.parametrize("recipe", ["w4a8", "w8a8"])
def test_bias_correction_reduces_mean_output_error_on_held_out_data(recipe):
    m = conv_chain("Relu", seed=2)
    cal, held = _feeds(64, seed=10), _feeds(256, seed=11)  # disjoint draws
    base = get_recipe(recipe).with_options(weight_clip="none")  # bias correction alone
    plain = eq.quantize(m, base.with_options(bias_correction="none"), calibration={"x": cal})
    fixed = eq.quantize(m, base.with_options(bias_correction="empirical"),
                        calibration={"x": cal})
    assert "recovery" not in plain.report
    before, after = _mean_error(plain.model, m, held), _mean_error(fixed.model, m, held)
    assert after < 0.7 * before, (before, after)
    rows = {r["node"]: r for r in fixed.report["recovery"]["layers"]}
    assert set(rows) == {"c1", "dw", "c3", "fc"}
    for r in rows.values():
        assert r["stages"] == ["rtn", "+bias_correction"]
        lo, hi = r["output_sqnr_db"]
        assert hi >= lo - 1e-6  # removing the mean never adds error on the calibration data
    assert max(r["output_sqnr_db"][1] - r["output_sqnr_db"][0] for r in rows.values()) > 0.3


def test_one_shot_calibration_iterator_is_kept_for_calibration():
    m = conv_chain("Relu", seed=2)
    cal = _feeds(32, seed=10)
    gen = ({"x": cal[i:i + 8]} for i in range(0, 32, 8))
    qm = eq.quantize(m, "w4a8", calibration=gen)  # bias correction reads it, then calibration
    assert qm.report["recovery"]["techniques"] == ["weight_clip (mse)",
                                                   "bias_correction (empirical)"]
    ref = eq.quantize(m, "w4a8", calibration={"x": cal}, batch_size=8)
    x = _feeds(8, seed=12)
    np.testing.assert_array_equal(ort_session(qm.model).run(None, {"x": x})[0],
                                  ort_session(ref.model).run(None, {"x": x})[0])


def test_cle_and_bias_correction_report_stages():
    m = conv_chain("Relu", seed=2)
    qm = eq.quantize(m, get_recipe("w8a8").with_options(cle=True, bias_correction="empirical"),
                     calibration={"x": _feeds(32, 10)})
    rec = qm.report["recovery"]
    assert rec["techniques"] == ["cle", "bias_correction (empirical)"]
    assert len(rec["cle"]["pairs"]) == 2
    dw = next(r for r in rec["layers"] if r["node"] == "dw")
    assert dw["stages"] == ["rtn", "+cle", "+bias_correction"]


def test_w4a8_verifies_at_zero_lsb_and_exports_to_tflite(tmp_path):
    m = conv_chain("Relu", seed=4)
    cal, x = _feeds(32, seed=20), _feeds(16, seed=21)
    qm = eq.quantize(m, "w4a8", calibration={"x": cal})
    weights = [t for t in qm.model.graph.initializer if t.name.endswith("w_quantized")]
    assert weights and all(t.data_type == 22 for t in weights)  # INT4 in the QDQ model
    path = qm.save(tmp_path / "w4a8.onnx")
    report = eq.verify(str(path), {"x": x})
    assert report.max_lsb == 0, report.to_dict()
    qop = qm.save(tmp_path / "w4a8_qop.onnx", format="qop")  # integer-only lowering
    assert eq.verify(str(qop), {"x": x}).max_lsb == 0
    lite = qm.save(tmp_path / "w4a8.tflite")  # int4 weights written as int8 in [-7, 7]
    tfl = verify_tflite(lite, {"x": x})
    assert tfl.max_lsb == 0, tfl.to_dict()
    q = ort_session(qm.model).run(None, {"x": x})[0]
    f = ort_session(m).run(None, {"x": x})[0]
    cos = float(np.sum(q * f) / np.linalg.norm(q) / np.linalg.norm(f))
    assert cos > 0.9


def test_auto_corrects_only_below_8_bit_weights():
    from edgequant.ptq.recovery import bias_method

    assert bias_method(get_recipe("w8a8")) == "none"
    assert bias_method(get_recipe("w4a8")) == "empirical"
    assert bias_method(get_recipe("w4a8").with_options(bias_correction="none")) == "none"
    assert bias_method(get_recipe("w8a8").with_options(bias_correction="empirical")) == "empirical"
