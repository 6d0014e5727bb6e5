"""Weight clip search: per-channel weight MSE never above min/max and equal to a numpy brute
force over the same ratios; the searched scales are what the QDQ model stores; w4a8 with the
search verifies at 0 LSB in onnxruntime and LiteRT; bad option values name the option."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper as nh
from small_nets import conv_chain, images

import edgequant as eq
from edgequant.errors import RecipeError
from edgequant.ptq.recovery.weight_clip import RATIOS, clip_method, clip_search
from edgequant.recipes import get_recipe
from edgequant.recipes.builtin import weight_spec
from edgequant.runtime.sessions import ort_session
from edgequant.spec import PerChannel, PerTensor, QType, QuantSpec

#: float32 rounding of x / scale may differ from the float64 brute force by one ulp
REL_TOL = 1e-5


def _brute_force(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel (axis 0): squared error of symmetric narrow-range min/max and the
    least squared error over :data:`RATIOS`, in float64 from the formula."""
    qmax = 2 ** (bits - 1) - 1
    flat = w.reshape(len(w), -1).astype(np.float64)  # (C, K)
    amax = np.abs(flat).max(axis=1, keepdims=True)  # (C, 1)
    errs = []
    for r in RATIOS:
        s = np.maximum(r * amax / qmax, 1e-30)
        q = np.clip(np.rint(flat / s), -qmax, qmax)
        errs.append(((q * s - flat) ** 2).sum(axis=1))  # (C,)
    errs = np.array(errs)  # (ratios, C); RATIOS[0] = 1.0 is min/max
    return errs[0], errs.min(axis=0)


def _channel_errors(w: np.ndarray, qp) -> np.ndarray:
    from edgequant.primitives import fake_quantize

    return ((fake_quantize(w, qp).astype(np.float64) - w) ** 2).reshape(len(w), -1).sum(axis=1)


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("seed", [0, 1])
def test_per_channel_mse_never_above_min_max_and_matches_brute_force(bits, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_t(3, (24, 8, 3, 3)).astype(np.float32)  # heavy tails: clipping pays
    w[3] = 0.0  # an all-zero channel keeps a finite scale
    qp, alpha = clip_search(w, weight_spec(bits))
    ours = _channel_errors(w, qp)
    minmax, best = _brute_force(w, bits)
    assert np.all(ours <= minmax * (1 + REL_TOL) + 1e-12)
    np.testing.assert_allclose(ours, best, rtol=1e-4, atol=1e-9)
    assert alpha.shape == (24,) and np.all((alpha >= 0.5) & (alpha <= 1.0))
    if bits == 4:
        assert ours.sum() < 0.95 * minmax.sum()  # heavy-tailed weights at 4 bits: a gain


def test_per_tensor_and_affine_specs_never_increase_mse():
    rng = np.random.default_rng(3)
    w = rng.standard_t(3, (16, 32)).astype(np.float32)
    for spec in (QuantSpec(QType(4, True, narrow_range=True), PerTensor(), symmetric=True),
                 QuantSpec(QType(4, False), PerChannel(1), symmetric=False)):
        from edgequant.primitives import fake_quantize
        from edgequant.qparams import qparams_for

        qp, _ = clip_search(w, spec)
        before = np.sum((fake_quantize(w, qparams_for(w, spec)) - w) ** 2)
        assert np.sum((fake_quantize(w, qp) - w) ** 2) <= before


def test_group_spec_is_refused_by_name():
    from edgequant.spec import PerGroup

    spec = QuantSpec(QType(4, True), PerGroup(axis=1, size=8), symmetric=True)
    with pytest.raises(ValueError, match="PerGroup"):
        clip_search(np.ones((4, 16), np.float32), spec)


def test_auto_searches_only_low_bit_static_weights():
    assert clip_method(get_recipe("w4a8")) == "mse"
    assert clip_method(get_recipe("w8a8")) == "none"
    assert clip_method(get_recipe("w8a8").with_options(weight_clip="mse")) == "mse"
    assert clip_method(get_recipe("w4a8").with_options(weight_clip="none")) == "none"


def test_qdq_model_stores_the_searched_scales_and_verifies(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from edgequant.runtime.verify_tflite import verify_tflite

    m = conv_chain("Relu", seed=4)
    cal, x = images(32, 20) + 0.5, images(16, 21) + 0.5
    qm = eq.quantize(m, get_recipe("w4a8").with_options(bias_correction="none"),
                     calibration={"x": cal})
    assert qm.report["recovery"]["weight_clip"]["weights"] == 4
    inits = {t.name: nh.to_array(t) for t in qm.model.graph.initializer}
    w = inits["c1.w"] if "c1.w" in inits else nh.to_array(
        next(t for t in m.graph.initializer if t.name == "c1.w"))
    want, _ = clip_search(w, weight_spec(4))
    np.testing.assert_array_equal(inits["c1.w_scale"], want.scale)
    path = qm.save(tmp_path / "clip.onnx")
    assert eq.verify(str(path), {"x": x}).max_lsb == 0
    lite = verify_tflite(qm.save(tmp_path / "clip.tflite"), {"x": x})
    assert lite.max_lsb == 0, lite.to_dict()


def test_search_lowers_output_error_of_w4a8_on_held_out_data():
    m = conv_chain("Relu", seed=2)
    cal, held = images(64, 10) + 0.5, images(128, 11) + 0.5
    f = ort_session(m).run(None, {"x": held})[0]
    err = {}
    for value in ("none", "mse"):
        rec = get_recipe("w4a8").with_options(weight_clip=value, bias_correction="none")
        q = ort_session(eq.quantize(m, rec, calibration={"x": cal}).model).run(None, {"x": held})[0]
        err[value] = float(np.mean((q - f) ** 2))
    assert err["mse"] < err["none"], err


@pytest.mark.parametrize("name, value", [("weight_clip", "yes"), ("weight_clip", True),
                                         ("w4_keep_int8", "all"),
                                         ("adaround_bias_correction", 1)])
def test_bad_option_values_name_the_option(name, value):
    with pytest.raises(RecipeError, match=name):
        get_recipe("w4a8").with_options(**{name: value})
