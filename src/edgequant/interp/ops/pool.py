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
    """Number of elements each window averages: (OH, OW) int64.

    Explicit pads count when ``include_pad``; the ceil-mode extension never does.
    """
    h, w = x2.shape[2:]
    top, left, bottom, right = win.pads
    eb, er = win.explicit_end
    # validity of every position of the padded input
    mask = np.zeros((1, 1, top + h + bottom, left + w + right), dtype=np.int64)
    if include_pad:
        mask[..., : top + h + eb, : left + w + er] = 1
    else:
        mask[..., top: top + h, left: left + w] = 1
    cols = im2col(mask, replace(win, pads=(0, 0, 0, 0)), 0)  # (1, 1, kh, kw, OH, OW)
    return cols.sum(axis=(1, 2, 3))[0]


@register()
def MaxPool(ctx: NodeContext, x):
    """Maximum over each window (pads never win: padded with the type's lowest value)."""
    x2 = as_2d(x)
    win = pool_window(ctx, x)
    low = np.finfo(x.dtype).min if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    cols = im2col(x2, win, low)  # (N, C, kh, kw, OH, OW)
    return restore_rank(cols.max(axis=(2, 3)), x.ndim)


@register()
def AveragePool(ctx: NodeContext, x):
    """Mean over each window; pads excluded unless ``count_include_pad``."""
    x2 = as_2d(x)
    win = pool_window(ctx, x)
    cols = im2col(x2, win, 0)  # (N, C, kh, kw, OH, OW)
    counts = window_counts(x2, win, bool(ctx.attr("count_include_pad", 0)))  # (OH, OW)
    y = cols.sum(axis=(2, 3), dtype=np.float32) / counts.astype(np.float32)
    return restore_rank(y.astype(x.dtype), x.ndim)


@register()
def GlobalAveragePool(ctx: NodeContext, x):
    """Mean over all spatial axes, kept as size-1 dims."""
    return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True).astype(x.dtype)


@register()
def GlobalMaxPool(ctx: NodeContext, x):
    """Maximum over all spatial axes, kept as size-1 dims."""
    return x.max(axis=tuple(range(2, x.ndim)), keepdims=True)
