"""TFLite weight and bias conventions, applied here and only here.

* int8 weights: symmetric, zero point 0, **narrow range** [-127, 127], per output channel.
  ONNX weights that already satisfy this are copied bit for bit; anything else (value −128,
  non-zero zero point, other axis) is dequantized and requantized.
* int4 blocked weights of a float FULLY_CONNECTED (``blockwise_int4_fits``): stored as
  TFLite INT4 with blockwise quantization (float16 block scales); LiteRT runs them on both
  its builtin and XNNPACK kernels. Other blocked weights are dequantized (float32).
* int32 bias (int8 kernels) / int64 bias (16x8): ``bias_scale = input_scale · weight_scale``
  (float32 product, per channel), zero point 0. An ONNX bias with exactly that scale is copied;
  otherwise the float bias is requantized (round half to even).
"""

from __future__ import annotations

import logging

import numpy as np

from edgequant.graph.read_qdq import QConst

log = logging.getLogger(__name__)

INT8_NARROW_MAX = 127


def _channel_view(x: np.ndarray, axis: int) -> np.ndarray:
    return np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)  # (C, rest)


def narrow_int8(w: QConst | np.ndarray, axis: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """int8 symmetric narrow-range weights per channel along ``axis`` (ONNX layout).

    Returns ``(values int8 same shape, scales float32 (C,))``.
    """
    if isinstance(w, QConst):
        c = w.values.shape[axis]
        per_tensor = w.axis is None
        same_axis = w.block_size is None and (per_tensor or w.axis == axis)
        v = w.values
        if (v.dtype == np.int8 and same_axis and not np.any(w.zero_point)
                and v.min(initial=0) >= -INT8_NARROW_MAX):
            scale = np.broadcast_to(w.scale.reshape(-1), (c,)) if per_tensor else w.scale
            return v.astype(np.int8), np.asarray(scale, np.float32).copy()
        log.info("weight %s: requantized to symmetric narrow int8 per channel", name)
        w = w.dequantized()
    w = np.asarray(w, dtype=np.float32)
    amax = np.abs(_channel_view(w, axis)).max(axis=1)  # (C,)
    scale = np.where(amax > 0, amax / np.float32(INT8_NARROW_MAX), np.float32(1.0))
    scale = scale.astype(np.float32)
    shp = [1] * w.ndim
    shp[axis] = -1
    q = np.clip(np.rint(w / scale.reshape(shp)), -INT8_NARROW_MAX, INT8_NARROW_MAX)
    return q.astype(np.int8), scale


def quantized_bias(
    bias: QConst | np.ndarray | None,
    n: int,
    input_scale: float,
    weight_scale: np.ndarray,
    dtype: type = np.int32,
) -> tuple[np.ndarray, np.ndarray]:
    """Integer bias with ``scale = input_scale · weight_scale``; returns ``(values, scales)``."""
    scale = (np.float32(input_scale) * weight_scale.astype(np.float32)).astype(np.float32)  # (C,)
    if bias is None:
        return np.zeros(n, dtype), scale
    if isinstance(bias, QConst):
        bscale = np.broadcast_to(bias.scale.reshape(-1), (n,))
        if np.array_equal(bscale, scale) and not np.any(bias.zero_point):
            return bias.values.astype(dtype).reshape(n), scale
        bias = bias.dequantized()
    info = np.iinfo(dtype)
    q = np.rint(np.asarray(bias, np.float64).reshape(n) / scale.astype(np.float64))
    return np.clip(q, info.min, info.max).astype(dtype), scale


def blockwise_int4_fits(w, in_axis: int) -> bool:
    """True when ``w`` maps exactly onto TFLite's INT4 blockwise FULLY_CONNECTED weight:
    a 2-D signed 4-bit constant, symmetric (zero points 0), blocked along its input axis
    ``in_axis`` with a block length dividing the input size."""
    if not isinstance(w, QConst) or w.block_size is None or w.values.ndim != 2:
        return False
    qt = w.qparams.qtype
    return (qt.bits == 4 and qt.signed and w.axis == in_axis % 2 and not np.any(w.zero_point)
            and w.values.shape[in_axis] % w.block_size == 0)


def float_weight(w: QConst | np.ndarray | None) -> np.ndarray | None:
    """Float value of a weight (dequantized when the ONNX model stores it quantized)."""
    if w is None:
        return None
    return w.dequantized() if isinstance(w, QConst) else np.asarray(w, np.float32)
