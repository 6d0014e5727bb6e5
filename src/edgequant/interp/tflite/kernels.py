"""Integer kernels of the TFLite reference executor, numerically as LiteRT's builtin kernels.

Every function takes numpy arrays (NHWC for spatial ops) plus the tensors' qparams and
returns the output array. Requantization uses :mod:`edgequant.fixedpoint`
(``QuantizeMultiplier`` of a double multiplier + ``MultiplyByQuantizedMultiplier``); integer
GEMMs run on float64 BLAS, exact because |acc| < 2^53 for any int8/int16 model.
"""

from __future__ import annotations

import math

import numpy as np

from edgequant.fixedpoint import (
    quantize_multiplier,
    requantize,
    saturating_rounding_doubling_high_mul,
)


def tfl_round(x: np.ndarray) -> np.ndarray:
    """``std::round``: half away from zero."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def multipliers(reals) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised ``QuantizeMultiplier`` of double multipliers."""
    pairs = [quantize_multiplier(float(r)) for r in np.ravel(reals)]
    return np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64)


def act_range(act: str, scale: float, zp: int, dtype: np.dtype) -> tuple[int, int]:
    """``CalculateActivationRangeQuantized``: clamp bounds of a fused activation."""
    info = np.iinfo(dtype)
    qmin, qmax = int(info.min), int(info.max)

    def q(v: float) -> int:
        return zp + int(tfl_round(np.float32(v) / np.float32(scale)))

    if act == "RELU":
        return max(qmin, q(0.0)), qmax
    if act == "RELU6":
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if act == "RELU_N1_TO_1":
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    return qmin, qmax


#: Largest im2col buffer the reference builds (bounds a corrupted filter size or stride).
MAX_PATCH_ELEMENTS = 2**28


def patches(x: np.ndarray, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int,
            pads: tuple[int, int, int, int], fill: float) -> np.ndarray:
    """im2col: (N, H, W, C) → (N, OH, OW, kh, kw, C), padding with ``fill``."""
    t, left, b, r = pads
    if min(kh, kw, sh, sw, dh, dw) < 1 or max(t, left, b, r) > 2**16:
        raise ValueError(f"window {kh}x{kw}, stride {sh}x{sw}, dilation {dh}x{dw}, pads "
                         f"{pads}: sizes must be >= 1 and pads <= 65536")
    xp = np.pad(x, ((0, 0), (t, b), (left, r), (0, 0)), constant_values=fill)
    n, hp, wp, c = xp.shape
    oh = (hp - ((kh - 1) * dh + 1)) // sh + 1
    ow = (wp - ((kw - 1) * dw + 1)) // sw + 1
    if min(oh, ow) < 1 or n * oh * ow * kh * kw * c > MAX_PATCH_ELEMENTS:
        raise ValueError(f"window {kh}x{kw} (stride {sh}x{sw}, dilation {dh}x{dw}) over "
                         f"{hp}x{wp} gives a {oh}x{ow} output of {kh * kw} taps per point; "
                         f"at most {MAX_PATCH_ELEMENTS:,} im2col elements are allowed")
    out = np.empty((n, oh, ow, kh, kw, c), xp.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, :, i, j, :] = xp[:, i * dh: i * dh + (oh - 1) * sh + 1: sh,
                                       j * dw: j * dw + (ow - 1) * sw + 1: sw, :]
    return out


def same_pads(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TFLite SAME padding (before, after) along one axis."""
    eff = (k - 1) * d + 1
    total = max((math.ceil(size / s) - 1) * s + eff - size, 0)
    return total // 2, total - total // 2


def spatial_pads(padding: str, hw, k, s, d) -> tuple[int, int, int, int]:
    """(t, l, b, r) for SAME / VALID."""
    if padding == "VALID":
        return 0, 0, 0, 0
    ph, pw = same_pads(hw[0], k[0], s[0], d[0]), same_pads(hw[1], k[1], s[1], d[1])
    return ph[0], pw[0], ph[1], pw[1]


def requantize_avx2(acc: np.ndarray, m, s) -> np.ndarray:
    """LiteRT's x86 (AVX2) ``MultiplyByQuantizedMultiplier`` for conv / FC outputs, measured
    against LiteRT and matching ``avx2_quantization_utils.h``: the gemmlowp high multiply
    (round half away) followed by a rounding right shift that rounds ties **up**
    (``(v + 2^(r−1)) >> r``), not gemmlowp's ``RoundingDivideByPOT`` (ties away from zero).
    The two differ on negative ties, ~0.1% of outputs."""
    acc = np.asarray(acc, np.int64)
    m = np.asarray(m, np.int64)
    s = np.asarray(s, np.int64)
    v = saturating_rounding_doubling_high_mul(acc * (np.int64(1) << np.maximum(s, 0)), m)
    r = np.maximum(-s, 0)
    nudge = np.where(r > 0, np.left_shift(np.int64(1), np.maximum(r - 1, 0)), 0)
    return (v + nudge) >> r


def requant_out(acc: np.ndarray, in_scale: float, w_scale: np.ndarray, out_scale: float,
                out_zp: int, lo: int, hi: int, wide: bool = False,
                flavor: str = "builtin") -> np.ndarray:
    """Per-channel ``acc · (in_s·w_s/out_s)`` (last axis = channel) + zp, clamped.

    ``flavor="xnnpack"``: XNNPACK's fp32 requantization, ``rint(float32(acc) · scale)`` with
    ``scale = float32(in_s · w_s) / out_s`` in float32 (round half to even).
    """
    if flavor == "xnnpack" and not wide:
        ws = np.asarray(w_scale, np.float32).ravel()
        scale = ((np.float32(in_scale) * ws).astype(np.float32) / np.float32(out_scale))
        y = np.rint((acc.astype(np.float32) * scale.astype(np.float32)).astype(np.float32))
        return np.clip(y.astype(np.int64) + out_zp, lo, hi)
    reals = [float(in_scale) * float(ws) / float(out_scale) for ws in np.ravel(w_scale)]
    m, s = multipliers(reals)
    if wide:
        y = requantize_int64(acc, m, s)
    else:
        y = requantize_avx2(acc, m, s)
    return np.clip(y + out_zp, lo, hi)


def requantize_int64(acc: np.ndarray, m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """TFLite ``MultiplyByQuantizedMultiplier(int64 x, …)`` (16x8 conv / FC)."""
    acc = np.asarray(acc, np.int64)
    reduced = np.where(m < 0x7FFF0000, (m + (1 << 15)) >> 16, 0x7FFF).astype(np.int64)
    total = (15 - s).astype(np.int64)
    rnd = np.left_shift(np.int64(1), total - 1)
    # x · reduced may exceed int64 only for |x| ≥ 2^48: far beyond any 16x8 accumulator
    return (acc * reduced + rnd) >> total


def requantize_single(acc: np.ndarray, m, s) -> np.ndarray:
    """TFLite's single-rounding ``MultiplyByQuantizedMultiplier``: ``(x·m + 2^(30−s)) >> (31−s)``
    (16x8 FULLY_CONNECTED, measured against LiteRT: it matches every output where the
    double-rounding AVX2 form missed ~0.1%). Computed in Python integers: for a 16x8
    accumulator ``x·m`` can pass 2^63. ``m`` / ``s``: per channel (last axis of ``acc``)."""
    acc = np.asarray(acc, np.int64)
    n = acc.shape[-1] if acc.ndim else 1
    m = np.broadcast_to(np.asarray(m, np.int64).ravel(), (n,))
    total = 31 - np.broadcast_to(np.asarray(s, np.int64).ravel(), (n,))  # (O,)
    if acc.size == 0 or int(np.abs(acc).max()) * int(m.max()) < 2**62:  # int64 is exact
        return (acc * m + np.left_shift(np.int64(1), total - 1)) >> total
    mo = np.array([int(v) for v in m], dtype=object)
    to = np.array([int(t) for t in total], dtype=object)
    rnd = np.array([1 << (int(t) - 1) for t in total], dtype=object)
    y = (acc.astype(object) * mo + rnd) >> to  # (…, O) Python ints
    return y.astype(np.int64)


def conv2d(x, w, bias, xq, wq, yq, stride, dil, padding, act, depth_multiplier=None,
           out_dtype=np.int8, flavor="builtin"):
    """CONV_2D (w: OHWI) or DEPTHWISE_CONV_2D (w: 1HWC) with per-channel requantization."""
    in_scale, in_zp = float(xq[0][0]), int(xq[1][0])
    out_scale, out_zp = float(yq[0][0]), int(yq[1][0])
    wide = np.dtype(out_dtype) == np.int16
    xo = x.astype(np.int64) - in_zp  # (N, H, W, C) offset input; padding adds 0 here
    if depth_multiplier is None:
        kh, kw = w.shape[1:3]
    else:
        kh, kw = w.shape[1:3]
    pads = spatial_pads(padding, x.shape[1:3], (kh, kw), stride, dil)
    p = patches(xo.astype(np.float64), kh, kw, *stride, *dil, pads, 0.0)  # (N,OH,OW,kh,kw,C)
    if depth_multiplier is None:
        wf = w.reshape(w.shape[0], -1).astype(np.float64)  # (O, kh·kw·C)
        acc = p.reshape(*p.shape[:3], -1) @ wf.T  # (N, OH, OW, O) exact in float64
    else:
        c = x.shape[3]
        pr = np.repeat(p, depth_multiplier, axis=5)  # (N,OH,OW,kh,kw,C·M), channel c·M+m
        acc = np.einsum("nhwijc,ijc->nhwc", pr, w[0].astype(np.float64))
        del c
    acc = acc.astype(np.int64)
    if bias is not None:
        acc = acc + bias.astype(np.int64)
    lo, hi = act_range(act, out_scale, out_zp, out_dtype)
    y = requant_out(acc, in_scale, wq[0], out_scale, out_zp, lo, hi, wide, flavor)
    return y.astype(out_dtype)


def fully_connected(x, w, bias, xq, wq, yq, act, out_dtype=np.int8, flavor="builtin"):
    """FULLY_CONNECTED: (…, K) · (O, K)ᵀ + bias, requantized per channel (or per tensor)."""
    in_scale, in_zp = float(xq[0][0]), int(xq[1][0])
    out_scale, out_zp = float(yq[0][0]), int(yq[1][0])
    xo = (x.astype(np.int64) - in_zp).astype(np.float64)
    acc = (xo @ w.astype(np.float64).T).astype(np.int64)  # (…, O)
    if bias is not None:
        acc = acc + bias.astype(np.int64)
    lo, hi = act_range(act, out_scale, out_zp, out_dtype)
    wscale = wq[0] if wq[0].size > 1 else wq[0][:1]
    if np.dtype(out_dtype) == np.int16:  # 16x8 FC: requantized in double (unlike CONV_2D)
        eff = np.array([float(np.float32(in_scale)) * float(np.float32(ws))
                        / float(np.float32(out_scale)) for ws in np.ravel(wscale)])  # (O,)
        y = np.clip(tfl_round(acc.astype(np.float64) * eff).astype(np.int64) + out_zp, lo, hi)
        return y.astype(out_dtype)
    y = requant_out(acc, in_scale, wscale, out_scale, out_zp, lo, hi, False, flavor)
    return y.astype(out_dtype)


def _xnn_multiplier(ratio: np.float32, shift: int) -> int:
    """``lrintf(ratio · 2^shift)``, the scaling done on the float's exponent bits."""
    return int(np.rint(np.ldexp(np.float32(ratio), shift).astype(np.float32)))


def add_sub_xnnpack(a, b, aq, bq, yq, act, sign: int, dtype=np.int8):
    """int8 ADD / SUB as XNNPACK's qs8 vadd (measured): multipliers ``sa/so``, ``sb/so`` in
    fixed point with ``20 − exponent(max)`` fraction bits, one arithmetic shift (round half
    up); SUB negates ``b``'s multiplier."""
    sa, sb, so = (np.float32(q[0][0]) for q in (aq, bq, yq))
    ra, rb = np.float32(sa / so), np.float32(sb / so)
    shift = 20 - (int(np.frexp(max(ra, rb))[1]) - 1)
    ma, mb = _xnn_multiplier(ra, shift), sign * _xnn_multiplier(rb, shift)
    bias = (1 << (shift - 1)) - ma * int(aq[1][0]) - mb * int(bq[1][0])
    acc = bias + a.astype(np.int64) * ma + b.astype(np.int64) * mb  # (…) int32 in XNNPACK
    y = (acc >> shift) + int(yq[1][0])
    lo, hi = act_range(act, float(so), int(yq[1][0]), dtype)
    return np.clip(y, lo, hi).astype(dtype)


def add_sub(a, b, aq, bq, yq, act, sign: int, dtype=np.int8, flavor="builtin"):
    """int8 ADD / SUB (``sign`` −1) with TFLite's left-shift-20 scheme; int16 (general
    scales) shifts by 15 and rescales its inputs with single rounding, its sum with
    gemmlowp's double rounding (the only combination matching LiteRT on every output).
    ``flavor="xnnpack"``: :func:`add_sub_xnnpack` (int8)."""
    if flavor == "xnnpack" and np.dtype(dtype) == np.int8:
        return add_sub_xnnpack(a, b, aq, bq, yq, act, sign, dtype)
    left_shift = 15 if np.dtype(dtype) == np.int16 else 20
    sa, sb, so = float(aq[0][0]), float(bq[0][0]), float(yq[0][0])
    twice_max = 2 * max(sa, sb)
    m1, s1 = quantize_multiplier(sa / twice_max)
    m2, s2 = quantize_multiplier(sb / twice_max)
    mo, s_o = quantize_multiplier(twice_max / ((1 << left_shift) * so))
    xa = (a.astype(np.int64) - int(aq[1][0])) * (1 << left_shift)
    xb = (b.astype(np.int64) - int(bq[1][0])) * (1 << left_shift)
    if np.dtype(dtype) == np.int16:  # 16-bit general scales: inputs rescaled single-rounding
        ra = requantize_single(xa[..., None], [m1], [s1])[..., 0]  # (measured vs LiteRT)
        rb = requantize_single(xb[..., None], [m2], [s2])[..., 0]
    else:
        ra = requantize(xa, m1, s1)
        rb = requantize(xb, m2, s2)
    raw = requantize(ra + sign * rb, mo, s_o) + int(yq[1][0])
    lo, hi = act_range(act, so, int(yq[1][0]), dtype)
    return np.clip(raw, lo, hi).astype(dtype)


def mul(a, b, aq, bq, yq, act, dtype=np.int8, flavor="builtin"):
    """int8 MUL: (a − za)(b − zb) · (sa·sb/so); XNNPACK: fp32 requantization."""
    sa, sb, so = float(aq[0][0]), float(bq[0][0]), float(yq[0][0])
    prod = (a.astype(np.int64) - int(aq[1][0])) * (b.astype(np.int64) - int(bq[1][0]))
    if flavor == "xnnpack":
        scale = np.float32(np.float32(np.float32(sa) * np.float32(sb)) / np.float32(so))
        y = np.rint((prod.astype(np.float32) * scale).astype(np.float32)).astype(np.int64)
    else:
        m, s = quantize_multiplier(sa * sb / so)
        y = requantize(prod, m, s)
    y = y + int(yq[1][0])
    lo, hi = act_range(act, so, int(yq[1][0]), dtype)
    return np.clip(y, lo, hi).astype(dtype)


def pool(x, kind: str, k, stride, padding, act, yq, dtype=np.int8):
    """MAX_POOL_2D / AVERAGE_POOL_2D on raw integers (qparams unchanged); SAME padding is
    excluded from the window (average divides by the valid count, rounding half away)."""
    pads = spatial_pads(padding, x.shape[1:3], k, stride, (1, 1))
    info = np.iinfo(dtype)
    if kind == "max":
        p = patches(x.astype(np.int64), *k, *stride, 1, 1, pads, int(info.min) - 1)
        y = p.max(axis=(3, 4))
    else:
        p = patches(x.astype(np.float64), *k, *stride, 1, 1, pads, 0.0)
        ones = patches(np.ones((*x.shape[:3], 1)), *k, *stride, 1, 1, pads, 0.0)
        acc = p.sum(axis=(3, 4)).astype(np.int64)  # (N, OH, OW, C)
        cnt = ones.sum(axis=(3, 4)).astype(np.int64)  # (N, OH, OW, 1)
        half = cnt // 2
        num = np.where(acc > 0, acc + half, acc - half)
        y = np.sign(num) * (np.abs(num) // cnt)  # C++ truncating division
    lo, hi = act_range(act, float(yq[0][0]), int(yq[1][0]), dtype)
    return np.clip(y, lo, hi).astype(dtype)


def mean(x, axes, keep, xq, yq, dtype=np.int8, flavor="builtin"):
    """int8 MEAN as LiteRT (measured against it).

    * builtin, 4-D over H, W with keep_dims (TFLite's Mean4D fast path): raw sum · fixed-point
      ``in_s / (n · out_s)`` (AVX2 rounding) + ``zo − round(zi · in_s / out_s)``;
    * builtin otherwise (integer QuantizedMeanOrSum): ``QuantizeMultiplier(in_s/out_s)`` with
      ``1/n`` folded into the multiplier (``(m << k) / n``, exponent − k), gemmlowp rounding;
    * XNNPACK: fp32 requantization of ``sum(x − zi)`` by ``in_s / (out_s · n)``.
    """
    si, so = np.float32(xq[0][0]), np.float32(yq[0][0])
    zi, zo = int(xq[1][0]), int(yq[1][0])
    n = int(np.prod([x.shape[a] for a in axes]))
    raw = x.astype(np.int64).sum(axis=tuple(axes), keepdims=keep)  # int32 in the kernel
    info = np.iinfo(dtype)
    if flavor == "xnnpack":
        scale = np.float32(si / (so * np.float32(n)))
        y = np.rint(((raw - zi * n).astype(np.float32) * scale).astype(np.float32)) + zo
    elif x.ndim == 4 and keep and sorted(axes) == [1, 2]:
        temp = np.float32(np.float32(zi * si) / so)
        temp = np.float32(temp + 0.5) if temp > 0 else np.float32(temp - 0.5)
        bias = zo - int(temp)  # static_cast<int32_t> truncates
        m, s = quantize_multiplier(float(np.float32(si / (np.float32(n) * so))))
        y = requantize_avx2(raw, m, s) + bias
    else:
        m0, s0 = quantize_multiplier(float(si) / float(so))
        k = min(n.bit_length() - 1, 32, 31 + s0)
        y = requantize(raw - zi * n, (m0 << k) // n, s0 - k) + zo
    return np.clip(y, info.min, info.max).astype(dtype)


def requantize_tensor(x, xq, yq, out_dtype, flavor="builtin"):
    """QUANTIZE integer → integer: (x − zx) · (sx/so) + zo (fixed point).

    ``flavor="xnnpack"`` (measured): XNNPACK's Q8 convert, multiplier ``rint(256·sx/so)``,
    ``((x − zx)·m + (zo << 8) + 128) >> 8``. Builtin int8 → int8 runs LiteRT's optimized
    ``Requantize<int8_t, int8_t>``: blocks of 16 values through its vector path, whose x86
    rounding is :func:`requantize_avx2` (ties up), the remaining ``size % 16`` through the
    scalar gemmlowp form (ties away from zero). Measured on 300 random scale pairs and sizes
    1..59: identical; gemmlowp alone missed 88 of them (negative ties, mostly ratios < 0.5).
    int16 in or out keeps gemmlowp's double rounding (measured, identical).
    """
    if flavor == "xnnpack" and np.dtype(out_dtype) == np.int8 and x.dtype == np.int8:
        ratio = np.float32(np.float32(xq[0][0]) / np.float32(yq[0][0]))
        m = int(np.rint(np.float32(256) * ratio))
        y = ((x.astype(np.int64) - int(xq[1][0])) * m + (int(yq[1][0]) << 8) + 0x80) >> 8
    elif float(xq[0][0]) == float(yq[0][0]):  # same scale: pure zero-point shift (uint8 ↔ int8)
        y = x.astype(np.int64) - int(xq[1][0]) + int(yq[1][0])
    elif x.dtype == np.int8 and np.dtype(out_dtype) == np.int8:
        m, s = quantize_multiplier(float(xq[0][0]) / float(yq[0][0]))
        d = x.astype(np.int64).reshape(-1) - int(xq[1][0])
        k = d.size // 16 * 16  # vector blocks, then the scalar tail
        y = np.concatenate([requantize_avx2(d[:k], m, s), requantize(d[k:], m, s)])
        y = y.reshape(x.shape) + int(yq[1][0])
    else:
        m, s = quantize_multiplier(float(xq[0][0]) / float(yq[0][0]))
        y = requantize(x.astype(np.int64) - int(xq[1][0]), m, s) + int(yq[1][0])
    info = np.iinfo(out_dtype)
    return np.clip(y, info.min, info.max).astype(out_dtype)


def quantize_float(x, yq, out_dtype, flavor="builtin"):
    """QUANTIZE float → integer as LiteRT (measured): ``x · (1/scale)`` in float32, rounded
    half to even, + zero point, saturated. The builtin kernel does this in blocks of 8 and
    computes the tail as ``round(x / scale)`` in double (half away from zero)."""
    info = np.iinfo(out_dtype)
    s = np.float32(yq[0][0])
    flat = x.astype(np.float32).reshape(-1)
    n8 = flat.size if flavor == "xnnpack" else flat.size // 8 * 8
    head = np.rint((flat[:n8] * (np.float32(1) / s)).astype(np.float32))
    tail = tfl_round(flat[n8:].astype(np.float64) / float(s))
    v = np.concatenate([head, tail]).reshape(x.shape)
    return np.clip(v + int(yq[1][0]), info.min, info.max).astype(out_dtype)


def dequantize(x, xq, flavor="builtin") -> np.ndarray:
    """DEQUANTIZE integer → float32 as LiteRT's optimized kernel (measured): blocks of 8
    compute ``x·s + (−zp·s)`` in float32; the tail computes ``(x − zp)·s`` in double.
    XNNPACK computes ``float32(x − zp) · s``."""
    s, zp = np.float32(xq[0][0]), int(xq[1][0])
    if flavor == "xnnpack":
        return ((x.astype(np.int64) - zp).astype(np.float32) * s).astype(np.float32)
    flat = x.reshape(-1).astype(np.int64)
    n8 = flat.size // 8 * 8
    head = (flat[:n8].astype(np.float32) * s + np.float32(-np.float32(zp) * s)).astype(np.float32)
    tail = ((flat[n8:] - zp) * float(s)).astype(np.float32)
    return np.concatenate([head, tail]).reshape(x.shape)


def batch_matmul(a, b, aq, bq, yq, adj_x=False, adj_y=False, dtype=np.int8,
                 flavor="builtin"):
    """int8 BATCH_MATMUL: Σ (a − za)(b − zb), requantized by ``sa·sb/so`` (per tensor) with
    gemmlowp rounding (measured: LiteRT's builtin kernel). XNNPACK takes over the int8
    BATCH_MATMULs whose second operand has zero point 0 and requantizes in fp32,
    ``rint(float32(acc) · float32(float32(sa·sb) / so))`` (measured); the others stay on the
    builtin kernel."""
    af = (a.astype(np.int64) - int(aq[1][0])).astype(np.float64)
    bf = (b.astype(np.int64) - int(bq[1][0])).astype(np.float64)
    if adj_x:
        af = np.swapaxes(af, -1, -2)
    if adj_y:
        bf = np.swapaxes(bf, -1, -2)
    acc = np.matmul(af, bf).astype(np.int64)  # (…, M, N) exact
    info = np.iinfo(dtype)
    if flavor == "xnnpack" and np.dtype(dtype) == np.int8 and int(bq[1][0]) == 0:
        sa, sb, so = (np.float32(q[0][0]) for q in (aq, bq, yq))
        scale = np.float32(np.float32(sa * sb) / so)
        y = np.rint((acc.astype(np.float32) * scale).astype(np.float32)).astype(np.int64)
        return np.clip(y + int(yq[1][0]), info.min, info.max).astype(dtype)
    m, s = quantize_multiplier(float(aq[0][0]) * float(bq[0][0]) / float(yq[0][0]))
    if np.dtype(dtype) == np.int16:  # int64 accumulator: the int64 MultiplyByQuantizedMultiplier
        y = requantize_int64(acc, np.int64(m), np.int64(s)) + int(yq[1][0])
    else:
        y = requantize(acc, m, s) + int(yq[1][0])
    return np.clip(y, info.min, info.max).astype(dtype)


def _row_quantize(x: np.ndarray, asymmetric: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LiteRT's ``BatchQuantizeFloats`` per row of ``x`` (R, K) float32: int8 values, float32
    scaling factors and int32 offsets (``PortableAsymmetricQuantizeFloats`` /
    ``PortableSymmetricQuantizeFloats``)."""
    rows = x.shape[0]
    q = np.zeros(x.shape, np.int64)
    sf = np.ones(rows, np.float32)
    off = np.zeros(rows, np.int64)
    for r in range(rows):
        v = x[r]
        lo, hi = np.float32(v.min()), np.float32(v.max())
        if asymmetric:
            rmin, rmax = float(min(np.float32(0), lo)), float(max(np.float32(0), hi))
            if rmin == rmax:
                continue
            scale = (rmax - rmin) / 255.0  # double
            zmin, zmax = -128.0 - rmin / scale, 127.0 - rmax / scale
            zp = zmin if 128.0 + abs(rmin / scale) < 127.0 + abs(rmax / scale) else zmax
            zp = -128 if zp <= -128 else 127 if zp >= 127 else int(tfl_round(np.float64(zp)))
            sf[r], off[r] = np.float32(scale), zp
            inv = np.float32(np.float32(1) / sf[r])
            qv = tfl_round((np.float32(zp) + (v * inv).astype(np.float32)).astype(np.float32))
            q[r] = np.clip(qv, -128, 127)
        else:
            rng = max(abs(lo), abs(hi))
            if rng == 0:
                continue
            sf[r] = np.float32(rng / np.float32(127))
            inv = np.float32(np.float32(127) / rng)
            q[r] = np.clip(tfl_round((v * inv).astype(np.float32)), -127, 127)
    return q, sf, off


def hybrid_fully_connected(x, w, bias, w_scale, act: str, asymmetric: bool) -> np.ndarray:
    """Hybrid FULLY_CONNECTED (float32 input, int8 weights, float output) as LiteRT's builtin
    ``EvalHybridDense`` reads: each input row quantized to int8 on the fly
    (:func:`_row_quantize`), an exact int32 dot product minus ``offset · Σw``, then
    ``out = bias + float32(acc) · float32(w_scale · row_scale)`` in float32. Measured against
    LiteRT 2.3.0: most outputs bit identical, some rows a few float32 ulps apart (the float
    order of the shipped build is not pinned down) — a float oracle, compared as float."""
    x2 = np.asarray(x, np.float32)  # (R, K)
    q, sf, off = _row_quantize(x2, asymmetric)
    ws = np.asarray(w_scale, np.float32).ravel()
    if ws.size == 1:  # per tensor: folded into the row factors
        sf = (sf * ws[0]).astype(np.float32)
        row_scale = np.broadcast_to(sf[:, None], (len(sf), w.shape[0]))
    else:
        row_scale = (ws[None, :] * sf[:, None]).astype(np.float32)  # (R, O)
    wi = w.astype(np.float64)
    acc = (q.astype(np.float64) @ wi.T).astype(np.int64)  # (R, O) exact
    acc = acc - off[:, None] * w.astype(np.int64).sum(axis=1)[None, :]
    base = np.zeros(acc.shape, np.float32) if bias is None else np.broadcast_to(
        np.asarray(bias, np.float32), acc.shape)
    y = (base + (acc.astype(np.float32) * row_scale).astype(np.float32)).astype(np.float32)
    zero_rows = ~np.any(x2 != 0, axis=1)  # the kernel skips an all-zero input: bias only
    if zero_rows.all():
        y = base.astype(np.float32).copy()
    lo, hi = {"RELU": (0, np.inf), "RELU6": (0, 6), "RELU_N1_TO_1": (-1, 1)}.get(
        act, (-np.inf, np.inf))
    return np.clip(y, lo, hi).astype(np.float32)
