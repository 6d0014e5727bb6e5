"""Integer convolution and matrix multiplication: QLinearConv, QLinearMatMul, ConvInteger,
MatMulInteger.

The accumulation ``Σ (x − zp_x)(w − zp_w)`` is exact (float64 BLAS on integers, see
``integers.exact_matmul``), the int32 bias is added, and the result is requantized with
``requant.requantize`` in the interpreter's mode.
"""

from __future__ import annotations

import numpy as np

from edgequant.interp.integers import as_int, centered, exact_matmul, to_int32
from edgequant.interp.ops.conv import as_2d, conv_gemm, conv_shapes, restore_rank
from edgequant.interp.registry import MS_DOMAIN, NodeContext, register
from edgequant.interp.requant import real_multiplier, requantize


def _channel_param(p, ndim: int, axis: int) -> np.ndarray:
    """A scalar or per-channel 1-D parameter reshaped to broadcast on ``axis`` of ``ndim``."""
    p = np.asarray(p)
    if p.size == 1:
        return p.reshape(())
    return p.reshape([-1 if i == axis else 1 for i in range(ndim)])


def _conv_acc(ctx: NodeContext, x, x_zp, w, w_zp) -> np.ndarray:
    """Exact int32 accumulator of a quantized convolution: (N, M, OH, OW) int32."""
    win, group = conv_shapes(ctx, x, w)  # geometry from the original (1-D or 2-D) ranks
    xc = centered(as_2d(as_int(x)), x_zp)  # (N, C, H, W) int32
    w2 = as_2d(as_int(w))
    wzp = None if w_zp is None else _channel_param(as_int(w_zp), w2.ndim, 0)
    wc = centered(w2, wzp)  # (M, C/g, kh, kw) int32
    return to_int32(conv_gemm(xc, wc, win, group, exact_matmul))  # (N, M, OH, OW)


@register()
def QLinearConv(ctx: NodeContext, x, x_scale, x_zero_point, w, w_scale, w_zero_point,
                y_scale, y_zero_point, B=None):
    """``y = requant(Σ (x − zp_x)(w − zp_w) + B, s_x·s_w/s_y) + zp_y`` per output channel."""
    acc = _conv_acc(ctx, x, x_zero_point, w, w_zero_point)  # (N, M, OH, OW) int32
    if B is not None:
        acc = acc + B.astype(np.int32).reshape(1, -1, 1, 1)  # int32 (C wraps; ORT the same)
    mult = real_multiplier(x_scale, np.asarray(w_scale).reshape(-1), y_scale, ctx.requantization)
    mult = mult.reshape(1, -1, 1, 1) if mult.size > 1 else mult.reshape(())
    y = requantize(acc, mult, y_zero_point, np.asarray(y_zero_point).dtype, ctx.requantization)
    return restore_rank(y, x.ndim)


@register()
def ConvInteger(ctx: NodeContext, x, w, x_zero_point=None, w_zero_point=None):
    """int32 ``Σ (x − zp_x)(w − zp_w)`` convolution, no requantization."""
    return restore_rank(_conv_acc(ctx, x, x_zero_point, w, w_zero_point), x.ndim)


def _matmul_acc(a, a_zp, b, b_zp) -> np.ndarray:
    """Exact int32 ``(a − zp_a) @ (b − zp_b)``; zp_a per row (M,), zp_b per column (N,)."""
    azp = None if a_zp is None else np.asarray(as_int(a_zp))
    if azp is not None and azp.ndim == 1 and azp.size > 1:
        azp = azp.reshape(-1, 1)  # per-row zero point of A (M, 1)
    bzp = None if b_zp is None else np.asarray(as_int(b_zp))
    ac = centered(a, azp)  # (..., M, K) int32
    bc = centered(b, bzp)  # (..., K, N) int32
    return to_int32(exact_matmul(ac, bc))  # (..., M, N)


@register()
def MatMulInteger(ctx: NodeContext, A, B, a_zero_point=None, b_zero_point=None):
    """int32 ``(A − zp_A) @ (B − zp_B)`` with numpy MatMul broadcasting."""
    return _matmul_acc(A, a_zero_point, B, b_zero_point)


@register()
def QLinearMatMul(ctx: NodeContext, a, a_scale, a_zero_point, b, b_scale, b_zero_point,
                  y_scale, y_zero_point):
    """``y = requant((a − zp_a) @ (b − zp_b), s_a·s_b/s_y) + zp_y``; s_b may be per column."""
    acc = _matmul_acc(a, a_zero_point, b, b_zero_point)  # (..., M, N) int32
    mult = real_multiplier(a_scale, b_scale, y_scale, ctx.requantization)
    if mult.size == 1:
        mult = mult.reshape(())
    y = requantize(acc, mult, y_zero_point, np.asarray(y_zero_point).dtype, ctx.requantization)
    return y


@register(MS_DOMAIN)
def QGemm(ctx: NodeContext, A, a_scale, a_zero_point, B, b_scale, b_zero_point, C=None,
          y_scale=None, y_zero_point=None):
    """com.microsoft QGemm: int32 ``A'B' + C`` then requantized by ``alpha·s_a·s_b / s_y``.

    Without ``y_scale`` the output is float: ``float32(acc) · (alpha·s_a·s_b)`` (ORT's
    scale-bias output processor).
    """
    a = as_int(A).T if ctx.attr("transA", 0) else as_int(A)
    b = as_int(B).T if ctx.attr("transB", 0) else as_int(B)
    acc = _matmul_acc(a, a_zero_point, b, b_zero_point)  # (M, N) int32
    if C is not None:
        acc = acc + np.asarray(C, dtype=np.int32)  # int32 bias, broadcast as Gemm's C
    alpha = np.float32(ctx.attr("alpha", 1.0))
    # ORT: output_scale = (alpha · s_a · s_b) / s_y, left to right in float32.
    scale = (alpha * np.float32(np.asarray(a_scale).reshape(-1)[0])) * np.asarray(
        b_scale, dtype=np.float32).reshape(-1)  # (1,) or (N,) float32
    if y_scale is None:
        return acc.astype(np.float32) * scale
    if ctx.requantization == "fixedpoint":
        mult = (float(alpha) * np.float64(np.asarray(a_scale).reshape(-1)[0])
                * np.asarray(b_scale, np.float64).reshape(-1)
                / np.float64(np.asarray(y_scale).reshape(-1)[0]))
    else:
        mult = scale / np.float32(np.asarray(y_scale).reshape(-1)[0])
    mult = mult.reshape(()) if mult.size == 1 else mult
    return requantize(acc, mult, y_zero_point, np.asarray(y_zero_point).dtype,
                      ctx.requantization)
