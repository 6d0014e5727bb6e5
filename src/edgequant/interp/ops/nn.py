"""Float neural-network ops: Gemm, MatMul, Softmax, LayerNormalization, BatchNormalization."""

from __future__ import annotations

import numpy as np

from edgequant.interp.integers import flat_matmul
from edgequant.interp.registry import NodeContext, register


@register()
def MatMul(ctx: NodeContext, a, b):
    """a @ b (numpy broadcasting, as ONNX)."""
    return flat_matmul(a, b).astype(np.result_type(a, b))


@register()
def Gemm(ctx: NodeContext, a, b, c=None):
    """alpha · A' @ B' + beta · C (A', B' optionally transposed)."""
    a = a.T if ctx.attr("transA", 0) else a
    b = b.T if ctx.attr("transB", 0) else b
    y = np.float32(ctx.attr("alpha", 1.0)) * np.matmul(a, b)  # (M, N)
    if c is not None:
        y = y + np.float32(ctx.attr("beta", 1.0)) * c
    return y.astype(a.dtype)


@register()
def Softmax(ctx: NodeContext, x):
    """exp(x − max) / Σ exp(x − max) along ``axis`` (opset ≥ 13, default −1); before opset
    13 over the input coerced to 2-D at ``axis`` (default 1)."""
    if ctx.opset < 13:
        axis = int(ctx.attr("axis", 1)) % max(x.ndim, 1)
        rows = x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)  # (N, D)
        e = np.exp(rows - rows.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).reshape(x.shape).astype(x.dtype)
    axis = int(ctx.attr("axis", -1))
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype)


@register()
def LayerNormalization(ctx: NodeContext, x, scale, bias=None):
    """(x − mean) / √(var + ε) · scale + bias over the axes from ``axis`` on."""
    axis = int(ctx.attr("axis", -1)) % x.ndim
    eps = np.float32(ctx.attr("epsilon", 1e-5))
    axes = tuple(range(axis, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)  # (..., 1) float32
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    y = (x - mean) * inv_std * scale
    if bias is not None:
        y = y + bias
    return y.astype(x.dtype), mean.astype(np.float32), inv_std.astype(np.float32)


@register()
def BatchNormalization(ctx: NodeContext, x, scale, bias, mean, var):
    """Inference batch norm: (x − mean) / √(var + ε) · scale + bias on axis 1."""
    eps = np.float32(ctx.attr("epsilon", 1e-5))
    shape = [1, -1] + [1] * (x.ndim - 2)
    inv = (scale / np.sqrt(var + eps)).reshape(shape)
    return ((x - mean.reshape(shape)) * inv + bias.reshape(shape)).astype(x.dtype)
