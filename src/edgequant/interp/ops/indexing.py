"""Index and data-movement ops (exact for every dtype): ArgMax, ArgMin, TopK, CumSum,
GatherElements, ScatterND, ScatterElements, OneHot, NonZero, Compress, Tile, Trilu, Size,
DepthToSpace, SpaceToDepth, ReverseSequence, EyeLike."""

from __future__ import annotations

import numpy as np
from onnx import helper

from edgequant.interp.ops.shape import axis_indices
from edgequant.interp.registry import NodeContext, register


def _arg(ctx: NodeContext, x: np.ndarray, fn) -> np.ndarray:
    """Shared ArgMax / ArgMin: first or (``select_last_index``) last extreme index."""
    axis = int(ctx.attr("axis", 0)) % x.ndim
    if ctx.attr("select_last_index", 0):
        flipped = np.flip(x, axis=axis)
        idx = x.shape[axis] - 1 - fn(flipped, axis=axis)
    else:
        idx = fn(x, axis=axis)
    idx = idx.astype(np.int64)
    return np.expand_dims(idx, axis) if ctx.attr("keepdims", 1) else idx


@register()
def ArgMax(ctx: NodeContext, x):
    """Index of the maximum along ``axis`` (int64)."""
    return _arg(ctx, x, np.argmax)


@register()
def ArgMin(ctx: NodeContext, x):
    """Index of the minimum along ``axis`` (int64)."""
    return _arg(ctx, x, np.argmin)


@register()
def TopK(ctx: NodeContext, x, k):
    """The ``k`` largest (or smallest, ``largest=0``) values along ``axis`` and their int64
    indices; ties keep the lower index first (as onnxruntime)."""
    axis = int(ctx.attr("axis", -1)) % x.ndim
    kk = int(np.asarray(k).reshape(-1)[0])
    if not 0 <= kk <= x.shape[axis]:
        raise ValueError(f"TopK node {ctx.name!r}: k={kk} is outside [0, {x.shape[axis]}]")
    key = -x if ctx.attr("largest", 1) else x
    order = np.argsort(key, axis=axis, kind="stable")  # stable: equal values by index
    idx = np.take(order, np.arange(kk), axis=axis).astype(np.int64)
    return np.take_along_axis(x, idx, axis=axis), idx


@register()
def CumSum(ctx: NodeContext, x, axis):
    """Running sum along ``axis``; ``exclusive`` shifts by one, ``reverse`` runs backwards."""
    a = int(np.asarray(axis).reshape(-1)[0]) % x.ndim
    y = np.flip(x, a) if ctx.attr("reverse", 0) else x
    out = np.cumsum(y, axis=a, dtype=x.dtype)
    if ctx.attr("exclusive", 0):
        out = np.concatenate([np.zeros_like(np.take(out, [0], axis=a)),
                              np.take(out, np.arange(out.shape[a] - 1), axis=a)], axis=a)
    return np.flip(out, a) if ctx.attr("reverse", 0) else out


@register()
def GatherElements(ctx: NodeContext, x, indices):
    """out[i][j][k] = x[index[i][j][k]][j][k] on ``axis`` (negative indices allowed)."""
    axis, idx = axis_indices(ctx, x, indices)
    return np.take_along_axis(x, idx, axis=axis)


@register()
def ScatterND(ctx: NodeContext, data, indices, updates):
    """Copy of ``data`` with ``updates`` written at the index tuples of ``indices``'s last
    axis; ``reduction`` none / add / mul / max / min."""
    out = np.array(data, copy=True)
    idx = np.asarray(indices).astype(np.int64)
    m = idx.shape[-1]
    flat = idx.reshape(-1, m)  # (L, m)
    flat = np.where(flat < 0, flat + np.asarray(data.shape[:m]), flat)
    upd = np.asarray(updates).reshape(len(flat), *data.shape[m:])  # (L, ...)
    reduction = ctx.attr("reduction", "none")
    ops = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}
    if reduction != "none" and reduction not in ops:
        raise ValueError(f"ScatterND node {ctx.name!r}: reduction {reduction!r} is not one of "
                         f"{['none', *ops]}")
    for row, u in zip(flat, upd, strict=True):
        key = tuple(row)
        out[key] = u if reduction == "none" else ops[reduction](out[key], u)
    return out


@register()
def OneHot(ctx: NodeContext, indices, depth, values):
    """``values[1]`` where the new ``axis`` equals the index (negative wraps), else
    ``values[0]``."""
    d = int(np.asarray(depth).reshape(-1)[0])
    idx = np.asarray(indices).astype(np.int64)
    idx = np.where(idx < 0, idx + d, idx)
    axis = int(ctx.attr("axis", -1))
    axis = axis % (idx.ndim + 1)
    hot = np.expand_dims(idx, axis) == np.arange(d).reshape(
        [-1 if i == axis else 1 for i in range(idx.ndim + 1)])
    off, on = np.asarray(values).reshape(-1)[:2]
    return np.where(hot, on, off).astype(np.asarray(values).dtype)


@register()
def NonZero(ctx: NodeContext, x):
    """Indices of the non-zero elements, (rank, count) int64 in row-major order."""
    return np.array(np.nonzero(np.asarray(x)), dtype=np.int64).reshape(np.ndim(x), -1)


@register()
def Tile(ctx: NodeContext, x, repeats):
    """Repeat ``x`` ``repeats[i]`` times along axis i."""
    return np.tile(x, [int(r) for r in np.asarray(repeats).reshape(-1)])


@register()
def Trilu(ctx: NodeContext, x, k=None):
    """Upper (default) or lower (``upper=0``) triangle of the last two axes, shifted by k."""
    kk = 0 if k is None else int(np.asarray(k).reshape(-1)[0])
    return np.triu(x, kk) if ctx.attr("upper", 1) else np.tril(x, kk)


@register()
def Size(ctx: NodeContext, x):
    """Number of elements (int64 scalar)."""
    return np.array(np.size(x), dtype=np.int64)


@register()
def DepthToSpace(ctx: NodeContext, x):
    """(N, C·b², H, W) → (N, C, H·b, W·b), ``mode`` DCR (default) or CRD."""
    b = int(ctx.attr("blocksize"))
    n, c, h, w = x.shape
    if ctx.attr("mode", "DCR") == "DCR":
        y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        y = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return y.reshape(n, c // (b * b), h * b, w * b)


@register()
def SpaceToDepth(ctx: NodeContext, x):
    """(N, C, H·b, W·b) → (N, C·b², H, W) (inverse of DCR DepthToSpace)."""
    b = int(ctx.attr("blocksize"))
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)


@register()
def ScatterElements(ctx: NodeContext, data, indices, updates):
    """Copy of ``data`` with ``updates[i][j]`` written at ``[indices[i][j]][j]`` on ``axis``;
    ``reduction`` none / add / mul / max / min."""
    axis = int(ctx.attr("axis", 0)) % data.ndim
    idx = np.asarray(indices).astype(np.int64)
    idx = np.where(idx < 0, idx + data.shape[axis], idx)
    out = np.array(data, copy=True)
    reduction = ctx.attr("reduction", "none")
    ops = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}
    if reduction == "none":
        np.put_along_axis(out, idx, updates, axis=axis)
        return out
    if reduction not in ops:
        raise ValueError(f"ScatterElements node {ctx.name!r}: reduction {reduction!r} is not "
                         f"one of {['none', *ops]}")
    full = list(np.indices(idx.shape, sparse=True))
    full[axis] = idx
    ops[reduction].at(out, tuple(full), updates)  # repeated indices accumulate
    return out


@register()
def Compress(ctx: NodeContext, x, condition):
    """Slices of ``x`` along ``axis`` where ``condition`` holds (flattened x without axis)."""
    cond = np.asarray(condition).astype(bool)
    axis = ctx.attr("axis")
    if axis is None:
        return np.compress(cond, x.reshape(-1))
    return np.compress(cond, x, axis=int(axis) % x.ndim)


@register()
def ReverseSequence(ctx: NodeContext, x, sequence_lens):
    """Reverse the first ``sequence_lens[b]`` steps of each batch row (``time_axis``,
    ``batch_axis``)."""
    t_axis, b_axis = int(ctx.attr("time_axis", 0)), int(ctx.attr("batch_axis", 1))
    out = np.array(x, copy=True)
    for b, n in enumerate(np.asarray(sequence_lens).reshape(-1)):
        index = [slice(None)] * x.ndim
        index[b_axis] = b
        index[t_axis] = slice(0, int(n))
        out[tuple(index)] = np.flip(x[tuple(index)], axis=t_axis - (b_axis < t_axis))
    return out


@register()
def EyeLike(ctx: NodeContext, x):
    """2-D matrix of x's shape with ones on diagonal ``k`` (dtype ``dtype`` or x's)."""
    code = ctx.attr("dtype")
    dtype = x.dtype if code is None else np.dtype(helper.tensor_dtype_to_np_dtype(int(code)))
    return np.eye(x.shape[0], x.shape[1], k=int(ctx.attr("k", 0)), dtype=dtype)
