"""quantize / dequantize / fake_quantize with ONNX QuantizeLinear / DequantizeLinear semantics.

All arithmetic follows the ONNX operators exactly: ``x / scale`` in float32, rounding half to
even (or half away from zero when the spec asks), add the zero point, saturate to
``[qmin, qmax]``. Dequantize computes ``(q − zero_point) · scale`` in float32.
"""

from __future__ import annotations

import numpy as np

from edgequant.qparams import QParams
from edgequant.spec import Granularity, PerChannel, PerGroup, PerTensor, Rounding


def broadcast_param(p: np.ndarray, granularity: Granularity, shape: tuple[int, ...]) -> np.ndarray:
    """Expand a scale or zero point to broadcast against a tensor of ``shape``."""
    p = np.asarray(p)
    if isinstance(granularity, PerTensor) or p.ndim == 0:
        return p
    axis = granularity.axis % len(shape)
    if isinstance(granularity, PerChannel):
        return p.reshape([-1 if i == axis else 1 for i in range(len(shape))])
    assert isinstance(granularity, PerGroup)
    return np.repeat(p, granularity.size, axis=axis).take(range(shape[axis]), axis=axis)


def round_values(v: np.ndarray, rounding: Rounding = "half_even") -> np.ndarray:
    """Round to integers: half to even (ONNX, numpy) or half away from zero (TFLite)."""
    if rounding == "half_even":
        return np.rint(v)
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def quantize(x: np.ndarray, qp: QParams, rounding: Rounding = "half_even") -> np.ndarray:
    """Float tensor → integers of ``qp.qtype`` (numpy container dtype, int4 unpacked)."""
    x = np.asarray(x, dtype=np.float32)
    scale = broadcast_param(qp.scale.astype(np.float32), qp.granularity, x.shape)
    zp = broadcast_param(qp.zero_point.astype(np.float32), qp.granularity, x.shape)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        v = round_values(np.divide(x, scale, dtype=np.float32), rounding) + zp  # float32
    v = np.clip(v, qp.qtype.qmin, qp.qtype.qmax)
    # NaN has no integer: onnxruntime's kernels (every type and layout) give qmin
    return np.nan_to_num(v, nan=float(qp.qtype.qmin)).astype(qp.qtype.numpy_dtype)


def dequantize(q: np.ndarray, qp: QParams) -> np.ndarray:
    """Integers → float32: ``(q − zero_point) · scale``."""
    q = np.asarray(q)
    scale = broadcast_param(qp.scale.astype(np.float32), qp.granularity, q.shape)
    zp = broadcast_param(qp.zero_point.astype(np.int32), qp.granularity, q.shape)
    diff = q.astype(np.int32) - zp  # int32, exact for every supported width
    return (diff.astype(np.float32) * scale).astype(np.float32)


def fake_quantize(x: np.ndarray, qp: QParams, rounding: Rounding = "half_even") -> np.ndarray:
    """``dequantize(quantize(x))``: the float value the integer model will see."""
    return dequantize(quantize(x, qp, rounding), qp)
