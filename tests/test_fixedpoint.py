"""Fixed-point requantization against exact rational arithmetic and a pure-Python gemmlowp.

Two oracles:

* ``fractions.Fraction``: the exact value ``acc · real`` and the exact value with the
  *representable* multiplier ``acc · m · 2^(shift − 31)``, rounded by exact rules;
* a scalar port of gemmlowp's ``SaturatingRoundingDoublingHighMul`` /
  ``RoundingDivideByPOT`` and TFLite's ``MultiplyByQuantizedMultiplier`` on Python ints
  (unbounded, so no int64 emulation tricks are shared with the numpy implementation).

What the Fraction oracle pins down (each a test below):

* ``SaturatingRoundingDoublingHighMul(a, b) = floor(a·b / 2^31 + ½)``: round half *up*
  (toward +∞) — for a negative tie it rounds toward zero, not away;
* ``RoundingDivideByPOT(x, e)`` rounds ``x / 2^e`` half away from zero;
* the two-step rounding differs from one exact half-away rounding of
  ``acc · m · 2^(shift − 31)`` in exactly two documented situations, by exactly 1:
  (i) no right shift and the product is a negative tie (rounded toward zero), and
  (ii) a right shift and the first rounding lands exactly on a tie of the second, which
  then rounds away from zero (double rounding);
* edgequant saturates ``acc · 2^left_shift`` to int32 where TFLite's C++ overflows
  (undefined behaviour, wraps in practice) — the port here states the saturation.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from edgequant.fixedpoint import (
    INT32_MAX,
    INT32_MIN,
    quantize_multiplier,
    requantize,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)

SETTINGS = settings(max_examples=60, deadline=None)

#: Two roundings (SRDHM then RoundingDivideByPOT by >= 1 bit) are each at most ½ unit of
#: their own output: ½ · 2^-right + ½ <= ¾ away from the representable exact product.
TWO_STEP_ROUNDING_TOL = Fraction(3, 4)
#: The 31-bit multiplier is off by at most 2^-31 relative, so below |acc·real| < 2^29 its
#: error is < ¼ and the result is within ¾ + ¼ = 1 of the exact product.
WITHIN_ONE_LIMIT = 2**29

int32s = st.one_of(
    st.integers(INT32_MIN, INT32_MAX),
    st.integers(-(2**16), 2**16),
    st.sampled_from([INT32_MIN, INT32_MIN + 1, INT32_MAX, INT32_MAX - 1, -1, 0, 1]),
)
reals = st.one_of(
    st.floats(2.0**-40, 2.0**29),  # up to 2^30 would round to shift 31: rejected
    st.floats(1e-4, 4.0),  # typical input_scale · weight_scale / output_scale
    st.integers(-40, 29).map(lambda e: 2.0**e),  # exact powers of two
    st.integers(-40, 29).map(lambda e: math.ldexp(1 - 2.0**-40, e)),  # m rounds up to 2^31
)


# ---------------------------------------------------------------- exact rounding rules


def round_half_away(f: Fraction) -> int:
    return int(math.copysign(math.floor(abs(f) + Fraction(1, 2)), f))


def round_half_up(f: Fraction) -> int:
    return math.floor(f + Fraction(1, 2))


def is_tie(f: Fraction) -> bool:
    return f.denominator == 2


def sat32(v: int) -> int:
    return max(INT32_MIN, min(INT32_MAX, v))


# ---------------------------------------------------------------- pure-Python gemmlowp port


def py_srdhm(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul on Python ints."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    num = ab + nudge
    quotient = abs(num) >> 31  # C++ '/' truncates toward zero
    return quotient if num >= 0 else -quotient


def py_rdbpot(x: int, exponent: int) -> int:
    """gemmlowp RoundingDivideByPOT on Python ints (two's complement '&' and '>>')."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def py_multiply_by_quantized_multiplier(x: int, m: int, shift: int) -> int:
    """TFLite MultiplyByQuantizedMultiplier, with the left shift saturated to int32."""
    left, right = max(shift, 0), max(-shift, 0)
    return py_rdbpot(py_srdhm(sat32(x * (1 << left)), m), right)


# ---------------------------------------------------------------- quantize_multiplier


def expected_multiplier(real: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier from exact arithmetic: m·2^(shift−31) nearest to real."""
    r = Fraction(real)
    shift = math.floor(math.log2(real)) + 1
    while r >= Fraction(2) ** shift:  # make 2^(shift-1) <= r < 2^shift exactly
        shift += 1
    while r < Fraction(2) ** (shift - 1):
        shift -= 1
    m = round_half_away(r * Fraction(2) ** (31 - shift))
    if m == 2**31:
        m, shift = 2**30, shift + 1
    if shift < -31:
        return 0, 0
    return m, shift


@SETTINGS
@given(real=reals)
def test_quantize_multiplier_matches_exact_rounding(real):
    m, shift = quantize_multiplier(real)
    assert (m, shift) == expected_multiplier(real)
    if m:
        assert 2**30 <= m < 2**31
        representable = Fraction(m) * Fraction(2) ** (shift - 31)
        # nearest 31-bit mantissa: half a unit in its last place at most
        assert abs(representable - Fraction(real)) <= Fraction(2) ** (shift - 32)


def test_quantize_multiplier_edges():
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(2.0**-33) == (0, 0)  # shift would be -32: too small, → 0
    assert quantize_multiplier(math.ldexp(1 - 2.0**-40, -32)) == (2**30, -31)  # rounds up
    assert quantize_multiplier(2.0**-32) == (2**30, -31)  # smallest kept: shift −31
    assert quantize_multiplier(1.0) == (2**30, 1)  # >= 1 → left shift
    assert quantize_multiplier(0.5) == (2**30, 0)
    # just below 2^30 the mantissa rounds up to 2^31 → shift 31: rejected like 2^30 itself
    for bad in (-1.0, float("nan"), float("inf"), 2.0**30, 2.0**30 - 0.25):
        with pytest.raises(ValueError, match="multiplier"):
            quantize_multiplier(bad)


# ---------------------------------------------------------------- the gemmlowp primitives


@SETTINGS
@given(a=int32s, b=int32s)
def test_srdhm_is_round_half_up_of_the_doubled_high_product(a, b):
    got = int(saturating_rounding_doubling_high_mul(np.int64(a), np.int64(b)))
    assert got == py_srdhm(a, b)
    if not a == b == INT32_MIN:
        assert got == round_half_up(Fraction(a * b, 2**31))


def test_srdhm_saturates_and_rounds_negative_ties_toward_zero():
    assert int(saturating_rounding_doubling_high_mul(INT32_MIN, INT32_MIN)) == INT32_MAX
    assert int(saturating_rounding_doubling_high_mul(-1, 2**30)) == 0  # −½ → 0
    assert int(saturating_rounding_doubling_high_mul(1, 2**30)) == 1  # +½ → 1
    assert int(saturating_rounding_doubling_high_mul(-3, 2**30)) == -1  # −1.5 → −1


@SETTINGS
@given(x=int32s, exponent=st.integers(0, 31))
def test_rounding_divide_by_pot_is_round_half_away(x, exponent):
    got = int(rounding_divide_by_pot(np.int64(x), exponent))
    assert got == py_rdbpot(x, exponent) == round_half_away(Fraction(x, 2**exponent))


# ---------------------------------------------------------------- requantize


def check_requantize(acc: int, m: int, shift: int, real: Fraction | None) -> None:
    got = int(requantize(np.array([acc], np.int64), m, shift)[0])
    assert got == py_multiply_by_quantized_multiplier(acc, m, shift)
    left, right = max(shift, 0), max(-shift, 0)
    shifted = sat32(acc * 2**left)
    saturated = shifted != acc * 2**left
    if saturated:
        event("left shift saturated")
    u = Fraction(shifted * m, 2**31)  # what SRDHM rounds
    exact = u / 2**right  # = acc · m · 2^(shift − 31) when not saturated
    assert abs(got - exact) <= (Fraction(1, 2) if right == 0 else TWO_STEP_ROUNDING_TOL)
    if real is not None and not saturated and abs(acc * real) < WITHIN_ONE_LIMIT:
        assert abs(got - acc * real) <= 1
    single = round_half_away(exact)
    if got != single:
        first = round_half_up(u)
        negative_tie = right == 0 and is_tie(u) and u < 0  # case (i)
        double = right > 0 and first != u and is_tie(Fraction(first, 2**right))  # case (ii)
        assert negative_tie or double, (acc, m, shift)
        assert abs(got - single) == 1
        event("two-step rounding differs from single rounding: " +
              ("(i) negative tie" if negative_tie else "(ii) double rounding"))


@SETTINGS
@given(acc=int32s, real=reals)
def test_requantize_matches_port_and_exact_arithmetic(acc, real):
    m, shift = quantize_multiplier(real)
    check_requantize(acc, m, shift, Fraction(real))


@SETTINGS
@given(
    acc=st.integers(-(2**20), 2**20),
    extra_bits=st.integers(0, 10),
    shift=st.one_of(st.integers(-3, 0), st.integers(-31, 4)),  # small right shifts: ties
)
def test_requantize_on_ties(acc, extra_bits, shift):
    """m = 2^30 · (1 + odd / 2^extra): products land on (or next to) halves at both steps."""
    m = 2**30 + (2**30 >> extra_bits) * (1 if extra_bits else 0)
    m = min(m, INT32_MAX)
    check_requantize(acc, m, shift, None)


def test_requantize_documented_differences_and_saturation():
    # (i) no right shift, −½ exactly: SRDHM rounds toward zero (single rounding gives −1)
    assert int(requantize(np.int64(-1), 2**30, 0)) == 0
    # (ii) 1 · 2^30 · 2^-32 = ¼: SRDHM gives ½ → 1, RoundingDivideByPOT(1, 1) = ½ → 1
    assert int(requantize(np.int64(1), 2**30, -1)) == 1
    # left shift saturates the int32 accumulator before the multiply
    assert int(requantize(np.int64(INT32_MAX), 2**30, 2)) == 2**30
    assert int(requantize(np.int64(INT32_MIN), 2**30, 2)) == -(2**30)
    # multipliers too small to represent requantize everything to 0
    m, shift = quantize_multiplier(2.0**-40)
    np.testing.assert_array_equal(requantize(np.array([INT32_MAX, INT32_MIN]), m, shift), 0)


def test_requantize_broadcasts_per_channel():
    rng = np.random.default_rng(0)
    acc = rng.integers(INT32_MIN, INT32_MAX, (5, 3), dtype=np.int64, endpoint=True)  # (N, C)
    pairs = [quantize_multiplier(r) for r in (3e-4, 0.7, 5.0)]
    m = np.array([p[0] for p in pairs])  # (C,)
    shift = np.array([p[1] for p in pairs])  # (C,)
    got = requantize(acc, m, shift)  # (N, C) int64
    assert got.shape == (5, 3)
    for (n, c), value in np.ndenumerate(got):
        assert value == py_multiply_by_quantized_multiplier(int(acc[n, c]), *pairs[c])
