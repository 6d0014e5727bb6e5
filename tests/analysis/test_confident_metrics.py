"""``confident_agreement`` and ``top1_in_topk`` against brute-force Python oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgequant.analysis.metrics import confident_agreement, softmax_top1, top1_in_topk


def _argmax(row: list[float]) -> int:
    best = 0
    for i, v in enumerate(row):
        if v > row[best]:
            best = i
    return best


def _oracle_confident(ref: np.ndarray, test: np.ndarray, p: float) -> tuple[float, int]:
    hits, n = 0, 0
    for r, t in zip(ref.tolist(), test.tolist(), strict=True):
        top = max(r)
        prob = 1.0 / math.fsum(math.exp(v - top) for v in r)
        if prob >= p:
            n += 1
            hits += _argmax(r) == _argmax(t)
    return (hits / n if n else float("nan")), n


def _oracle_topk(ref: np.ndarray, test: np.ndarray, k: int) -> float:
    inside = 0
    for r, t in zip(ref.tolist(), test.tolist(), strict=True):
        c = _argmax(r)
        inside += sum(v > t[c] for v in t) < k
    return inside / len(ref)


logits = st.integers(1, 12).flatmap(lambda n: st.integers(2, 9).flatmap(lambda d: st.tuples(
    *[st.lists(st.lists(st.integers(-40, 40).map(lambda v: v / 8), min_size=d, max_size=d),
               min_size=n, max_size=n) for _ in range(2)])))


@settings(max_examples=60, deadline=None)
@given(logits, st.sampled_from([0.2, 0.5, 0.9]), st.integers(1, 6))
def test_metrics_match_brute_force(pair, p, k):
    ref, test = (np.array(x, np.float32) for x in pair)
    got, n = confident_agreement(ref, test, p)
    want, wn = _oracle_confident(ref, test, p)
    assert n == wn
    assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, abs=1e-12)
    assert top1_in_topk(ref, test, k) == pytest.approx(_oracle_topk(ref, test, k), abs=1e-12)


def test_hand_values():
    ref = np.array([[10.0, 0.0, 0.0], [0.0, 0.1, 0.0], [0.0, 0.0, 9.0]])  # sure, unsure, sure
    test = np.array([[0.0, 1.0, 0.5], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    # the two confident rows: row 0 disagrees, row 2 agrees; the unsure row is left out
    assert confident_agreement(ref, test, 0.5) == (0.5, 2)
    # float's class 0 is third of three in row 0, class 1 second in row 1, class 2 first in row 2
    assert top1_in_topk(ref, test, 1) == pytest.approx(1 / 3)
    assert top1_in_topk(ref, test, 2) == pytest.approx(2 / 3)
    assert top1_in_topk(ref, test, 3) == 1.0
    assert softmax_top1(np.zeros((1, 4)))[0] == pytest.approx(0.25)
    nan, n = confident_agreement(np.zeros((2, 4)), np.zeros((2, 4)), 0.5)
    assert n == 0 and math.isnan(nan)
    with pytest.raises(ValueError, match="k=0"):
        top1_in_topk(ref, test, 0)
