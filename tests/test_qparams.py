"""choose_qparams / reduce_range / qparams_for: properties and onnxruntime's formula as oracle.

Oracle: ``onnxruntime.quantization.quant_utils.compute_scale_zp`` (what ORT's static
quantizer uses). The one documented difference: a zero range gets ``MIN_SCALE`` here and
scale 1.0 in onnxruntime, so that case is tested on its own.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgequant.primitives import dequantize, quantize
from edgequant.qparams import MIN_SCALE, choose_qparams, qparams_for, reduce_range
from edgequant.spec import PerChannel, PerGroup, PerTensor, QType, QuantSpec

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

QTYPES = [
    QType(8, True), QType(8, False), QType(8, True, True), QType(16, True), QType(16, False),
    QType(4, True), QType(4, False), QType(4, True, True), QType(2, True), QType(12, False),
]

finite32 = st.floats(-2.0**100, 2.0**100, allow_nan=False, allow_subnormal=False, width=32)
ranges = st.tuples(finite32, finite32).map(lambda t: (min(t), max(t)))


def spec(qt: QType, symmetric: bool, gran=None) -> QuantSpec:
    return QuantSpec(qtype=qt, granularity=gran or PerTensor(), symmetric=symmetric)


@SETTINGS
@given(qt=st.sampled_from(QTYPES), symmetric=st.booleans(), rng=ranges)
def test_matches_onnxruntime_compute_scale_zp(qt, symmetric, rng):
    from onnxruntime.quantization.quant_utils import compute_scale_zp

    lo, hi = np.float32(rng[0]), np.float32(rng[1])
    lo0, hi0 = min(float(lo), 0.0), max(float(hi), 0.0)
    width = 2 * max(-lo0, hi0) if symmetric else hi0 - lo0
    if width / (qt.qmax - qt.qmin) < MIN_SCALE:
        # documented difference: edgequant floors tiny scales at MIN_SCALE, onnxruntime
        # replaces scales below float32 tiny by 1.0 (and keeps the rest)
        return
    qp = choose_qparams(lo, hi, spec(qt, symmetric))
    zp_ref, scale_ref = compute_scale_zp(
        np.array(lo), np.array(hi), np.array(qt.qmin, np.int64), np.array(qt.qmax, np.int64),
        symmetric=symmetric,
    )
    assert qp.scale.dtype == np.float32 and scale_ref.dtype == np.float32
    assert qp.scale.tobytes() == scale_ref.tobytes()
    assert int(qp.zero_point) == int(zp_ref)


@SETTINGS
@given(qt=st.sampled_from(QTYPES), symmetric=st.booleans(), rng=ranges)
def test_zero_is_exactly_representable(qt, symmetric, rng):
    qp = choose_qparams(np.float32(rng[0]), np.float32(rng[1]), spec(qt, symmetric))
    zero = np.zeros(3, np.float32)
    assert dequantize(quantize(zero, qp), qp).tobytes() == zero.tobytes()
    assert qt.qmin <= int(qp.zero_point) <= qt.qmax


@SETTINGS
@given(qt=st.sampled_from(QTYPES), symmetric=st.booleans(), rng=ranges)
def test_range_ends_are_covered_within_one_step(qt, symmetric, rng):
    """min(lo, 0) and max(hi, 0) come back within one step: no real clipping of the range."""
    qp = choose_qparams(np.float32(rng[0]), np.float32(rng[1]), spec(qt, symmetric))
    ends = np.array([min(rng[0], 0.0), max(rng[1], 0.0)], np.float32)
    back = dequantize(quantize(ends, qp), qp).astype(np.float64)
    # one step, plus float32 rounding of x / scale at the ends of a 2^16-level grid
    tol = float(qp.scale) * (1 + 2.0**-7)
    assert np.all(np.abs(back - ends) <= tol)


@pytest.mark.parametrize("value", [0.0, 3.5, -1e-3, 1e30])
@pytest.mark.parametrize("qt", QTYPES, ids=lambda q: q.name)
def test_zero_range_tensor_gives_finite_positive_scale(qt, value):
    x = np.full((2, 3), value, np.float32)
    for symmetric in (True, False):
        qp = qparams_for(x, spec(qt, symmetric))
        assert np.isfinite(qp.scale) and qp.scale > 0
        assert np.all(np.isfinite(dequantize(quantize(x, qp), qp)))
    allzero = qparams_for(np.zeros(4, np.float32), spec(qt, False))
    assert float(allzero.scale) == np.float32(MIN_SCALE)


@SETTINGS
@given(
    bits=st.integers(2, 16),
    symmetric=st.booleans(),
    rng=ranges,
    x=st.lists(st.floats(-(2.0**127), 2.0**127, width=32), min_size=1, max_size=20),
)
def test_narrow_range_never_yields_most_negative(bits, symmetric, rng, x):
    qt = QType(bits, True, narrow_range=True)
    qp = choose_qparams(np.float32(rng[0]), np.float32(rng[1]), spec(qt, symmetric))
    q = quantize(np.array(x, np.float32), qp)
    assert int(q.min()) >= -(2 ** (bits - 1)) + 1


@SETTINGS
@given(qt=st.sampled_from(QTYPES), rng=ranges)
def test_symmetric_zero_point_is_zero_for_signed_midpoint_for_unsigned(qt, rng):
    qp = choose_qparams(np.float32(rng[0]), np.float32(rng[1]), spec(qt, True))
    expected = 0 if qt.signed else 2 ** (qt.bits - 1)
    assert int(qp.zero_point) == expected


@pytest.mark.parametrize(
    "gran,shape",
    [(PerChannel(0), (4,)), (PerChannel(-1), (5,)), (PerGroup(1, 2), (4, 2, 5)),
     (PerGroup(1, 3), (4, 1, 5)), (PerGroup(2, 5), (4, 3, 1))],
    ids=str,
)
@pytest.mark.parametrize("symmetric", [True, False])
def test_granular_qparams_equal_per_tensor_qparams_of_each_slice(gran, shape, symmetric):
    """Oracle: per-tensor choose_qparams on every channel / block slice taken by hand."""
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((4, 3, 5)) * rng.uniform(0.01, 10, (4, 1, 1))).astype(np.float32)
    qt = QType(8, True)
    qp = qparams_for(w, spec(qt, symmetric, gran))
    assert qp.scale.shape == shape and qp.zero_point.shape == shape
    lo, hi = reduce_range(w, gran)
    axis = gran.axis % w.ndim
    for idx in np.ndindex(shape):
        if isinstance(gran, PerChannel):
            piece = np.take(w, idx[0], axis=axis)
        else:
            sl = [slice(i, i + 1) for i in idx]
            sl[axis] = slice(idx[axis] * gran.size, (idx[axis] + 1) * gran.size)
            piece = w[tuple(sl)]
        ref = qparams_for(piece, spec(qt, symmetric))
        assert (lo[idx], hi[idx]) == (piece.min(), piece.max())
        assert qp.scale[idx] == ref.scale and qp.zero_point[idx] == ref.zero_point


def test_non_finite_range_is_rejected():
    with pytest.raises(ValueError, match="not finite"):
        choose_qparams(np.float32(np.nan), np.float32(1.0), spec(QType(8), False))
