"""Float neural-network ops: Gemm, MatMul, Einsum, Softmax / LogSoftmax / Hardmax and the
normalizations (Layer, Batch, Instance, Group, LRN, MeanVariance, Lp)."""

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


@register()
def InstanceNormalization(ctx: NodeContext, x, scale, bias):
    """(x − mean) / √(var + ε) · scale + bias, statistics per (sample, channel) over space."""
    eps = np.float32(ctx.attr("epsilon", 1e-5))
    axes = tuple(range(2, x.ndim))
    shape = [1, -1] + [1] * (x.ndim - 2)
    mean = x.mean(axis=axes, keepdims=True)  # (N, C, 1, ...)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps) * scale.reshape(shape) + bias.reshape(shape)
    return y.astype(x.dtype)


@register()
def LRN(ctx: NodeContext, x):
    """Local response normalization across channels:
    x / (bias + alpha / size · Σ_{nearby c} x²)^beta over a window of ``size`` channels."""
    size = int(ctx.attr("size"))
    alpha, beta = ctx.attr("alpha", 1e-4), ctx.attr("beta", 0.75)
    bias = ctx.attr("bias", 1.0)
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2  # channels before / after c
    sq = np.pad(x.astype(np.float64) ** 2, [(0, 0), (lo, hi)] + [(0, 0)] * (x.ndim - 2))
    csum = np.cumsum(sq, axis=1)  # window sums as differences of prefix sums
    csum = np.concatenate([np.zeros_like(csum[:, :1]), csum], axis=1)
    window = csum[:, size:] - csum[:, :-size]  # (N, C, ...)
    return (x / (bias + alpha / size * window) ** beta).astype(x.dtype)


@register()
def Einsum(ctx: NodeContext, *xs):
    """Einstein summation over ``equation`` (any form numpy accepts, e.g. ``bij,bjk->bik``)."""
    equation = ctx.attr("equation").replace(" ", "")
    return np.einsum(equation, *xs).astype(np.result_type(*xs))


@register()
def LogSoftmax(ctx: NodeContext, x):
    """x − max − ln Σ exp(x − max) along ``axis`` (opset ≥ 13, default −1); before opset 13
    over the input coerced to 2-D at ``axis`` (default 1)."""
    if ctx.opset < 13:
        axis = int(ctx.attr("axis", 1)) % max(x.ndim, 1)
        rows = x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)  # (N, D)
        return LogSoftmax(NodeContext(ctx.name, ctx.op_type, {"axis": 1}), rows).reshape(x.shape)
    axis = int(ctx.attr("axis", -1))
    shifted = x - x.max(axis=axis, keepdims=True)
    return (shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))).astype(x.dtype)


@register()
def Hardmax(ctx: NodeContext, x):
    """1 at the first maximum along ``axis`` (opset ≥ 13, default −1), 0 elsewhere."""
    if ctx.opset < 13:
        axis = int(ctx.attr("axis", 1)) % max(x.ndim, 1)
        rows = x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)  # (N, D)
        return Hardmax(NodeContext(ctx.name, ctx.op_type, {"axis": 1}), rows).reshape(x.shape)
    axis = int(ctx.attr("axis", -1)) % x.ndim
    hot = np.expand_dims(np.argmax(x, axis=axis), axis)
    out = np.zeros_like(x)
    np.put_along_axis(out, hot, 1, axis=axis)
    return out


@register()
def GroupNormalization(ctx: NodeContext, x, scale, bias):
    """Statistics per (sample, group of C / num_groups channels); opset 21 per-channel scale and
    bias (opset 18's per-group scale / bias are repeated over each group's channels)."""
    g = int(ctx.attr("num_groups"))
    eps = np.float32(ctx.attr("epsilon", 1e-5))
    n, c = x.shape[:2]
    groups = x.reshape(n, g, -1)  # (N, G, C/G · spatial)
    mean = groups.mean(axis=2, keepdims=True)
    var = ((groups - mean) ** 2).mean(axis=2, keepdims=True)
    y = ((groups - mean) / np.sqrt(var + eps)).reshape(x.shape)
    if scale.size != c:  # opset 18: one value per group
        scale, bias = np.repeat(scale, c // g), np.repeat(bias, c // g)
    shape = [1, -1] + [1] * (x.ndim - 2)
    return (y * scale.reshape(shape) + bias.reshape(shape)).astype(x.dtype)


@register()
def MeanVarianceNormalization(ctx: NodeContext, x):
    """(x − mean) / √(var + 1e-9) over ``axes`` (default 0, 2, 3); the tiny epsilon keeps a
    constant slice finite."""
    axes = tuple(ctx.attr("axes") or (0, 2, 3))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return ((x - mean) / np.sqrt(var + np.float32(1e-9))).astype(x.dtype)


@register()
def LpNormalization(ctx: NodeContext, x):
    """x / ‖x‖_p along ``axis`` (p = 1 or 2)."""
    axis, p = int(ctx.attr("axis", -1)), int(ctx.attr("p", 2))
    if p not in (1, 2):
        raise ValueError(f"LpNormalization node {ctx.name!r}: p={p} is not allowed (1 or 2)")
    norm = np.abs(x).sum(axis=axis, keepdims=True) if p == 1 else np.sqrt(
        (x * x).sum(axis=axis, keepdims=True))
    return (x / norm).astype(x.dtype)
