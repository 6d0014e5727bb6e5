"""Make an int32 bias fit by raising the weight scale of the channels that overflow.

The bias of a quantized Conv/Gemm is int32 at ``bias_scale = input_scale · weight_scale``
(per output channel). A channel whose weights span a tiny range (typical of depthwise convs
after BN folding) gets a tiny weight scale, and ``bias / bias_scale`` can exceed int32.
Raising that channel's weight scale to

    s_w' = |bias| / (input_scale · (2^31 − 1))

(rounded up to the next float32 that works, since the pipeline computes ``bias_scale`` as a
float32 product) is the smallest change that makes the bias fit; the channel's weights then
quantize more coarsely, which costs weight SQNR, reported per channel.

Call (per quantized Conv/Gemm with a bias, before ``bias_qparams``)::

    fit = fit_bias(bias, input_qparams.scale, weight_qparams, weight=w)
    weight_qparams = fit.qparams      # unchanged when fit.channels is empty
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from edgequant.primitives import fake_quantize
from edgequant.qparams import QParams
from edgequant.spec import PerChannel, PerTensor

#: Largest |bias / bias_scale| stored: the int32 bias is kept symmetric, as insert_qdq checks.
BIAS_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class BiasFit:
    """Weight qparams whose int32 bias fits, the channels changed and what each change costs.

    ``sqnr_cost_db[c]`` is the weight SQNR lost on channel ``c`` (0 for unchanged channels):
    measured on ``weight`` when given, else the uniform-noise estimate ``20·log10(s'/s)``.
    """

    qparams: QParams
    channels: tuple[int, ...]
    sqnr_cost_db: np.ndarray


def accumulator_headroom(fan_in: int, input_bits: int = 8, weight_bits: int = 8) -> int:
    """How far below 2^31 − 1 the int32 bias must stay so that adding a full dot product
    cannot wrap: runtimes accumulate ``bias + Σ x·w − zx·Σw`` in int32 (onnxruntime's fused
    QLinearConv flips the sign of a bias stored within that margin of the limit), so both
    sums get room: ``2 · fan_in · 2^input_bits · 2^(weight_bits − 1)``."""
    if input_bits > 8 or weight_bits > 8:  # 16x8: int64 bias in TFLite, float in onnxruntime
        return 0
    return min(2 * int(fan_in) * (1 << input_bits) * (1 << (weight_bits - 1)), BIAS_LIMIT // 2)


def bias_fits(bias: float, input_scale: float, weight_scale: float,
              limit: int = BIAS_LIMIT) -> bool:
    """Exactly: ``|bias / (input_scale ·₃₂ weight_scale)| ≤ limit`` (float32 product)."""
    bias_scale = np.float32(input_scale) * np.float32(weight_scale)  # float32, as bias_qparams
    if bias_scale == 0:
        return bias == 0
    return abs(Fraction(float(np.float32(bias))) / Fraction(float(bias_scale))) <= limit


def min_weight_scale(bias: float, input_scale: float, weight_scale: float,
                     limit: int = BIAS_LIMIT) -> np.float32:
    """The smallest float32 ``s ≥ weight_scale`` with :func:`bias_fits` true."""
    s = np.float32(weight_scale)
    if bias_fits(bias, input_scale, s, limit):
        return s
    guess = abs(float(np.float32(bias))) / (float(np.float32(input_scale)) * limit)
    if not 0 < limit <= BIAS_LIMIT:
        raise ValueError(f"bias limit {limit} is not allowed: use 1 … 2^31 − 1")
    # float64 estimate nudged up (a few float32 ulps), then exact float32 steps down
    s = max(np.float32(guess * (1 + 2.0 ** -20)), s)
    for _ in range(64):
        if bias_fits(bias, input_scale, s, limit):
            break
        s = np.float32(s * np.float32(1 + 2.0 ** -16))
    else:  # pragma: no cover - the estimate is within a few ulps
        raise AssertionError(f"no weight scale fits bias {bias} at input scale {input_scale}")
    while s > weight_scale and bias_fits(bias, input_scale,
                                          lower := np.nextafter(s, np.float32(0)), limit):
        s = lower
    return np.float32(s)


def fit_bias(bias: np.ndarray, input_scale, weight: QParams,
             weight_values: np.ndarray | None = None, limit: int = BIAS_LIMIT) -> BiasFit:
    """Weight qparams raised just enough that ``|bias / (input_scale · scale)| ≤ limit``
    (default int32; pass ``BIAS_LIMIT - accumulator_headroom(fan_in)`` for runtime safety).

    ``bias`` (C,) float; ``input_scale`` scalar; ``weight`` PerChannel (scale (C,)) or
    PerTensor qparams; ``weight_values`` (optional, the float weights) measures the SQNR cost.
    """
    b = np.asarray(bias, dtype=np.float32).reshape(-1)  # (C,) float32
    s_in = np.float32(np.asarray(input_scale, dtype=np.float32).reshape(()))
    if not np.all(np.isfinite(b)):
        raise ValueError("bias holds NaN/Inf: only finite biases can be fitted")
    if not (np.isfinite(s_in) and s_in > 0):
        raise ValueError(f"input scale {float(s_in)!r} is not allowed: use a finite scale > 0")
    if isinstance(weight.granularity, PerChannel):
        old = weight.scale.astype(np.float32).reshape(-1)  # (C,)
        if old.shape != b.shape:
            raise ValueError(f"bias has {b.size} channels but the weight qparams have "
                             f"{old.size} scales")
        new = np.array([min_weight_scale(bc, s_in, sc, limit) for bc, sc in zip(b, old, strict=True)],
                       dtype=np.float32)  # (C,)
        scale = new.reshape(weight.scale.shape)
    elif isinstance(weight.granularity, PerTensor):
        old = np.full(b.shape, np.float32(weight.scale), np.float32)  # (C,)
        worst = int(np.argmax(np.abs(b))) if b.size else 0
        one = min_weight_scale(b[worst], s_in, old[0], limit) if b.size else np.float32(weight.scale)
        new = np.full(b.shape, one, np.float32)  # (C,)
        scale = np.asarray(one, np.float32)
    else:
        raise ValueError(f"weight granularity {type(weight.granularity).__name__} is not "
                         "allowed: bias fitting needs PerChannel or PerTensor weight qparams")
    changed = tuple(int(c) for c in np.flatnonzero(new != old))
    cost = _sqnr_cost(old, new, weight, scale, weight_values)
    return BiasFit(replace(weight, scale=scale), changed, cost)


def _sqnr_cost(old: np.ndarray, new: np.ndarray, weight: QParams, scale: np.ndarray,
               values: np.ndarray | None) -> np.ndarray:
    """SQNR lost per channel (dB): measured on ``values`` when given, else 20·log10(s'/s)."""
    estimate = 20.0 * np.log10(new.astype(np.float64) / old.astype(np.float64))  # (C,)
    if values is None:
        return estimate
    w = np.asarray(values, dtype=np.float32)
    axis = weight.granularity.axis % w.ndim if isinstance(weight.granularity, PerChannel) else 0
    before = fake_quantize(w, weight)
    after = fake_quantize(w, replace(weight, scale=scale))
    cost = np.zeros(new.shape, np.float64)
    for c in np.flatnonzero(new != old):
        ch = np.take(w, c, axis=axis).astype(np.float64)
        cost[c] = _sqnr(ch, np.take(before, c, axis=axis)) - _sqnr(ch, np.take(after, c, axis=axis))
    return cost


def _sqnr(x: np.ndarray, xq: np.ndarray) -> float:
    noise = float(np.sum((x - np.asarray(xq, np.float64)) ** 2))
    signal = float(np.sum(x ** 2))
    if noise == 0:
        return float("inf") if signal else 0.0
    return 10.0 * np.log10(signal / noise) if signal else float("-inf")
