"""Reductions: ReduceMean, ReduceMax, ReduceSum (axes from input, opset ≥ 18, or attribute)."""

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
