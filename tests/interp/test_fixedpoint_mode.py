"""``fixedpoint`` requantization vs an exact ``fractions.Fraction`` oracle.

The oracle derives the int32 multiplier and shift from the float64 real multiplier with exact
rational arithmetic and applies TFLite's two roundings to exact int64 accumulators, as gemmlowp
documents them: ``SaturatingRoundingDoublingHighMul`` rounds ``a·b / 2^31`` half *up* (its
nudge is ``1 − 2^30`` for negative products and C++ division truncates, so −1.5 → −1), then
``RoundingDivideByPOT`` rounds ``x / 2^e`` half away from zero (−1.5 → −2). The interpreter must
match it bit for bit, and stay within 1 LSB of the ideal single rounding. Exact ties at each
step, positive and negative, are built on purpose (random data almost never lands on one).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from single_op import run_ref, single_op_model

#: fixed point rounds twice (high-mul, then shift) and uses a 31-bit multiplier: at most 1 LSB
#: from round(acc · real) — the documented TFLite behaviour.
MAX_LSB_FROM_IDEAL = 1
EXAMPLES = 30


def half_away(q: Fraction) -> int:
    """Round a rational half away from zero."""
    n = abs(q)
    r = int(n.numerator * 2 + n.denominator) // (2 * n.denominator)
    return r if q >= 0 else -r


def half_up(q: Fraction) -> int:
    """Round a rational half toward +∞ (gemmlowp ``SaturatingRoundingDoublingHighMul``)."""
    return math.floor(q + Fraction(1, 2))


def multiplier_oracle(real: float) -> tuple[int, int]:
    """(m, shift) with real ≈ m · 2^(shift − 31), m in [2^30, 2^31], exactly."""
    r = Fraction(real)
    shift = 0
    while r >= Fraction(2) ** shift:
        shift += 1
    while r < Fraction(2) ** (shift - 1):
        shift -= 1
    m = half_away(r * Fraction(2) ** (31 - shift))
    if m == 2**31:
        m, shift = 2**30, shift + 1
    return m, shift


def requant_oracle(acc: int, real: float, zp: int, qmin: int, qmax: int) -> int:
    m, shift = multiplier_oracle(real)
    left, right = max(shift, 0), max(-shift, 0)
    high = half_up(Fraction(acc * 2**left * m, 2**31))
    return min(max(half_away(Fraction(high, 2**right)) + zp, qmin), qmax)


def check(acc: np.ndarray, real: np.ndarray, zp: int, out: np.ndarray, qmin: int, qmax: int):
    real = np.broadcast_to(real, acc.shape)
    for idx in np.ndindex(acc.shape):
        a, r = int(acc[idx]), float(real[idx])
        assert int(out[idx]) == requant_oracle(a, r, zp, qmin, qmax), (idx, a, r)
        ideal = min(max(half_away(Fraction(a) * Fraction(r)) + zp, qmin), qmax)
        assert abs(int(out[idx]) - ideal) <= MAX_LSB_FROM_IDEAL


def _identity_matmul(acc: np.ndarray, real: float) -> np.ndarray:
    """QLinearMatMul of an (n, 1) int8 column by [[1]] with multiplier ``real``: acc = a."""
    a = acc.astype(np.int8).reshape(-1, 1)
    consts = dict(sa=np.float32(real), za=np.int8(0), b=np.ones((1, 1), np.int8),
                  sb=np.float32(1), zb=np.int8(0), sy=np.float32(1), zy=np.int8(0))
    model = single_op_model("QLinearMatMul", {"a": a}, consts,
                            ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"])
    return run_ref(model, {"a": a}, requantization="fixedpoint")[0].reshape(-1)


#: Multipliers exact in float32 whose mantissa is 3·2^29 (0.75 · 2^31): ``acc · 3/4`` is a tie
#: for acc ≡ 2 (mod 4), so SRDHM ties occur with no right shift (0.75) and ties of the
#: right shift occur after it (0.375 = 0.75 / 2, 0.1875 = 0.75 / 4).
TIE_MULTIPLIERS = (0.75, 0.375, 0.1875)


@pytest.mark.parametrize("real", TIE_MULTIPLIERS)
def test_exact_ties_round_like_tflite(real):
    acc = np.arange(-128, 128)
    m, shift = multiplier_oracle(real)
    assert m == 3 * 2**29 and shift == int(math.log2(real / 0.75))  # what the ties assume
    left, right = max(shift, 0), max(-shift, 0)
    ties = {"srdhm+": 0, "srdhm-": 0, "pot+": 0, "pot-": 0}
    for a in acc.tolist():
        u = Fraction(a * 2**left * m, 2**31)  # what SRDHM rounds, exactly
        if u.denominator == 2:
            ties["srdhm+" if u > 0 else "srdhm-"] += 1
        v = Fraction(half_up(u), 2**right)  # what RoundingDivideByPOT rounds, exactly
        if right and v.denominator == 2:
            ties["pot+" if v > 0 else "pot-"] += 1
    stage = ("srdhm+", "srdhm-") if right == 0 else ("pot+", "pot-")
    assert all(ties[k] > 0 for k in stage), ties  # the inputs really sit on ties, both signs
    check(acc.reshape(-1, 1), np.float64(real), 0, _identity_matmul(acc, real).reshape(-1, 1),
          -128, 127)


def test_tie_directions_by_hand():
    """SRDHM: ±1.5 → 2 / −1 and ±4.5 → 5 / −4 (half up); RoundingDivideByPOT: ±1.5 → ±2."""
    got = _identity_matmul(np.array([2, -2, 6, -6]), 0.75)  # acc · 0.75 = ±1.5, ±4.5
    np.testing.assert_array_equal(got, [2, -1, 5, -4])
    got = _identity_matmul(np.array([4, -4, 12, -12]), 0.375)  # SRDHM ±3, ±9, then / 2
    np.testing.assert_array_equal(got, [2, -2, 5, -5])


@settings(max_examples=EXAMPLES, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), per_column=st.booleans())
def test_qlinearmatmul_fixedpoint(seed, per_column):
    rng = np.random.default_rng(seed)
    m, k, n = int(rng.integers(1, 6)), int(rng.integers(1, 200)), int(rng.integers(1, 6))
    a = rng.integers(-128, 128, (m, k)).astype(np.int8)
    b = rng.integers(-127, 128, (k, n)).astype(np.int8)
    sa, sy = np.float32(rng.uniform(0.001, 0.1)), np.float32(rng.uniform(0.01, 2.0))
    sb = (rng.uniform(0.001, 0.05, n) if per_column else rng.uniform(0.001, 0.05, ())).astype(
        np.float32)
    za, zy = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
    consts = dict(sa=sa, za=np.int8(za), b=b, sb=sb, zb=np.zeros(sb.shape, np.int8), sy=sy,
                  zy=np.int8(zy))
    model = single_op_model("QLinearMatMul", {"a": a}, consts,
                            ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"])
    out = run_ref(model, {"a": a}, requantization="fixedpoint")[0]
    acc = (a.astype(np.int64) - za) @ b.astype(np.int64)  # exact int64 oracle accumulator
    real = np.float64(sa) * sb.astype(np.float64) / np.float64(sy)
    check(acc, real, zy, out, -128, 127)


@settings(max_examples=EXAMPLES, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_qlinearconv_fixedpoint(seed):
    rng = np.random.default_rng(seed)
    c, m = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    x = rng.integers(0, 256, (1, c, 5, 6)).astype(np.uint8)
    w = rng.integers(-127, 128, (m, c, 3, 3)).astype(np.int8)
    bias = rng.integers(-3000, 3000, m).astype(np.int32)
    sx, sy = np.float32(rng.uniform(0.002, 0.05)), np.float32(rng.uniform(0.02, 1.0))
    sw = rng.uniform(0.001, 0.05, m).astype(np.float32)
    zx, zy = int(rng.integers(0, 256)), int(rng.integers(0, 256))
    consts = dict(sx=sx, zx=np.uint8(zx), w=w, sw=sw, zw=np.zeros(m, np.int8), sy=sy,
                  zy=np.uint8(zy), b=bias)
    model = single_op_model("QLinearConv", {"x": x}, consts,
                            ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy", "b"], pads=[1, 1, 1, 1])
    out = run_ref(model, {"x": x}, requantization="fixedpoint")[0]
    xp = np.pad(x.astype(np.int64) - zx, ((0, 0), (0, 0), (1, 1), (1, 1)))
    acc = np.zeros(out.shape, np.int64)  # direct convolution loops, the oracle
    for o in range(m):
        for i in range(5):
            for j in range(6):
                acc[0, o, i, j] = (xp[0, :, i:i + 3, j:j + 3] * w[o].astype(np.int64)).sum()
    acc += bias.reshape(1, -1, 1, 1)
    real = (np.float64(sx) * sw.astype(np.float64) / np.float64(sy)).reshape(1, -1, 1, 1)
    check(acc, real, zy, out, 0, 255)


@settings(max_examples=EXAMPLES, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), op=st.sampled_from(["QLinearAdd", "QLinearMul"]))
def test_binary_fixedpoint_within_one_lsb_of_exact(seed, op):
    """TFLite's integer Add / Mul: ≤ 1 LSB from the exactly rounded real result."""
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (4, 33)).astype(np.int8)
    b = rng.integers(-128, 128, (4, 33)).astype(np.int8)
    sa, sb = np.float32(rng.uniform(0.005, 0.1)), np.float32(rng.uniform(0.005, 0.1))
    sc = np.float32(rng.uniform(0.01, 0.2) if op == "QLinearAdd" else rng.uniform(0.001, 0.05))
    za, zb, zc = (int(rng.integers(-128, 128)) for _ in range(3))
    consts = dict(sa=sa, za=np.int8(za), sb=sb, zb=np.int8(zb), sc=sc, zc=np.int8(zc))
    model = single_op_model(op, {"a": a, "b": b}, consts,
                            ["a", "sa", "za", "b", "sb", "zb", "sc", "zc"], domain="com.microsoft")
    out = run_ref(model, {"a": a, "b": b}, requantization="fixedpoint")[0]
    for idx in np.ndindex(a.shape):
        ra = Fraction(float(sa)) * (int(a[idx]) - za)
        rb = Fraction(float(sb)) * (int(b[idx]) - zb)
        real = (ra + rb if op == "QLinearAdd" else ra * rb) / Fraction(float(sc))
        ideal = min(max(half_away(real) + zc, -128), 127)
        assert abs(int(out[idx]) - ideal) <= MAX_LSB_FROM_IDEAL, (idx, int(out[idx]), ideal)


def test_metadata_selects_fixedpoint():
    a = np.array([[100, -100, 37]], np.int8)
    consts = dict(sa=np.float32(0.05), za=np.int8(0), b=np.ones((3, 1), np.int8),
                  sb=np.float32(0.01), zb=np.int8(0), sy=np.float32(0.003), zy=np.int8(0))
    model = single_op_model("QLinearMatMul", {"a": a}, consts,
                            ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"])
    model.metadata_props.add(key="edgequant.requantization", value="fixedpoint")
    from edgequant.interp import Interpreter

    assert Interpreter(model).requantization == "fixedpoint"
    assert Interpreter(model, requantization="float").requantization == "float"
