"""Quantization parameters and how they are chosen from a tensor's range."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgequant.spec import Granularity, PerChannel, PerTensor, QType, QuantSpec

#: Smallest scale ever produced: a constant or all-zero tensor still gets a finite, positive
#: scale, so ``x / scale`` never divides by zero (float32 tiny is ~1.2e-38; this leaves room).
MIN_SCALE = float(np.finfo(np.float32).eps) * 1e-6


@dataclass(frozen=True, eq=False)
class QParams:
    """Scale (float32) and zero point (integers of ``qtype``) for one tensor.

    ``scale`` and ``zero_point`` are 0-d for PerTensor, 1-d for PerChannel and full-rank
    (the blocked axis shortened to ``ceil(n / size)``) for PerGroup — the ONNX layouts.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    qtype: QType
    granularity: Granularity

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, QParams)
            and self.qtype == other.qtype
            and self.granularity == other.granularity
            and np.array_equal(self.scale, other.scale)
            and np.array_equal(self.zero_point, other.zero_point)
        )

    __hash__ = None  # type: ignore[assignment]


def reduce_range(x: np.ndarray, granularity: Granularity) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of ``x`` at ``granularity`` (shapes as in :class:`QParams`)."""
    x = np.asarray(x, dtype=np.float32)
    if isinstance(granularity, PerTensor):
        return np.asarray(x.min() if x.size else 0.0), np.asarray(x.max() if x.size else 0.0)
    axis = granularity.axis % x.ndim
    if isinstance(granularity, PerChannel):
        other = tuple(i for i in range(x.ndim) if i != axis)
        return x.min(axis=other), x.max(axis=other)
    n, size = x.shape[axis], granularity.size
    blocks = -(-n // size)
    pad = blocks * size - n
    if pad:  # pad the last block with copies of its first element so min/max are unaffected
        edge = np.take(x, [blocks * size - size] * pad, axis=axis)
        x = np.concatenate([x, edge], axis=axis)
    shape = (*x.shape[:axis], blocks, size, *x.shape[axis + 1:])
    xb = x.reshape(shape)  # (..., blocks, size, ...)
    return xb.min(axis=axis + 1), xb.max(axis=axis + 1)


def choose_qparams(min_val, max_val, spec: QuantSpec) -> QParams:
    """Scale and zero point covering ``[min_val, max_val]`` (arrays at the spec's granularity).

    The range is widened to include 0 so zero is exactly representable (padding, ReLU).
    Symmetric: ``scale = max|x| / ((qmax − qmin) / 2)``, zero point 0 (signed) or the
    midpoint (unsigned). Affine: ``scale = (max − min) / (qmax − qmin)``, zero point
    ``qmin − round(min / scale)`` clamped into range. A zero range (constant or all-zero
    tensor) gets ``MIN_SCALE`` instead of 0, so quantizing never divides by zero.
    """
    qt = spec.qtype
    lo = np.minimum(np.asarray(min_val, dtype=np.float64), 0.0)
    hi = np.maximum(np.asarray(max_val, dtype=np.float64), 0.0)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ValueError(f"range [{min_val}, {max_val}] is not finite: NaN/Inf cannot be quantized")
    qmin, qmax = float(qt.qmin), float(qt.qmax)
    if spec.symmetric:
        amax = np.maximum(-lo, hi)
        scale = amax / ((qmax - qmin) / 2.0)
        if qt.signed:
            zp = np.zeros_like(scale)
        else:
            zp = np.full_like(scale, np.floor((qmax + qmin + 1) / 2.0))
    else:
        scale = (hi - lo) / (qmax - qmin)
        safe = np.where(scale > 0, scale, 1.0)
        zp = np.clip(qmin - np.round(lo / safe), qmin, qmax)
    scale = np.maximum(scale, MIN_SCALE).astype(np.float32)
    return QParams(
        scale=np.asarray(scale, dtype=np.float32),
        zero_point=np.asarray(zp).astype(qt.numpy_dtype),
        qtype=qt,
        granularity=spec.granularity,
    )


def qparams_for(x: np.ndarray, spec: QuantSpec) -> QParams:
    """Qparams from the min/max of a constant tensor (weights)."""
    lo, hi = reduce_range(x, spec.granularity)
    return choose_qparams(lo, hi, spec)


def bias_qparams(input_scale: np.ndarray, weight: QParams) -> QParams:
    """int32 bias qparams: ``scale = input_scale · weight_scale`` (per channel), zero point 0."""
    scale = (np.float32(input_scale) * weight.scale).astype(np.float32)
    # The bias is 1-D over output channels, so its channel axis is 0 whatever the weight's
    # (a Gemm transB=0 / MatMul weight (K, N) is per channel on axis 1).
    gran = PerChannel(0) if scale.ndim else PerTensor()
    return QParams(scale, np.zeros(scale.shape, np.int32), QType(32, True), gran)
