"""Whole-graph QAT prepared from a recipe with ``adaround=True`` starts from AdaRound's integers.

PTQ (``edgequant.quantize``) ships learned roundings (each weight ⌊w/s⌋ or ⌊w/s⌋ + 1) and the
biases corrected after them; QAT used to start from round-to-nearest of the float weights
with uncorrected biases. Now the untrained QAT model converts to the PTQ model bit for bit:
same integers, same qparams, same onnxruntime outputs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import numpy_helper
from torch_models import lite_net, run_ort

import edgequant
from edgequant.errors import EdgequantError, RecipeError
from edgequant.qparams import QParams
from edgequant.recipes.builtin import get_recipe
from edgequant.spec import PerChannel, QType, QuantSpec
from edgequant.torch.capture import capture, qat_from_capture
from edgequant.torch.graph_convert import convert_graph

X = torch.randn(48, 3, 16, 16, generator=torch.Generator().manual_seed(3))
#: iterations only (no wall-time budget): AdaRound is bit-reproducible, so two runs agree
FAST = {"adaround": True, "adaround_iters": 200, "adaround_seconds_per_layer": 0,
        "adaround_rows": 512}
#: onnxruntime runs int4-weight convs as DequantizeLinear → float Conv → Q (MLAS float sums),
#: which no emulation reproduces: w4a8_mixed's fake quant vs onnxruntime is 1 output LSB on
#: 1 of 480 logits here (docs/qat.md); the reference interpreter and LiteRT are exact
ORT_INT4_LSB = 1


@pytest.fixture(scope="module")
def cap():
    return capture(lite_net(), X[:2])


def _ints(model) -> dict[str, np.ndarray]:
    """The integer weights a QDQ model stores, by initializer name."""
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer
            if t.data_type in (2, 3, 21, 22) and len(t.dims) > 1}  # (u)int8, (u)int4


@pytest.mark.parametrize("recipe,learn_scales,more", [
    ("w4a8", False, {}), ("w4a8", True, {}), ("w8a8", False, {}), ("w4a8_mixed", False, {}),
    ("w8a8", False, {"range_search": True})])  # PTQ's best w8a8 (bench/ptq_recovery.py)
def test_untrained_qat_from_adaround_is_the_ptq_model(cap, recipe, learn_scales, more):
    cal = X[:32].numpy()
    rec = get_recipe(recipe).with_options(**FAST, **more)
    qat = qat_from_capture(cap, rec, calibration=cal, learn_scales=learn_scales)
    ptq = edgequant.quantize(cap.graph, rec, calibration={qat.input_names[0]: cal})
    rtn = edgequant.quantize(cap.graph, recipe, calibration={qat.input_names[0]: cal})
    qat.eval()
    with torch.no_grad():
        fq = qat(X).numpy()  # (48, 10); the weight quantizers set their qparams here
    mine = {**qat.activation_qparams(), **qat.weight_qparams()}
    assert set(mine) <= set(ptq.qparams)
    assert all(mine[k] == ptq.qparams[k] for k in mine), [
        k for k in mine if mine[k] != ptq.qparams[k]]
    converted = convert_graph(qat).model
    ours, theirs, nearest = _ints(converted), _ints(ptq.model), _ints(rtn.model)
    assert ours.keys() == theirs.keys()
    assert all(np.array_equal(ours[k], theirs[k]) for k in theirs)  # AdaRound's integers
    assert any(not np.array_equal(theirs[k], nearest[k]) for k in theirs)  # not RTN's
    y = run_ort(ptq.model, X.numpy())  # (48, 10)
    assert np.array_equal(run_ort(converted, X.numpy()), y)
    lsb = float(qat.activation_qparams()[qat.output_names[0]].scale)
    if recipe == "w4a8_mixed":
        assert np.max(np.abs(fq - y)) <= ORT_INT4_LSB * lsb * (1 + 1e-6)
    else:
        assert np.array_equal(fq, y)
    assert qat.ptq_report["adaround"]["mode"] == ptq.report["adaround"]["mode"]


def test_lsq_scale_moves_keep_adaround_integers_within_half_a_step(cap):
    """Decision (docs/qat.md): the learned rounding lives in the float weights, set on the
    grid points ``s·q``. A learned (LSQ) scale that moves re-rounds them to nearest: every
    integer stays AdaRound's while ``|q|·|Δs/s'| < 1/2``; a larger move does not restore the
    old rounding (QAT owns the weights from the first step)."""
    cal = X[:32].numpy()
    qat = qat_from_capture(cap, get_recipe("w4a8").with_options(**FAST), calibration=cal,
                           learn_scales=True)
    before = _ints(convert_graph(qat).model)
    qat.eval()
    with torch.no_grad():
        qat(X[:2])  # LSQ scales initialise at PTQ's
        for q in qat.weight_quant.values():  # 7 · (1 − 1/1.06) ≈ 0.40 of a step at most
            q.scale.mul_(1.06)
        after = _ints(convert_graph(qat).model)
        assert all(np.array_equal(after[k], before[k]) for k in before)
        for q in qat.weight_quant.values():  # now 7 · (1 − 1/1.3) ≈ 1.6 steps at the edges
            q.scale.mul_(1.3 / 1.06)
        moved = _ints(convert_graph(qat).model)
    assert any(not np.array_equal(moved[k], before[k]) for k in before)


def test_adaround_without_calibration_is_refused(cap):
    with pytest.raises(RecipeError, match=r"adaround=True.*calibration="):
        qat_from_capture(cap, get_recipe("w4a8").with_options(adaround=True))


def test_grid_clip_reproduces_the_target_scale_bit_for_bit():
    """On 2000 random channels of int4 and int8 weights the quantizer's qparams from the
    grid-point weights equal the target exactly (α searched in float32 ulps; where no α fits,
    about 2–5 % of these channels, the largest weights move by ≤ 1e-4 relative)."""
    from edgequant.primitives import dequantize, quantize
    from edgequant.torch.adaround_start import EXTREME_MOVE, grid_clip
    from edgequant.torch.quantizers import clipped_qparams

    rng = np.random.default_rng(0)
    for bits in (4, 8):
        spec = QuantSpec(QType(bits, True, narrow_range=True), PerChannel(0), symmetric=True)
        w = (rng.standard_normal((2000, 9)) * rng.uniform(1e-3, 10, (2000, 1))).astype(np.float32)
        alpha0 = rng.uniform(0.5, 1.0, 2000).astype(np.float32)  # PTQ's clip search ratios
        target = clipped_qparams(w, alpha0, spec)
        q = quantize(w, target)
        q = np.clip(q + rng.integers(-1, 2, q.shape), spec.qtype.qmin, spec.qtype.qmax)  # moved
        grid = dequantize(q.astype(target.qtype.numpy_dtype), target)  # (2000, 9) float32
        moved, alpha = grid_clip(grid, target, spec, "w")
        assert clipped_qparams(moved, alpha, spec) == target
        assert np.array_equal(quantize(moved, target), q)  # the integers are untouched
        change = np.abs(moved - grid) / np.abs(grid).max(1, keepdims=True)  # (2000, 9)
        assert np.max(change) <= EXTREME_MOVE * 1.001
        assert 0 < np.mean(np.any(change > 0, 1)) < 0.1  # a few channels needed the move


def test_grid_clip_names_the_weight_when_no_ratio_fits():
    from edgequant.torch.adaround_start import grid_clip

    spec = QuantSpec(QType(4, True, narrow_range=True), PerChannel(0), symmetric=True)
    target = QParams(np.array([0.1, 0.2], np.float32), np.zeros(2, np.int8), spec.qtype,
                     spec.granularity)
    w = np.array([[0.7, -0.1], [0.0, 0.0]], np.float32)  # channel 1 all zero: no range
    with pytest.raises(EdgequantError, match=r"conv\.weight.*\[1\]"):
        grid_clip(w, target, spec, "conv.weight")
