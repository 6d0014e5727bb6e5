"""Fixed-point requantization as integer hardware and TFLite do it (gemmlowp rounding).

A real multiplier ``M`` (``input_scale · weight_scale / output_scale``) is represented as an
int32 ``m`` in [2^30, 2^31) and a power-of-two exponent ``shift`` with
``M ≈ m · 2^(shift − 31)``. ``requantize`` multiplies an int32 accumulator by it using
``SaturatingRoundingDoublingHighMul`` then ``RoundingDivideByPOT`` — bit-exact with TFLite's
``MultiplyByQuantizedMultiplier``.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def quantize_multiplier(real: float) -> tuple[int, int]:
    """Real multiplier → ``(int32 multiplier, shift)`` as TFLite's ``QuantizeMultiplier``.

    ``shift`` > 0 is a left shift. Multipliers too small to represent (shift < −31) become
    ``(0, 0)``; 0 gives ``(0, 0)``. Negative or non-finite multipliers are rejected.
    """
    real = float(real)
    if not math.isfinite(real) or real < 0:
        raise ValueError(f"multiplier {real!r} is not allowed: use a finite value >= 0")
    if real == 0.0:
        return 0, 0
    frac, shift = math.frexp(real)  # real = frac · 2^shift, frac in [0.5, 1)
    q = math.floor(frac * (1 << 31) + 0.5)  # TFLite's std::round: half away (frac > 0)
    if q == 1 << 31:
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        raise ValueError(f"multiplier {real!r} is too large for int32 fixed point (>= 2^30)")
    return q, shift


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` on int32 arrays (int64 intermediate)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    ab = a * b  # (…) int64, |ab| <= 2^62
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    # C++ integer division truncates toward zero; emulate it on int64.
    num = ab + nudge
    q = np.where(num >= 0, num >> 31, -((-num) >> 31))
    return np.where(overflow, INT32_MAX, q).astype(np.int64)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """gemmlowp ``RoundingDivideByPOT``: ``x / 2^exponent`` rounded half away from zero."""
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + np.where(x < 0, 1, 0)
    return (x >> e) + np.where(remainder > threshold, 1, 0)


def requantize(acc: np.ndarray, multiplier, shift) -> np.ndarray:
    """``acc · m · 2^(shift − 31)`` with TFLite rounding (``MultiplyByQuantizedMultiplier``).

    ``acc`` is int32 (any shape); ``multiplier``/``shift`` broadcast against it (per channel
    callers reshape them to the channel axis). Returns int64 holding the int32 result.
    """
    acc = np.asarray(acc, dtype=np.int64)
    m = np.asarray(multiplier, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    left = np.maximum(s, 0)
    right = np.maximum(-s, 0)
    shifted = np.clip(acc * (np.int64(1) << left), INT32_MIN, INT32_MAX)  # saturate like int32
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, m), right)
