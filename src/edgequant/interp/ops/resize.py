"""Resize (opset 10–21) and Upsample: nearest (every ``nearest_mode``), linear and cubic
interpolation, every ``coordinate_transformation_mode``, ``scales`` or ``sizes``, ``axes`` and
``keep_aspect_ratio_policy`` (opset 18), any rank.

Interpolation is separable, so each resized axis is one (out, in) weight matrix applied with a
tensordot; nearest is one index gather per axis. Coordinates are computed in float32 with
onnxruntime's formulas (``upsamplebase.h``) so the chosen neighbours agree with it.
"""

from __future__ import annotations

import numpy as np

from edgequant.errors import UnsupportedOpError
from edgequant.interp.registry import NodeContext, register

F = np.float32
COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                    "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "simple")
MODES = ("nearest", "linear", "cubic")


def original_coordinate(mode: str, out_len: int, in_len: int, scale: float,
                        roi: tuple[float, float]) -> np.ndarray:
    """Input coordinate of every output index along one axis: (out_len,) float32."""
    x = np.arange(out_len, dtype=F)
    s, lo, li = F(scale), F(out_len), F(in_len)
    if mode == "asymmetric":
        return x / s
    if mode == "pytorch_half_pixel":
        return (x + F(0.5)) / s - F(0.5) if out_len > 1 else np.zeros(out_len, F)
    if mode == "tf_half_pixel_for_nn":
        return (x + F(0.5)) / s
    if mode == "align_corners":
        return np.zeros(out_len, F) if out_len == 1 else x * (li - 1) / (lo - 1)
    if mode == "tf_crop_and_resize":
        start, end = F(roi[0]), F(roi[1])
        if out_len > 1:
            return (start * (li - 1) + x * (end - start) * (li - 1) / (lo - 1)).astype(F)
        return np.full(out_len, 0.5 * (start + end) * (li - 1), F)
    if mode == "half_pixel_symmetric":
        adjustment = lo / (s * li)
        offset = li / 2 * (1 - adjustment)
        return (offset + (x.astype(np.float64) + 0.5) / s - 0.5).astype(F)
    return (x + F(0.5)) / s - F(0.5)  # half_pixel


def nearest_index(coord: np.ndarray, mode: str, downsampling: bool) -> np.ndarray:
    """Index of the nearest input element for each coordinate (before clamping): int64."""
    if mode == "simple":  # Resize-10 / Upsample
        return (np.ceil(coord) if downsampling else np.trunc(coord)).astype(np.int64)
    if mode == "floor":
        return np.floor(coord).astype(np.int64)
    if mode == "ceil":
        return np.ceil(coord).astype(np.int64)
    away = np.sign(coord) * np.floor(np.abs(coord) + F(0.5))  # std::round: halves away from 0
    if mode == "round_prefer_ceil":
        return away.astype(np.int64)
    half = coord == np.trunc(coord).astype(np.int64) + F(0.5)  # exactly halfway → floor
    return np.where(half, np.floor(coord), away).astype(np.int64)


def cubic_weights(frac: np.ndarray, a: float) -> np.ndarray:
    """Keys cubic kernel weights of taps −1, 0, 1, 2 for fractional offsets: (L, 4)."""
    d = np.stack([frac + 1, frac, 1 - frac, 2 - frac], axis=1).astype(np.float64)  # (L, 4)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, far)


def interpolation_matrix(coord: np.ndarray, in_len: int, mode: str, cubic_a: float,
                         exclude_outside: bool) -> np.ndarray:
    """(out_len, in_len) float64 weights of linear or cubic interpolation along one axis."""
    base = np.floor(coord).astype(np.int64)  # (L,)
    frac = (coord - base).astype(np.float64)
    if mode == "linear":
        clamped = np.clip(coord, 0, in_len - 1)  # onnxruntime clamps the coordinate first
        base = np.minimum(np.floor(clamped).astype(np.int64), in_len - 1)
        frac = (clamped - base).astype(np.float64)
        taps, weights = np.stack([base, base + 1], 1), np.stack([1 - frac, frac], 1)
    else:
        taps, weights = base[:, None] + np.arange(-1, 3), cubic_weights(frac, cubic_a)
        if exclude_outside:
            weights = np.where((taps >= 0) & (taps < in_len), weights, 0)
            weights = weights / weights.sum(axis=1, keepdims=True)
    m = np.zeros((len(coord), in_len))
    rows = np.broadcast_to(np.arange(len(coord))[:, None], taps.shape)
    np.add.at(m, (rows, np.clip(taps, 0, in_len - 1)), weights)  # out-of-range taps: edge value
    return m


def _bilinear_axis(coord: np.ndarray, in_len: int):
    """onnxruntime's bilinear taps along one axis: (i1, i2, d1, d2) with float32 distances."""
    c = np.clip(coord, F(0), F(in_len - 1))
    i1 = np.minimum(c.astype(np.int64), in_len - 1)
    i2 = np.minimum(i1 + 1, in_len - 1)
    d1, d2 = np.abs(c - i1.astype(F)), np.abs(c - i2.astype(F))
    same = i1 == i2
    return i1, i2, np.where(same, F(0.5), d1).astype(F), np.where(same, F(0.5), d2).astype(F)


def bilinear_integer(x: np.ndarray, cy: np.ndarray, cx: np.ndarray) -> np.ndarray:
    """Integer bilinear resize of the last two axes as onnxruntime's CPU kernel computes it:
    the four-term sum in float32, in its order, truncated to the integer type."""
    y1, y2, dy1, dy2 = (v[:, None] for v in _bilinear_axis(cy, x.shape[-2]))  # (OH, 1)
    x1, x2, dx1, dx2 = _bilinear_axis(cx, x.shape[-1])  # (OW,)
    v = x.astype(F)
    out = (v[..., y1, x1] * dx2 * dy2 + v[..., y1, x2] * dx1 * dy2
           + v[..., y2, x1] * dx2 * dy1 + v[..., y2, x2] * dx1 * dy1)  # (..., OH, OW) float32
    info = np.iinfo(x.dtype)
    return np.clip(np.trunc(out), info.min, info.max).astype(x.dtype)


def _output_shape(ctx: NodeContext, x: np.ndarray, scales, sizes, axes: list[int]):
    """(output dims, per-axis scales) from ``scales`` or ``sizes`` (onnxruntime's rules)."""
    rank = x.ndim
    if sizes is not None and np.size(sizes):
        out = list(x.shape)
        for a, s in zip(axes, np.asarray(sizes, np.int64).reshape(-1), strict=True):
            out[a] = int(s)
        sc = [F(o) / F(i) if i else F(1) for o, i in zip(out, x.shape, strict=True)]
        policy = ctx.attr("keep_aspect_ratio_policy", "stretch")
        if policy != "stretch":
            pick = min if policy == "not_larger" else max
            s = pick(sc[a] for a in axes)
            sc = [s if a in axes else F(1) for a in range(rank)]
            out = [int(np.round(s * x.shape[a])) if a in axes else x.shape[a] for a in range(rank)]
        return out, sc
    if scales is None or not np.size(scales):
        raise ValueError(f"{ctx.op_type} node {ctx.name!r}: needs non-empty scales or sizes")
    sc = [F(1)] * rank
    for a, s in zip(axes, np.asarray(scales, F).reshape(-1), strict=True):
        sc[a] = F(s)
    return [int(s * F(d)) for s, d in zip(sc, x.shape, strict=True)], sc


def resize(ctx: NodeContext, x, roi, scales, sizes, coord_mode: str, nearest_mode: str):
    """Shared body of Resize and Upsample."""
    mode = ctx.attr("mode", "nearest")
    if mode not in MODES:
        raise UnsupportedOpError(f"{ctx.op_type} node {ctx.name!r}: attribute mode={mode!r} is "
                                 f"not supported (allowed: {MODES})")
    for key, value, allowed in (("coordinate_transformation_mode", coord_mode, COORDINATE_MODES),
                                ("nearest_mode", nearest_mode, NEAREST_MODES)):
        if value not in allowed:
            raise UnsupportedOpError(f"{ctx.op_type} node {ctx.name!r}: attribute {key}={value!r}"
                                     f" is not supported (allowed: {allowed})")
    if ctx.attr("antialias", 0):
        raise UnsupportedOpError(f"{ctx.op_type} node {ctx.name!r}: attribute antialias=1 is not "
                                 "supported (allowed: 0)")
    axes = [int(a) % x.ndim for a in (ctx.attr("axes") or range(x.ndim))]
    out_shape, sc = _output_shape(ctx, x, scales, sizes, axes)
    if tuple(out_shape) == x.shape:  # onnxruntime copies the input whatever the scales say
        return x.copy()
    roi_v = np.zeros(0) if roi is None else np.asarray(roi, np.float64).reshape(-1)
    full_roi = [(0.0, 1.0)] * x.ndim
    for k, a in enumerate(axes if roi_v.size else ()):
        full_roi[a] = (roi_v[k], roi_v[k + len(axes)])
    resized = [a for a in range(x.ndim) if out_shape[a] != x.shape[a] or sc[a] != 1]
    if (mode == "linear" and x.dtype.kind in "iu" and coord_mode != "tf_crop_and_resize"
            and x.ndim >= 2 and set(resized) <= {x.ndim - 2, x.ndim - 1}):
        cy, cx = (original_coordinate(coord_mode, out_shape[a], x.shape[a], sc[a], full_roi[a])
                  for a in (x.ndim - 2, x.ndim - 1))
        return bilinear_integer(x, cy, cx)
    y = x
    outside = np.zeros(out_shape, bool)  # tf_crop_and_resize: coordinates off the input
    for a in range(x.ndim):
        if out_shape[a] == x.shape[a] and sc[a] == 1 and coord_mode != "tf_crop_and_resize":
            continue
        coord = original_coordinate(coord_mode, out_shape[a], x.shape[a], sc[a], full_roi[a])
        if coord_mode == "tf_crop_and_resize":
            off = (coord < 0) | (coord > x.shape[a] - 1)
            outside |= off.reshape([-1 if i == a else 1 for i in range(x.ndim)])
        if mode == "nearest":
            idx = np.clip(nearest_index(coord, nearest_mode, sc[a] < 1), 0, x.shape[a] - 1)
            y = np.take(y, idx, axis=a)
        else:
            m = interpolation_matrix(coord, x.shape[a], mode, float(ctx.attr("cubic_coeff_a", -0.75)),
                                     bool(ctx.attr("exclude_outside", 0)))  # (out, in)
            y = np.moveaxis(np.tensordot(m, y, axes=([1], [a])), 0, a)  # float64
    if mode != "nearest" and x.dtype.kind in "iu":  # integer tensors: truncate, saturate
        info = np.iinfo(x.dtype)
        y = np.clip(np.trunc(y), info.min, info.max)
    y = y.astype(x.dtype)
    if outside.any():
        y = np.where(outside, np.asarray(ctx.attr("extrapolation_value", 0.0)).astype(x.dtype), y)
    return y


@register()
def Resize(ctx: NodeContext, x, roi=None, scales=None, sizes=None):
    """Resize ``x`` by ``scales`` or to ``sizes``; opset 10 takes (x, scales) with asymmetric
    coordinates and onnxruntime's "simple" nearest rounding."""
    if ctx.opset < 11:
        return resize(ctx, x, None, roi, None, "asymmetric", "simple")
    coord_mode = ctx.attr("coordinate_transformation_mode", "half_pixel")
    nearest_mode = ctx.attr("nearest_mode", "round_prefer_floor")
    return resize(ctx, x, roi, scales, sizes, coord_mode, nearest_mode)


@register()
def Upsample(ctx: NodeContext, x, scales=None):
    """Deprecated Resize (opsets 7–9): ``scales`` attribute or input, asymmetric coordinates."""
    scales = ctx.attr("scales") if scales is None else scales
    return resize(ctx, x, None, scales, None, "asymmetric", "simple")
