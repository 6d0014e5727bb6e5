"""Reductions (axes from the input since opset 18, else the attribute): Mean, Max, Min, Sum,
Prod, L1, L2, SumSquare, LogSum, LogSumExp."""

from __future__ import annotations

import numpy as np

from edgequant.interp.registry import NodeContext, register


def _axes(ctx: NodeContext, x: np.ndarray, axes) -> tuple[int, ...] | None:
    axes = ctx.attr("axes") if axes is None else axes
    if axes is None or len(np.atleast_1d(axes)) == 0:
        return () if ctx.attr("noop_with_empty_axes", 0) else None
    return tuple(int(a) % x.ndim for a in np.atleast_1d(axes))


def _reduce(fn, ctx: NodeContext, x, axes):
    ax = _axes(ctx, x, axes)
    if ax == ():
        return x
    return fn(x, axis=ax, keepdims=bool(ctx.attr("keepdims", 1))).astype(x.dtype)


@register()
def ReduceMean(ctx: NodeContext, x, axes=None):
    """Mean over ``axes``."""
    return _reduce(np.mean, ctx, x, axes)


@register()
def ReduceMax(ctx: NodeContext, x, axes=None):
    """Maximum over ``axes``."""
    return _reduce(np.max, ctx, x, axes)


@register()
def ReduceSum(ctx: NodeContext, x, axes=None):
    """Sum over ``axes``."""
    return _reduce(np.sum, ctx, x, axes)


@register()
def ReduceMin(ctx: NodeContext, x, axes=None):
    """Minimum over ``axes``."""
    return _reduce(np.min, ctx, x, axes)


@register()
def ReduceL2(ctx: NodeContext, x, axes=None):
    """√(Σ x²) over ``axes``."""
    return _reduce(lambda v, axis, keepdims: np.sqrt(np.sum(v * v, axis=axis, keepdims=keepdims)),
                   ctx, x, axes)


@register()
def ReduceProd(ctx: NodeContext, x, axes=None):
    """Product over ``axes``."""
    return _reduce(np.prod, ctx, x, axes)


@register()
def ReduceL1(ctx: NodeContext, x, axes=None):
    """Σ |x| over ``axes``."""
    return _reduce(lambda v, axis, keepdims: np.sum(np.abs(v), axis=axis, keepdims=keepdims),
                   ctx, x, axes)


@register()
def ReduceSumSquare(ctx: NodeContext, x, axes=None):
    """Σ x² over ``axes``."""
    return _reduce(lambda v, axis, keepdims: np.sum(v * v, axis=axis, keepdims=keepdims),
                   ctx, x, axes)


@register()
def ReduceLogSum(ctx: NodeContext, x, axes=None):
    """ln Σ x over ``axes``."""
    return _reduce(lambda v, axis, keepdims: np.log(np.sum(v, axis=axis, keepdims=keepdims)),
                   ctx, x, axes)


@register()
def ReduceLogSumExp(ctx: NodeContext, x, axes=None):
    """ln Σ eˣ over ``axes``, shifted by the maximum so large inputs do not overflow."""
    def lse(v, axis, keepdims):
        m = np.max(v, axis=axis, keepdims=True)
        out = np.log(np.sum(np.exp(v - m), axis=axis, keepdims=True)) + m
        return out if keepdims else np.squeeze(out, axis=axis)
    return _reduce(lse, ctx, x, axes)
