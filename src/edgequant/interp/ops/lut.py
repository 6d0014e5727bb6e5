"""256-entry lookup tables as onnxruntime builds them for 8-bit unary ops.

ORT's ``QlinearBuildLookupTable`` dequantizes every possible input byte
(``x_scale · (x − zp_x)`` in float32), applies the float function, and quantizes the result
with ``MlasQuantizeLinear`` (``round_half_even(y / y_scale) + zp_y``, saturated). The table is
indexed by the input's byte pattern; replicating it exactly makes the op exact.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgequant.interp.integers import as_int, saturate

#: Eigen / MLAS logistic rational approximation (MlasLogisticConstants).
_LOGISTIC = dict(
    lower=-18.0, upper=18.0,
    alpha=(4.37031012579801e-11, 1.15627324459942e-07, 6.08574864600143e-05,
           8.51377133304701e-03, 2.48287947061529e-01),
    beta=(6.10247389755681e-13, 5.76102136993427e-09, 6.29106785017040e-06,
          1.70198817374094e-03, 1.16817656904453e-01, 9.93151921023180e-01),
)


def _fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 fused multiply-add: the float32·float32 product is exact in float64."""
    return (a.astype(np.float64) * b.astype(np.float64) + c.astype(np.float64)).astype(np.float32)


def mlas_logistic(x: np.ndarray) -> np.ndarray:
    """MLAS's logistic (``MlasComputeLogistic``, FMA kernel): float32 in, float32 out."""
    f = np.float32
    v = np.clip(x.astype(np.float32), f(_LOGISTIC["lower"]), f(_LOGISTIC["upper"]))
    v2 = v * v  # float32
    a = [f(c) for c in _LOGISTIC["alpha"]]
    b = [f(c) for c in _LOGISTIC["beta"]]
    p = _fma32(v2, np.full_like(v2, a[0]), np.full_like(v2, a[1]))
    for c in a[2:]:
        p = _fma32(p, v2, np.full_like(v2, c))
    p = p * v
    q = _fma32(v2, np.full_like(v2, b[0]), np.full_like(v2, b[1]))
    for c in b[2:]:
        q = _fma32(q, v2, np.full_like(v2, c))
    return np.clip(p / q + f(0.5), f(0.0), f(1.0)).astype(np.float32)


def mlas_quantize(y: np.ndarray, scale, zero_point, dtype: np.dtype) -> np.ndarray:
    """``MlasQuantizeLinear``: float32 ``y / scale`` rounded half to even, plus zp, saturated."""
    v = np.rint(np.divide(y.astype(np.float32), np.float32(scale), dtype=np.float32))
    zp = int(as_int(np.asarray(zero_point)).reshape(-1)[0])
    return saturate(v.astype(np.float64) + zp, dtype)


def build_table(fn: Callable[[np.ndarray], np.ndarray], x_scale, x_zero_point, y_scale,
                y_zero_point, dtype: np.dtype) -> np.ndarray:
    """Table over every value of the 8-bit ``dtype``, indexed by its byte pattern: (256,)."""
    codes = np.arange(256, dtype=np.uint8).view(dtype)  # byte pattern i → value of dtype
    xzp = 0 if x_zero_point is None else int(as_int(np.asarray(x_zero_point)).reshape(-1)[0])
    deq = np.float32(np.asarray(x_scale).reshape(-1)[0]) * (
        codes.astype(np.int32) - xzp).astype(np.float32)  # (256,) float32
    yzp = 0 if y_zero_point is None else y_zero_point
    return mlas_quantize(fn(deq), np.asarray(y_scale).reshape(-1)[0], yzp, dtype)


def apply_table(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Look every element of ``x`` up by its byte pattern."""
    return table[np.asarray(x).view(np.uint8)]
