"""Fidelity metrics against hand-computed values and independent formulas."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import cosine as cosine_distance

from edgequant.analysis.metrics import accuracy, cosine, lsb_error, sqnr_db, top1_agreement

#: float64 metrics vs an independent float64 implementation: only summation order differs.
RTOL = 1e-9


def test_sqnr_hand_values():
    # Σref² = 1 + 4 + 4 = 9, Σ(ref − test)² = 1 → 10·log10(9)
    assert sqnr_db([1.0, 2.0, 2.0], [1.0, 2.0, 3.0]) == pytest.approx(10 * math.log10(9))
    # noise power equal to signal power → 0 dB; 10× smaller noise amplitude → 20 dB
    assert sqnr_db([3.0, 4.0], [0.0, 0.0]) == pytest.approx(0.0)
    assert sqnr_db([10.0, 0.0], [9.0, 0.0]) == pytest.approx(20.0)


def test_sqnr_identical_is_inf_and_zero_signal_is_minus_inf():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert sqnr_db(x, x.copy()) == math.inf
    assert sqnr_db(np.zeros(3), np.ones(3)) == -math.inf


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(-1000, 1000), min_size=1, max_size=20).flatmap(
        lambda r: st.tuples(st.just(r), st.lists(st.integers(-1000, 1000),
                                                 min_size=len(r), max_size=len(r)))
    )
)
def test_sqnr_matches_exact_fraction(pair):
    """Integer-valued data: the power ratio is an exact Fraction, only log10 is float."""
    ref, test = pair
    signal = sum(Fraction(v) ** 2 for v in ref)
    noise = sum((Fraction(a) - Fraction(b)) ** 2 for a, b in zip(ref, test, strict=True))
    assume(noise > 0 and signal > 0)
    want = 10 * math.log10(signal / noise)
    assert sqnr_db(np.array(ref), np.array(test)) == pytest.approx(want, rel=RTOL, abs=1e-12)


def test_cosine_hand_values():
    ref = np.array([[1.0, 0.0], [1.0, 1.0]])
    test = np.array([[0.0, 1.0], [2.0, 2.0]])
    assert cosine(ref, test) == pytest.approx(0.5)  # rows: 0 and 1
    # both-zero sample counts as identical, one-zero as orthogonal
    assert cosine(np.zeros((1, 3)), np.zeros((1, 3))) == 1.0
    assert cosine(np.zeros((1, 3)), np.ones((1, 3))) == 0.0


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.float32, (5, 2, 3), elements=st.floats(-100, 100, width=32)),
    arrays(np.float32, (5, 2, 3), elements=st.floats(-100, 100, width=32)),
)
def test_cosine_matches_scipy(a, b):
    a64, b64 = a.reshape(5, -1).astype(np.float64), b.reshape(5, -1).astype(np.float64)
    nonzero = (np.linalg.norm(a64, axis=1) > 0) & (np.linalg.norm(b64, axis=1) > 0)
    assume(nonzero.all())  # scipy leaves zero vectors undefined; tested by hand above
    want = np.mean([1 - cosine_distance(u, v) for u, v in zip(a64, b64, strict=True)])
    assert cosine(a, b) == pytest.approx(want, rel=RTOL, abs=1e-12)


def test_cosine_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        cosine(np.zeros((2, 3)), np.zeros((3, 2)))


def test_top1_agreement_and_accuracy():
    ref = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0]])
    test = np.array([[0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    assert top1_agreement(ref, test) == 0.5  # samples 0 and 2 agree
    assert accuracy(ref, np.array([1, 0, 0, 2])) == 0.75
    assert accuracy(ref[:, None, :], [1, 0, 0, 2]) == 0.75  # (N, 1, C) flattens per sample
    with pytest.raises(ValueError, match="labels"):
        accuracy(ref, [1, 0])


def test_lsb_error():
    a = np.array([0.0, 0.5, 1.0])
    b = np.array([0.0, 0.75, 1.0])
    assert lsb_error(a, b, 0.25) == 1.0
    # per-channel scales broadcast: channel 1 has the finer scale, so 2 LSB there
    x = np.zeros((1, 2, 2))
    y = np.array([[[0.1, 0.0], [0.0, 0.1]]])
    assert lsb_error(x, y, np.array([0.1, 0.05]).reshape(1, 2, 1)) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="scale"):
        lsb_error(a, b, 0.0)
