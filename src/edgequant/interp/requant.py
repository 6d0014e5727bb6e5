"""Requantization of int32 accumulators: ``acc · (s_in · s_w / s_out) + zp_out``, saturated.

Two modes (see docs/arithmetic.md):

* ``float`` — onnxruntime's CPU kernels (MLAS ``MlasRequantizeOutput``): the multiplier is
  computed in float32 as ``(s_in · s_w) / s_out``; the accumulator is converted to float32,
  multiplied by it (float32 product), rounded half to even, the zero point added, saturated.
* ``fixedpoint`` — TFLite / integer hardware: the multiplier (computed in float64) becomes an
  int32 mantissa and a shift (:func:`edgequant.fixedpoint.quantize_multiplier`), applied
  with gemmlowp rounding (:func:`edgequant.fixedpoint.requantize`).
"""

from __future__ import annotations

import numpy as np

from edgequant.fixedpoint import quantize_multiplier
from edgequant.fixedpoint import requantize as fixed_requantize
from edgequant.interp.integers import as_int, saturate
from edgequant.interp.registry import Requantization


def float_multiplier(s_in, s_w, s_out) -> np.ndarray:
    """``(s_in · s_w) / s_out`` in float32, in that order (ORT ``ComputeOutputScale``)."""
    s_in = np.asarray(s_in, dtype=np.float32)
    s_w = np.asarray(s_w, dtype=np.float32)
    s_out = np.asarray(s_out, dtype=np.float32)
    return np.asarray((s_in * s_w) / s_out, dtype=np.float32)


def requantize(
    acc: np.ndarray,
    multiplier: np.ndarray,
    zero_point: np.ndarray | None,
    out_dtype: np.dtype,
    mode: Requantization,
) -> np.ndarray:
    """int32 ``acc`` × real ``multiplier`` (broadcast against ``acc``) + zero point → ``out_dtype``.

    Pass the multiplier from :func:`real_multiplier` for the same ``mode``: float32 for
    ``float`` (ORT), float64 for ``fixedpoint`` (TFLite computes the effective scale in
    double before turning it into an int32 mantissa and shift).
    """
    zp = 0 if zero_point is None else as_int(zero_point).astype(np.int64)
    if mode == "float":
        real = np.asarray(multiplier, dtype=np.float32)
        scaled = np.asarray(acc, dtype=np.int32).astype(np.float32) * real  # float32 product
        rounded = np.rint(scaled).astype(np.float64)  # half to even, as MLAS's magic-number add
        return saturate(rounded + zp, out_dtype)
    if mode == "fixedpoint":
        real = np.asarray(multiplier, dtype=np.float64)
        flat = real.reshape(-1)
        pairs = [quantize_multiplier(float(r)) for r in flat]
        m = np.array([p[0] for p in pairs], dtype=np.int64).reshape(real.shape)
        s = np.array([p[1] for p in pairs], dtype=np.int64).reshape(real.shape)
        out = fixed_requantize(np.asarray(acc, dtype=np.int32), m, s)  # int64 holding int32
        return saturate(out + zp, out_dtype)
    raise ValueError(f"requantization mode {mode!r} is not allowed: use 'float' or 'fixedpoint'")


def real_multiplier(s_in, s_w, s_out, mode: Requantization) -> np.ndarray:
    """The multiplier for ``mode``: float32 ORT order, or float64 for fixed point (TFLite)."""
    if mode == "fixedpoint":
        s_in64, s_w64 = np.asarray(s_in, np.float64), np.asarray(s_w, np.float64)
        return s_in64 * s_w64 / np.asarray(s_out, np.float64)
    return float_multiplier(s_in, s_w, s_out)
