"""Pooling: MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool (float and integer)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from edgequant.interp.ops.conv import as_2d, im2col, restore_rank, window
from edgequant.interp.registry import NodeContext, register


def pool_window(ctx: NodeContext, x: np.ndarray):
    """Window of a pooling node (kernel_shape, ceil_mode)."""
    return window(ctx, x.shape[2:], tuple(ctx.attr("kernel_shape")),
                  ceil_mode=bool(ctx.attr("ceil_mode", 0)))


def window_counts(x2: np.ndarray, win, include_pad: bool) -> np.ndarray:
    """Number of elements each window averages: (*out) int64.

    Explicit pads count when ``include_pad``; the ceil-mode extension never does.
    """
    nd = len(win.kernel)
    spatial = x2.shape[2:]
    begin, end = win.pads[:nd], win.pads[nd:]
    # validity of every position of the padded input
    mask = np.zeros((1, 1, *(b + s + e for b, s, e in zip(begin, spatial, end, strict=True))),
                    dtype=np.int64)
    if include_pad:
        mask[(0, 0, *(slice(0, b + s + e) for b, s, e in
                       zip(begin, spatial, win.explicit_end, strict=True)))] = 1
    else:
        mask[(0, 0, *(slice(b, b + s) for b, s in zip(begin, spatial, strict=True)))] = 1
    cols = im2col(mask, replace(win, pads=(0,) * (2 * nd)), 0)  # (1, 1, *kernel, *out)
    return cols.sum(axis=tuple(range(1, 2 + nd)))[0]


@register()
def MaxPool(ctx: NodeContext, x):
    """Maximum over each window (pads never win: padded with the type's lowest value)."""
    x2 = as_2d(x)
    win = pool_window(ctx, x)
    low = np.finfo(x.dtype).min if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    cols = im2col(x2, win, low)  # (N, C, *kernel, *out)
    return restore_rank(cols.max(axis=tuple(range(2, 2 + len(win.kernel)))), x.ndim)


@register()
def AveragePool(ctx: NodeContext, x):
    """Mean over each window; pads excluded unless ``count_include_pad``."""
    x2 = as_2d(x)
    win = pool_window(ctx, x)
    cols = im2col(x2, win, 0)  # (N, C, *kernel, *out)
    counts = window_counts(x2, win, bool(ctx.attr("count_include_pad", 0)))  # (*out)
    y = cols.sum(axis=tuple(range(2, 2 + len(win.kernel))), dtype=np.float32) / counts.astype(
        np.float32)
    return restore_rank(y.astype(x.dtype), x.ndim)


@register()
def GlobalAveragePool(ctx: NodeContext, x):
    """Mean over all spatial axes, kept as size-1 dims."""
    return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True).astype(x.dtype)


@register()
def GlobalMaxPool(ctx: NodeContext, x):
    """Maximum over all spatial axes, kept as size-1 dims."""
    return x.max(axis=tuple(range(2, x.ndim)), keepdims=True)
