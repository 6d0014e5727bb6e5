"""LiteRT's float RSQRT (LayerNorm's 1/σ) and float → int8 QUANTIZE, emulated bit for bit.

The ``.tflite`` export decomposes LayerNorm into MEAN / SUB / MUL / MEAN / ADD ε / RSQRT / MUL
(``export/tflite/ops_transformer.py``). XNNPACK's RSQRT on an AVX-512 CPU
(``xnn_f32_vrsqrt_ukernel__avx512f_rsqrt_u32``, chosen by ``init_f32_rsqrt_config`` unless the
runtime asks for consistent arithmetic) is not ``1/sqrt(x)``: it takes the hardware estimate
``VRSQRT14PS`` and refines it by one Newton-Raphson step written as separate float32
multiplies and subtractions (no FMA)::

    y₀ = rsqrt14(x);  y = y₀ − (x·(y₀·y₀) − 1) · (0.5·y₀)

``rsqrt14`` is specified bit for bit by Intel's reference implementation of the approximation
instructions (``RSQRT14S``): the argument is scaled by an even power of two into [1, 4); each
half ([1, 2) and [2, 4)) has 32 segments with a linear piece ``c − d·(x − y_i)`` (``y_i`` the
segment's midpoint, ``x`` truncated to 17 significant bits), evaluated exactly and truncated to
17 significant bits. :func:`rsqrt14` computes it from those integer coefficients
(:data:`RSQRT14_C1` … :data:`RSQRT14_D2`, Intel's table). Measured on this repository's CI CPU
(Xeon, AVX-512): the hardware's ``rsqrt14`` over every float32 in [1, 4) (2²⁴ values) equals
:func:`rsqrt14`, and LiteRT 2.3's RSQRT over the same values equals :func:`xnnpack_rsqrt`
(0 differing values) where ``1/sqrt`` differs on 31 % and the correctly rounded value on 19 %.
Other CPUs run other micro-kernels (AVX: ``rsqrtps``, 12-bit and vendor-specific; ARM:
``frsqrte`` + two steps): not emulated.

XNNPACK's float → int8 QUANTIZE (``f32-qs8-vcvt``) multiplies by ``1.0f / scale`` (one float32
division when the operator is set up) and rounds half to even; the ONNX convention (and
fake quantization) divides by the scale. The two differ where ``x/s`` and ``x·(1/s)`` fall on
either side of a half: :func:`xnnpack_quantize`.
"""

from __future__ import annotations

import numpy as np
import torch

from edgequant.torch.xnnpack_float32 import fma32, ftz

#: values per block of XNNPACK's f32 sum (two 16-lane accumulators)
MEAN_BLOCK = 32
#: float32 lanes of one AVX-512 register
LANES = 16

#: Intel's ``RSQRT14`` coefficients (reference implementation ``recip14.c``, Intel 2015,
#: BSD-3-Clause): segment ``i`` of [1, 2) is ``C1[i] − D1[i]·256·(x − y_i)`` (scaled by 2¹⁹),
#: of [2, 4) ``C2[i] − D2[i]·128·(x − y_i)``.
RSQRT14_C1 = (520261, 512437, 504953, 497790, 490922, 484331, 478001, 471909, 466046, 460397,
              454947, 449688, 444606, 439694, 434939, 430335, 425875, 421551, 417355, 413284,
              409329, 405487, 401748, 398111, 394571, 391127, 387770, 384498, 381307, 378194,
              375155, 372190)
RSQRT14_D1 = (1001, 955, 915, 877, 841, 807, 775, 747, 719, 693, 669, 647, 625, 603, 585, 567,
              549, 533, 517, 501, 487, 473, 461, 449, 437, 425, 415, 403, 393, 385, 375, 367)
RSQRT14_C2 = (367881, 362349, 357056, 351992, 347136, 342475, 337997, 333693, 329545, 325551,
              321697, 317977, 314385, 310910, 307549, 304295, 301139, 298079, 295115, 292237,
              289439, 286722, 284080, 281508, 279006, 276569, 274195, 271882, 269625, 267425,
              265276, 263178)
RSQRT14_D2 = (707, 675, 647, 619, 595, 571, 549, 527, 509, 491, 473, 457, 441, 427, 413, 401,
              389, 377, 365, 355, 345, 335, 325, 317, 309, 301, 293, 285, 279, 271, 265, 259)
_C = np.array([RSQRT14_C1, RSQRT14_C2], np.int64)  # (2, 32): [exponent parity, segment]
_D = np.array([RSQRT14_D1, RSQRT14_D2], np.int64)


def rsqrt14(x: np.ndarray) -> np.ndarray:
    """``VRSQRT14PS`` (AVX-512's 14-bit 1/√x estimate) of float32 ``x``, bit for bit (module
    docstring), with XNNPACK's denormals-are-zero: zero and subnormals → +inf, +inf → 0,
    negative / NaN → NaN."""
    x = np.asarray(x, np.float32)
    out = np.full(x.shape, np.nan, np.float32)
    normal = (x >= np.finfo(np.float32).tiny) & (x < np.inf)
    xs = np.where(normal, x, np.float32(1))
    bits = xs.view(np.uint32).astype(np.int64)
    e = ((bits >> 23) & 0xFF) - 127  # unbiased exponent
    m = bits & 0x7FFFFF  # 23 fraction bits
    odd = e & 1  # 0: scaled into [1, 2), 1: into [2, 4)
    i = m >> 18  # segment (32 per half)
    # x − y_i in units of 2^-23 (of 2^-22 in [2, 4)), x truncated to its top 17 bits
    u = (m & ~0xFF) - (i << 18) - (1 << 17)
    r = (_C[odd, i] << 15) - _D[odd, i] * u  # (…) int64: 2^15 · (c − d·(x − y_i)), exact
    r64 = (r.astype(np.float64) * 2.0 ** -15).view(np.int64) & ~((1 << 36) - 1)
    est = r64.view(np.float64) * 2.0 ** -19  # truncated to 17 significant bits, in (0.5, 1]
    est = np.where((m == 0) & (odd == 0), 1.0, est)  # rsqrt14(2^(2n)) is exact
    y = (est * np.exp2(-np.floor_divide(e, 2).astype(np.float64))).astype(np.float32)  # exact
    out[normal] = y[normal]
    out[(x >= 0) & ~normal & (x < np.inf)] = np.inf  # zero and (DAZ) subnormals
    out[x == np.inf] = 0.0
    return out


def _newton_rsqrt(x: torch.Tensor) -> torch.Tensor:
    """:func:`rsqrt14` of flushed float32 ``x`` refined by XNNPACK's one Newton-Raphson step:
    ``y − (x·(y·y) − 1) · (0.5·y)``, separate multiplies and subtractions, each flushed."""
    y = torch.from_numpy(rsqrt14(x.numpy()))  # float32, same shape
    t2 = ftz(x * ftz(y * y))  # float32
    return ftz(y - ftz(ftz(t2 - 1.0) * ftz(0.5 * y)))


def xnnpack_rsqrt(x: torch.Tensor) -> torch.Tensor:
    """float32 RSQRT as XNNPACK's ``f32-vrsqrt`` AVX-512 kernel computes it: :func:`rsqrt14`,
    then one Newton-Raphson step of float32 multiplies and subtractions (each flushed to zero
    when subnormal); +inf → 0."""
    x = ftz(x.detach().float())
    y = _newton_rsqrt(x)
    return torch.where(x == float("inf"), torch.zeros_like(y), y)


def xnnpack_sqrt(x: torch.Tensor) -> torch.Tensor:
    """float32 SQRT as XNNPACK's ``f32_vsqrt_ukernel__avx512f_rsqrt`` computes it (not
    correctly rounded): ``x · rsqrt(x)`` with the refined estimate of :func:`xnnpack_rsqrt`,
    ±0 → 0."""
    x = ftz(x.detach().float())
    r = torch.where(x == 0, torch.zeros_like(x), _newton_rsqrt(x))
    return ftz(x * r)


def xnnpack_rsum(x: torch.Tensor) -> torch.Tensor:
    """float32 sum over the last axis as XNNPACK's ``f32_rsum_ukernel__avx512f_u32_acc2``
    computes it (keepdim): 32 running partial sums (two 16-lane accumulators) over the blocks
    of 32 values, then one more block of 16 into the first accumulator if 16 values are left,
    the two accumulators added, the last < 16 values added into the first lanes, the 16 lanes
    summed by halves (8, 4, 2, 1)."""
    x = x.float()
    n = x.shape[-1]
    full = n // MEAN_BLOCK * MEAN_BLOCK
    acc = torch.zeros(*x.shape[:-1], MEAN_BLOCK, dtype=torch.float32)
    for b in range(0, full, MEAN_BLOCK):
        acc = acc + x[..., b:b + MEAN_BLOCK]  # float32, in order
    half = MEAN_BLOCK // 2
    low, high = acc[..., :half], acc[..., half:]  # (…, 16) each
    if n - full >= half:
        low = low + x[..., full:full + half]
        full += half
    acc = low + high
    if n > full:  # the tail: lanes past it add zero
        tail = x[..., full:]
        acc = torch.cat([acc[..., :n - full] + tail, acc[..., n - full:]], -1)
    while acc.shape[-1] > 1:
        h = acc.shape[-1] // 2
        acc = acc[..., :h] + acc[..., h:]
    return acc  # (…, 1)


def xnnpack_rsum2(x: torch.Tensor) -> torch.Tensor:
    """float32 sum of squares over the last axis as XNNPACK's
    ``f32_rsum2_ukernel__avx512f_u64_acc4`` computes it (keepdim). XNNPACK's subgraph rewrite
    turns the export's ``MUL x·x → SUM / MEAN`` into ``reduce_sum_squared`` /
    ``reduce_mean_squared``: 64 running partial sums (four 16-lane accumulators), one FMA
    ``acc + v·v`` per value over the blocks of 64, up to three more blocks of 16 into the
    first three accumulators, combined as ``(acc0 + acc2) + (acc1 + acc3)``, the last < 16
    values FMA'd into the first lanes, the 16 lanes summed by halves."""
    x = x.float()
    n = x.shape[-1]
    lanes = 4 * LANES
    acc = torch.zeros(*x.shape[:-1], lanes, dtype=torch.float32)
    full = n // lanes * lanes
    for b in range(0, full, lanes):
        v = x[..., b:b + lanes]
        acc = fma32(v, v, acc)  # (…, 64)
    for j in range(min((n - full) // LANES, 3)):  # blocks of 16 into acc0, acc1, acc2
        v = x[..., full:full + LANES]
        part = fma32(v, v, acc[..., j * LANES:(j + 1) * LANES])
        acc = torch.cat([acc[..., :j * LANES], part, acc[..., (j + 1) * LANES:]], -1)
        full += LANES
    a = [acc[..., j * LANES:(j + 1) * LANES] for j in range(4)]
    acc = (a[0] + a[2]) + (a[1] + a[3])  # (…, 16)
    if n > full:  # the tail: lanes past it keep their sums
        v = x[..., full:]
        acc = torch.cat([fma32(v, v, acc[..., :n - full]), acc[..., n - full:]], -1)
    while acc.shape[-1] > 1:
        h = acc.shape[-1] // 2
        acc = acc[..., :h] + acc[..., h:]
    return acc  # (…, 1)


def xnnpack_mean(x: torch.Tensor) -> torch.Tensor:
    """float32 mean over the last axis as XNNPACK's MEAN (keepdim): :func:`xnnpack_rsum`
    times ``fl(1/n)``."""
    return xnnpack_rsum(x) * float(np.float32(1) / np.float32(x.shape[-1]))  # (…, 1)


def xnnpack_mean_squared(x: torch.Tensor) -> torch.Tensor:
    """float32 mean of squares over the last axis (keepdim) as XNNPACK's
    ``reduce_mean_squared``: :func:`xnnpack_rsum2` times ``fl(1/n)``."""
    return xnnpack_rsum2(x) * float(np.float32(1) / np.float32(x.shape[-1]))  # (…, 1)


def xnnpack_reduce_sum(x: torch.Tensor, axis: int, keepdim: bool) -> torch.Tensor:
    """float32 SUM over one axis as XNNPACK reduces it: the last axis by
    :func:`xnnpack_rsum`; any other axis (``f32-rdsum``, e.g. mean pooling over the sequence)
    by adding its slices in order, starting from zero."""
    x = x.float()
    axis %= x.ndim
    if axis == x.ndim - 1:
        y = xnnpack_rsum(x)
    else:
        y = torch.zeros_like(x.narrow(axis, 0, 1))
        for i in range(x.shape[axis]):
            y = y + x.narrow(axis, i, 1)  # float32, in order
    return y if keepdim else y.squeeze(axis)


def xnnpack_reduce_l2(x: torch.Tensor, axis: int, keepdim: bool) -> torch.Tensor:
    """float32 L2 norm over one axis as the ``.tflite`` export writes it (MUL x·x, SUM, SQRT;
    ``export/tflite/ops_reduce.py``), each op as XNNPACK computes it."""
    x = x.float()
    axis %= x.ndim
    if axis == x.ndim - 1:  # MUL x·x → SUM, rewritten by XNNPACK to reduce_sum_squared
        s = xnnpack_rsum2(x)
        s = s if keepdim else s.squeeze(axis)
    else:  # not emulated: the rewrite's discontiguous kernel (f32-rdsum2) is not modelled
        s = xnnpack_reduce_sum(ftz(x * x), axis, keepdim)
    return xnnpack_sqrt(s)


def layer_norm_decomposed(x: torch.Tensor, gamma: torch.Tensor | None, beta: torch.Tensor | None,
                          eps: float) -> torch.Tensor:
    """LayerNorm over the last axis as the ``.tflite`` export writes it
    (``export/tflite/ops_transformer.py``: MEAN, SUB, MUL, MEAN, ADD ε, RSQRT, MUL, MUL γ,
    ADD β), each op in float32 (subnormal results flushed to zero, :func:`ftz`), the first
    MEAN as XNNPACK sums (:func:`xnnpack_mean`), ``MEAN(d·d)`` as the ``mean_squared`` XNNPACK
    rewrites it to (:func:`xnnpack_mean_squared`) and RSQRT as XNNPACK's AVX-512 kernel
    (:func:`xnnpack_rsqrt`)."""
    x = ftz(x.float())
    d = ftz(x - xnnpack_mean(x))  # (…, D) centered
    var = ftz(xnnpack_mean_squared(d) + float(np.float32(eps)))  # (…, 1)
    y = ftz(d * xnnpack_rsqrt(var))
    if gamma is not None:
        y = ftz(y * gamma.float())
    return ftz(y + beta.float()) if beta is not None else y


def xnnpack_quantize(x: torch.Tensor, scale: np.float32, zero_point: int, qmin: int,
                     qmax: int) -> torch.Tensor:
    """Integers (as float32) XNNPACK's float → int QUANTIZE writes for float32 ``x``:
    ``round_half_even(x · fl(1/scale)) + zero_point``, saturated to ``[qmin, qmax]``."""
    inv = float(np.float32(1) / np.float32(scale))
    q = torch.round(x.detach().float() * inv) + float(zero_point)  # float32
    return q.clamp(qmin, qmax)


__all__ = ["LANES", "MEAN_BLOCK", "RSQRT14_C1", "RSQRT14_C2", "RSQRT14_D1", "RSQRT14_D2",
           "layer_norm_decomposed", "rsqrt14", "xnnpack_mean", "xnnpack_mean_squared",
           "xnnpack_quantize", "xnnpack_reduce_l2", "xnnpack_reduce_sum", "xnnpack_rsqrt",
           "xnnpack_rsum", "xnnpack_rsum2", "xnnpack_sqrt"]
