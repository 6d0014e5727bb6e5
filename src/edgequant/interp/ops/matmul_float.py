"""com.microsoft MatMulIntegerToFloat as onnxruntime's CPU kernel computes it.

``Y = float32(acc) · (a_scale · b_scale) (+ bias)`` with ``acc = (A − zp_A) @ (B − zp_B)``
exact int32. onnxruntime (``dynamic_quantize_matmul.cc``) first forms the float32 multiplier
``a_scale · b_scale[n]`` per column, then MLAS's scale-bias output processor multiplies the
converted accumulator by it and adds the bias: two float32 roundings, reproduced here.
The ``w8_dynamic`` recipe emits this op with ``a_scale = 1`` and a per-row Mul after it.
"""

from __future__ import annotations

import numpy as np

from edgequant.interp.ops.qlinear import _matmul_acc
from edgequant.interp.registry import MS_DOMAIN, NodeContext, register


@register(MS_DOMAIN)
def MatMulIntegerToFloat(ctx: NodeContext, A, B, a_scale, b_scale, a_zero_point=None,
                         b_zero_point=None, bias=None):
    """float32 ``(A − zp_A) @ (B − zp_B) · (a_scale · b_scale) (+ bias)``; b per tensor or
    per column (N,), a per tensor."""
    a_scale = np.asarray(a_scale, np.float32)
    b_scale = np.asarray(b_scale, np.float32)
    n = np.shape(B)[-1]
    if a_scale.size != 1:
        raise ValueError(f"MatMulIntegerToFloat {ctx.name!r}: a_scale has {a_scale.size} values; "
                         "only a per-tensor (1-value) a_scale is supported")
    if b_scale.size not in (1, n):
        raise ValueError(f"MatMulIntegerToFloat {ctx.name!r}: b_scale has {b_scale.size} values; "
                         f"allowed: 1 (per tensor) or {n} (per column of B)")
    acc = _matmul_acc(A, a_zero_point, B, b_zero_point)  # (..., M, N) int32
    multiplier = a_scale.reshape(()) * b_scale.reshape(-1)  # (N,) or (1,) float32
    y = acc.astype(np.float32) * multiplier  # (..., M, N) float32
    if bias is not None:
        y = y + np.asarray(bias, np.float32)  # (N,) broadcast on the last axis
    return y.astype(np.float32)
