"""fit_bias against exact Fraction arithmetic: the bias fits, the raised scale is minimal."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest

from edgequant.bias_fit import BIAS_LIMIT, accumulator_headroom, fit_bias
from edgequant.qparams import qparams_for
from edgequant.spec import PerChannel, PerTensor, QType, QuantSpec

WEIGHT_SPEC = QuantSpec(QType(8, True, narrow_range=True), PerChannel(0), symmetric=True)


def exact_ratio(bias: float, s_in: float, s_w: float) -> Fraction:
    """|bias / bias_scale| exactly, with bias_scale the float32 product the pipeline stores."""
    bias_scale = np.float32(s_in) * np.float32(s_w)
    return abs(Fraction(float(np.float32(bias))) / Fraction(float(bias_scale)))


def depthwise_case(seed: int = 0):
    """Depthwise-like weights: channels 2 and 5 span ~1e-9, their biases are ordinary."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.5, (8, 1, 3, 3)).astype(np.float32)  # (C, 1, kh, kw)
    w[2] *= 1e-9
    w[5] *= 3e-10
    bias = rng.normal(0, 0.5, 8).astype(np.float32)  # (C,)
    bias[2], bias[5] = 0.8, -1.3
    return w, bias, np.float32(0.02)


def test_offending_channels_fit_exactly_and_minimally():
    w, bias, s_in = depthwise_case()
    qp = qparams_for(w, WEIGHT_SPEC)
    assert exact_ratio(bias[2], s_in, qp.scale[2]) > BIAS_LIMIT  # the case really overflows
    fit = fit_bias(bias, s_in, qp, weight_values=w)
    assert fit.channels == (2, 5)
    for c in range(8):
        s_new = fit.qparams.scale[c]
        assert exact_ratio(bias[c], s_in, s_new) <= BIAS_LIMIT
        if c in fit.channels:  # one float32 step smaller no longer fits: minimal
            smaller = np.nextafter(s_new, np.float32(0))
            assert exact_ratio(bias[c], s_in, smaller) > BIAS_LIMIT
            assert s_new > qp.scale[c]
        else:
            assert s_new == qp.scale[c]
            assert fit.sqnr_cost_db[c] == 0
    # the coarser channels lose SQNR (measured), the others none
    assert np.all(fit.sqnr_cost_db[[2, 5]] > 0)
    assert fit.qparams.scale.dtype == np.float32 and fit.qparams.granularity == PerChannel(0)


def test_estimated_cost_is_scale_ratio_in_db():
    w, bias, s_in = depthwise_case(1)
    qp = qparams_for(w, WEIGHT_SPEC)
    fit = fit_bias(bias, s_in, qp)
    for c in fit.channels:
        ratio = float(fit.qparams.scale[c]) / float(qp.scale[c])
        assert fit.sqnr_cost_db[c] == pytest.approx(20 * np.log10(ratio))


def test_nothing_changes_when_the_bias_fits():
    w, bias, s_in = depthwise_case()
    w[2] /= 1e-9
    w[5] /= 3e-10
    qp = qparams_for(w, WEIGHT_SPEC)
    fit = fit_bias(bias, s_in, qp, weight_values=w)
    assert fit.channels == ()
    assert np.array_equal(fit.qparams.scale, qp.scale)
    assert not np.any(fit.sqnr_cost_db)


def test_per_tensor_raises_the_one_scale():
    w, bias, s_in = depthwise_case()
    w *= 1e-9
    spec = QuantSpec(QType(8, True, narrow_range=True), PerTensor(), symmetric=True)
    qp = qparams_for(w, spec)
    fit = fit_bias(bias, s_in, qp)
    assert fit.qparams.scale.shape == ()
    assert all(exact_ratio(b, s_in, fit.qparams.scale) <= BIAS_LIMIT for b in bias)
    worst = float(np.max(np.abs(bias)))
    assert exact_ratio(worst, s_in, np.nextafter(fit.qparams.scale, np.float32(0))) > BIAS_LIMIT


@pytest.mark.parametrize("bias,s_in,pattern", [
    (np.array([np.nan] * 8, np.float32), 0.02, "NaN"),
    (np.zeros(8, np.float32), 0.0, "input scale"),
    (np.zeros(3, np.float32), 0.02, "3 channels"),
])
def test_bad_arguments(bias, s_in, pattern):
    w, _, _ = depthwise_case()
    with pytest.raises(ValueError, match=pattern):
        fit_bias(bias, s_in, qparams_for(w, WEIGHT_SPEC))


def depthwise_model():
    """input (N, 4, 8, 8) → depthwise Conv 3×3 whose channel 1 has ~1e-9 weights, bias 0.5."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    w = rng.normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32)  # (C, 1, kh, kw)
    w[1] *= 1e-9
    b = np.array([0.1, 0.5, -0.2, 0.3], np.float32)
    g = helper.make_graph(
        [helper.make_node("Conv", ["input", "dw.w", "dw.b"], ["y"], name="dw", group=4,
                          pads=[1, 1, 1, 1])], "dw",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])],
        [numpy_helper.from_array(w, "dw.w"), numpy_helper.from_array(b, "dw.b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m, w, b


def test_fitted_weight_qparams_let_the_pipeline_keep_the_bias_int32(tmp_path):
    """The quantizer fits the bias itself: its weight qparams equal fit_bias applied to the
    round-to-nearest qparams, and the same qparams given back as an override change nothing."""
    import onnxruntime as ort

    from edgequant.ptq.quantizer import quantize
    from edgequant.qparams import qparams_for
    from edgequant.recipes.builtin import get_recipe
    from edgequant.spec import PerChannel

    model, w, b = depthwise_model()
    data = {"input": np.random.default_rng(4).normal(0, 1, (16, 4, 8, 8)).astype(np.float32)}
    first = quantize(model, "w8a8", data, check_speed=False)
    assert not any("kept float" in n for n in first.report["notes"])
    assert any("'dw.w'" in n and "[1]" in n for n in first.report["notes"])
    spec = replace(get_recipe("w8a8").weights, granularity=PerChannel(0))
    fan_in = w.size // b.size
    limit = BIAS_LIMIT - accumulator_headroom(fan_in)  # room for the int32 dot product
    fit = fit_bias(b, first.qparams["input"].scale, qparams_for(w, spec), weight_values=w,
                   limit=limit)
    assert fit.channels == (1,)
    np.testing.assert_array_equal(first.qparams["dw.w"].scale, fit.qparams.scale)
    second = quantize(model, "w8a8", data, check_speed=False, qparams={"dw.w": fit.qparams})
    assert "dw.b" in second.qparams  # the bias is int32
    out = second.save(tmp_path / "q.onnx")
    ref = ort.InferenceSession(model.SerializeToString()).run(None, data)[0]
    got = ort.InferenceSession(str(out)).run(None, data)[0]
    # channel 1 is the bias alone (weights ~1e-9): int32 at the raised scale keeps it exact
    # to within one bias step; the output quantization (8-bit over the whole tensor) dominates
    step = float(second.qparams["y"].scale)
    assert np.max(np.abs(got[:, 1] - ref[:, 1])) <= step


def test_quantizer_raises_weight_scales_instead_of_float_biases():
    """A depthwise conv whose folded weights are tiny: every bias stays int32 (none float), the
    note names the channels, and onnxruntime's output stays close to float."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    import edgequant as eq

    rng = np.random.default_rng(0)
    c = 8
    w = rng.normal(0, 0.3, (c, 1, 3, 3)).astype(np.float32)
    w[2] *= 1e-7  # a dead channel after BN folding
    w[5] *= 1e-6
    b = rng.normal(0, 0.5, c).astype(np.float32)
    b[2], b[5] = 3.0, -2.0
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="dw", group=c, pads=[1] * 4)],
        "dw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", c, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", c, 8, 8])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    x = rng.uniform(-1, 1, (16, c, 8, 8)).astype(np.float32)
    qm = eq.quantize(model, "w8a8", calibration={"x": x})
    assert not any("kept float" in n for n in qm.report["notes"])
    note = next(n for n in qm.report["notes"] if "raised so bias" in n)
    assert "[2, 5]" in note
    inits = {t.name: t for t in qm.model.graph.initializer}
    assert any(t.data_type == TensorProto.INT32 for t in inits.values())
    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    got = ort.InferenceSession(qm.model.SerializeToString()).run(None, {"x": x})[0]
    out_scale = qm.qparams["y"].scale
    assert np.max(np.abs(got - ref)) < 3 * float(out_scale)  # a few output steps
    onnx.checker.check_model(qm.model)
