"""com.microsoft quantized ops as onnxruntime's CPU kernels compute them.

QLinearAdd / QLinearMul follow MLAS's x86 kernels (float32 arithmetic with FMA), unary ops use
the 256-entry tables of ``lut.py``, pools follow ``qlinear_pool.cc`` /
``MlasQLinearGlobalAveragePool``. In ``fixedpoint`` mode the arithmetic ops switch to TFLite's
integer-only formulas (see docs/arithmetic.md).
"""

from __future__ import annotations

import numpy as np

from edgequant.fixedpoint import quantize_multiplier
from edgequant.fixedpoint import requantize as fixed_requantize
from edgequant.interp.integers import as_int, centered, saturate
from edgequant.interp.ops.conv import as_2d, im2col, restore_rank
from edgequant.interp.ops.lut import apply_table, build_table, mlas_logistic
from edgequant.interp.ops.pool import pool_window
from edgequant.interp.registry import MS_DOMAIN, NodeContext, register
from edgequant.interp.requant import requantize

f32 = np.float32


def _scalar(v) -> float:
    return float(np.asarray(v).reshape(-1)[0])


def _zp(v) -> int:
    return 0 if v is None else int(as_int(np.asarray(v)).reshape(-1)[0])


def _fma(a, b, c) -> np.ndarray:
    """float32 fused multiply-add (exact product in float64, one rounding to float32)."""
    return (np.asarray(a, np.float64) * np.asarray(b, np.float64)
            + np.asarray(c, np.float64)).astype(np.float32)


def _fixed(acc: np.ndarray, real: float) -> np.ndarray:
    m, s = quantize_multiplier(real)
    return fixed_requantize(acc, m, s)  # int64 holding int32


def _span_scalar(shape: tuple[int, ...], out: tuple[int, ...]) -> bool:
    """Whether an input of ``shape`` is one value per innermost span of ``out``.

    onnxruntime's broadcaster walks the output in spans along the innermost axis that is
    longer than 1; an input broadcast along that axis is passed to the kernel as a scalar.
    """
    inner = [i for i, d in enumerate(out) if d > 1]
    if not inner:
        return False
    padded = (1,) * (len(out) - len(shape)) + tuple(shape)
    return padded[inner[-1]] == 1


def _add_fixedpoint(a, sa, zpa, b, sb, zpb, sc, zpc, dtype):
    """TFLite's integer Add: inputs left-shifted by 20, rescaled, summed, rescaled."""
    left = 20 if np.dtype(dtype).itemsize == 1 else 15
    twice_max = 2.0 * max(sa, sb)
    ai = centered(a, zpa).astype(np.int64) << left
    bi = centered(b, zpb).astype(np.int64) << left
    raw = _fixed(ai, sa / twice_max) + _fixed(bi, sb / twice_max)  # int64 holding int32
    out = _fixed(raw, twice_max / ((1 << left) * sc))
    return saturate(out + zpc, dtype)


@register(MS_DOMAIN)
def QLinearAdd(ctx: NodeContext, A, A_scale, A_zero_point, B, B_scale, B_zero_point,
               C_scale, C_zero_point=None):
    """C = quantize(dequantize(A) + dequantize(B)) with MLAS's AVX2 float32 arithmetic."""
    sa, sb, sc = f32(_scalar(A_scale)), f32(_scalar(B_scale)), f32(_scalar(C_scale))
    zpa, zpb, zpc = _zp(A_zero_point), _zp(B_zero_point), _zp(C_zero_point)
    dtype = as_int(A).dtype
    if ctx.requantization == "fixedpoint":
        a, b = np.broadcast_arrays(as_int(A), as_int(B))
        return _add_fixedpoint(a, float(sa), zpa, b, float(sb), zpb, float(sc), zpc, dtype)
    r_ac, r_bc = f32(sa / sc), f32(sb / sc)
    # ORT's compiler contracts ``r_ac·zp_a + r_bc·zp_b`` into fma(r_ac, zp_a, r_bc·zp_b):
    # measured exhaustively (all 256×256 input pairs) against onnxruntime 1.31.
    fixed = f32(f32(zpc) - _fma(r_ac, f32(zpa), f32(r_bc * f32(zpb))))
    af = as_int(A).astype(np.float32)
    bf = as_int(B).astype(np.float32)
    shape = np.broadcast_shapes(af.shape, bf.shape)
    if _span_scalar(bf.shape, shape) and not _span_scalar(af.shape, shape):
        # B constant along the innermost output axis: MLAS's scalar-B span kernel
        part = np.broadcast_to(fixed + bf * r_bc, shape).astype(np.float32)
        out = _fma(af, r_ac, part)
    elif _span_scalar(af.shape, shape) and not _span_scalar(bf.shape, shape):
        part = np.broadcast_to(fixed + af * r_ac, shape).astype(np.float32)
        out = _fma(bf, r_bc, part)
    else:
        af, bf = np.broadcast_arrays(af, bf)
        out = _fma(af, r_ac, _fma(bf, r_bc, fixed))  # (…) float32
    return saturate(np.rint(out).astype(np.float64), dtype)


@register(MS_DOMAIN)
def QLinearMul(ctx: NodeContext, A, A_scale, A_zero_point, B, B_scale, B_zero_point,
               C_scale, C_zero_point=None):
    """C = round(float((A − zp_A)(B − zp_B)) · (s_A·s_B/s_C) + zp_C) (MLAS SSE2 kernel)."""
    prod = centered(A, A_zero_point) * centered(B, B_zero_point)  # (…) int32, exact
    dtype = as_int(A).dtype
    zpc = _zp(C_zero_point)
    if ctx.requantization == "fixedpoint":
        real = _scalar(A_scale) * _scalar(B_scale) / _scalar(C_scale)
        return saturate(_fixed(prod, real) + zpc, dtype)
    ratio = f32(f32(f32(_scalar(A_scale)) * f32(_scalar(B_scale))) / f32(_scalar(C_scale)))
    v = prod.astype(np.float32) * ratio + f32(zpc)  # float32 mul, then float32 add
    return saturate(np.rint(v).astype(np.float64), dtype)


@register(MS_DOMAIN)
def QLinearGlobalAveragePool(ctx: NodeContext, X, x_scale, x_zero_point, y_scale,
                             y_zero_point=None):
    """Integer sum − zp·count, requantized by ``s_x / (s_y · count)`` (MLAS)."""
    last = bool(ctx.attr("channels_last", 0))
    axes = tuple(range(1, X.ndim - 1)) if last else tuple(range(2, X.ndim))
    count = int(np.prod([X.shape[a] for a in axes]))
    acc = centered(X, None).sum(axis=axes, keepdims=True, dtype=np.int64)
    acc = (acc - _zp(x_zero_point) * count).astype(np.int32)  # (N, C, 1, 1) int32
    if ctx.requantization == "fixedpoint":
        real = np.float64(_scalar(x_scale)) / (np.float64(_scalar(y_scale)) * count)
    else:
        real = f32(f32(_scalar(x_scale)) / f32(f32(_scalar(y_scale)) * f32(count)))
    return requantize(acc, real, y_zero_point, as_int(X).dtype, ctx.requantization)


@register(MS_DOMAIN)
def QLinearAveragePool(ctx: NodeContext, X, x_scale, x_zero_point, y_scale, y_zero_point=None):
    """ORT ``qlinear_pool.cc``: dequantize, float32 window sum in row order, divide, quantize."""
    last = bool(ctx.attr("channels_last", 0))
    x = np.moveaxis(X, -1, 1) if last else X
    x2 = as_2d(as_int(x))
    win = pool_window(ctx, x)
    h, w = x2.shape[2:]
    top, left = win.pads[0], win.pads[1]
    (kh, kw), (sh, sw) = win.kernel, win.strides
    oh, ow = win.out
    # Windows clipped to the input (ORT never reads padding); counts per ORT's Finalize.
    hs = np.arange(oh) * sh - top
    ws = np.arange(ow) * sw - left
    he, we = np.minimum(hs + kh, h), np.minimum(ws + kw, w)
    hs, ws = np.maximum(hs, 0), np.maximum(ws, 0)
    if ctx.attr("count_include_pad", 0):
        counts = np.full((oh, ow), kh * kw, dtype=np.int64)
    else:
        counts = np.outer(he - hs, we - ws)  # (OH, OW)
    zpx, zpy = _zp(x_zero_point), _zp(y_zero_point)
    if ctx.requantization == "fixedpoint":
        acc = im2col(centered(x2, zpx), win, 0).sum(axis=(2, 3), dtype=np.int64).astype(np.int32)
        real = np.float64(_scalar(x_scale)) / (np.float64(_scalar(y_scale)) * counts)
        y = requantize(acc, real, y_zero_point, x2.dtype, "fixedpoint")
    else:
        deq = f32(_scalar(x_scale)) * (x2.astype(np.int32) - zpx).astype(np.float32)
        cols = im2col(deq, win, 0)  # (N, C, kh, kw, OH, OW); pads add +0.0, a no-op
        total = np.zeros((*x2.shape[:2], oh, ow), dtype=np.float32)
        for i in range(kh):  # sequential float32 adds in ORT's (h, w) order
            for j in range(kw):
                total = total + cols[:, :, i, j]
        avg = total / counts.astype(np.float32)  # float32
        v = np.rint(avg / f32(_scalar(y_scale)) + f32(zpy))  # nearbyintf(y / s + zp)
        y = saturate(v.astype(np.float64), x2.dtype)
    y = restore_rank(y, x.ndim)
    return np.moveaxis(y, 1, -1) if last else y


@register(MS_DOMAIN)
def QLinearSigmoid(ctx: NodeContext, X, X_scale, X_zero_point, Y_scale, Y_zero_point=None):
    """Lookup table of MLAS's logistic over every input byte."""
    table = build_table(mlas_logistic, X_scale, X_zero_point, Y_scale, Y_zero_point, X.dtype)
    return apply_table(table, X)


@register(MS_DOMAIN)
def QLinearLeakyRelu(ctx: NodeContext, X, X_scale, X_zero_point, Y_scale, Y_zero_point=None):
    """Lookup table of ``v ≥ 0 ? v : alpha · v`` (float32) over every input byte."""
    alpha = f32(ctx.attr("alpha", 0.01))

    def leaky(v: np.ndarray) -> np.ndarray:
        return np.where(v >= 0, v, alpha * v).astype(np.float32)

    table = build_table(leaky, X_scale, X_zero_point, Y_scale, Y_zero_point, X.dtype)
    return apply_table(table, X)


@register(MS_DOMAIN)
def QLinearConcat(ctx: NodeContext, Y_scale, Y_zero_point, *tuples):
    """Concat; an input with other qparams than Y is requantized by an identity table."""
    parts = []
    for i in range(0, len(tuples), 3):
        x, xs, xzp = tuples[i: i + 3]
        same = f32(_scalar(xs)) == f32(_scalar(Y_scale)) and _zp(xzp) == _zp(Y_zero_point)
        if same:
            parts.append(x)
        else:
            table = build_table(lambda v: v, xs, xzp, Y_scale, Y_zero_point, x.dtype)
            parts.append(apply_table(table, x))
    return np.concatenate(parts, axis=int(ctx.attr("axis")))


def _softmax_table(x_scale: float, reduce_len: int, signed: bool) -> np.ndarray:
    """ORT ``QlinearBuildLookupTableUint32`` (float table, indexed by byte pattern)."""
    bit_shift = np.log(float(f32(np.finfo(np.float32).max) / f32(reduce_len)))
    bit_shift = max(0.0, bit_shift - 5.0) / float(f32(x_scale))
    i = np.arange(256, dtype=np.float64)
    vals = np.exp((i - 255.0 + bit_shift) * float(f32(x_scale))).astype(np.float32)
    index = ((np.arange(256) - 128) if signed else np.arange(256)).astype(np.int64) & 0xFF
    table = np.empty(256, dtype=np.float32)
    table[index] = vals
    return table


@register(MS_DOMAIN)
def QLinearSoftmax(ctx: NodeContext, X, X_scale, x_zero_point, y_scale, y_zero_point=None):
    """ORT's table softmax: exp table shifted by the row max, float32 sum, scaled division."""
    opset = int(ctx.attr("opset", 13))
    axis = int(ctx.attr("axis", -1 if opset >= 13 else 1)) % X.ndim
    signed = X.dtype == np.int8
    if opset >= 13:
        x = np.moveaxis(X, axis, -1)
        rows = x.reshape(-1, x.shape[-1])  # (N, D)
    else:
        rows = X.reshape(int(np.prod(X.shape[:axis])), -1)
    d = rows.shape[1]
    table = _softmax_table(_scalar(X_scale), d, signed)
    if signed:
        idx = (127 - rows.max(axis=1, keepdims=True).astype(np.int32)
               + rows.astype(np.int32)) & 0xFF  # uint8(adjustment + x)
    else:
        idx = 255 - rows.max(axis=1, keepdims=True).astype(np.int32) + rows.astype(np.int32)
    vals = table[idx]  # (N, D) float32
    vsum = np.zeros((rows.shape[0], 1), dtype=np.float32)
    for j in range(d):  # sequential float32 sum, as the C loop
        vsum = vsum + vals[:, j: j + 1]
    ys = f32(np.floor(f32(1.0) / f32(_scalar(y_scale))))
    q = np.rint((vals * ys) / vsum).astype(np.int64) + _zp(y_zero_point)  # (N, D)
    out = saturate(q, X.dtype)  # onnxruntime 1.31 saturates (older sources wrapped int8)
    if opset >= 13:
        return np.moveaxis(out.reshape(x.shape), -1, axis)
    return out.reshape(X.shape)
