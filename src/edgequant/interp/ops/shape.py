"""Shape and data-movement ops (exact for every dtype): Reshape, Flatten, Transpose, Squeeze,
Unsqueeze, Concat, Split, Pad, Slice, Gather, Shape, Expand, ConstantOfShape, Constant, Range."""

from __future__ import annotations

import numpy as np

from edgequant.interp.registry import NodeContext, register


def _ints(v) -> list[int]:
    return [int(i) for i in np.atleast_1d(np.asarray(v))]


@register()
def Reshape(ctx: NodeContext, x, shape=None):
    """Reshape; 0 copies the input dim (unless ``allowzero``), −1 is inferred. Opsets < 5
    give ``shape`` as an attribute."""
    dims = _ints(ctx.attr("shape") if shape is None else shape)
    if not ctx.attr("allowzero", 0):
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


@register()
def Flatten(ctx: NodeContext, x):
    """(d0..d_{axis−1}, rest) 2-D view."""
    axis = int(ctx.attr("axis", 1)) % (x.ndim + 1) if x.ndim else 0
    lead = int(np.prod(x.shape[:axis], dtype=np.int64))
    return x.reshape(lead, -1)


@register()
def Transpose(ctx: NodeContext, x):
    """Permute axes (reverse by default)."""
    return np.transpose(x, ctx.attr("perm"))


@register()
def Squeeze(ctx: NodeContext, x, axes=None):
    """Drop size-1 axes (all of them when none are given)."""
    axes = ctx.attr("axes") if axes is None else axes
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(a % x.ndim for a in _ints(axes)))


@register()
def Unsqueeze(ctx: NodeContext, x, axes=None):
    """Insert size-1 axes at ``axes`` (of the output)."""
    axes = _ints(ctx.attr("axes") if axes is None else axes)
    rank = x.ndim + len(axes)
    return np.expand_dims(x, tuple(sorted(a % rank for a in axes)))


@register()
def Concat(ctx: NodeContext, *xs):
    """Join along ``axis``."""
    return np.concatenate(xs, axis=int(ctx.attr("axis")))


@register()
def Split(ctx: NodeContext, x, split=None):
    """Split along ``axis`` into ``split`` sizes or ``num_outputs`` equal parts."""
    axis = int(ctx.attr("axis", 0)) % x.ndim
    sizes = ctx.attr("split") if split is None else split
    if sizes is None:
        n = int(ctx.attr("num_outputs", ctx.n_outputs))
        chunk = -(-x.shape[axis] // n)
        sizes = [chunk] * (n - 1) + [x.shape[axis] - chunk * (n - 1)]
    bounds = np.cumsum(_ints(sizes))[:-1]
    return tuple(np.split(x, bounds, axis=axis))


@register()
def Pad(ctx: NodeContext, x, pads=None, constant_value=None, axes=None):
    """Pad (modes constant / reflect / edge); pads ``[begin..., end...]`` over ``axes``."""
    p = _ints(ctx.attr("pads") if pads is None else pads)
    ax = list(range(x.ndim)) if axes is None else [a % x.ndim for a in _ints(axes)]
    width = [(0, 0)] * x.ndim
    for i, a in enumerate(ax):
        width[a] = (p[i], p[i + len(ax)])
    mode = ctx.attr("mode", "constant")
    crop = tuple(slice(max(0, -b), x.shape[i] + b + e if e < 0 else None)
                 for i, (b, e) in enumerate(width))  # negative pads crop
    width = [(max(0, b), max(0, e)) for b, e in width]
    if mode == "constant":
        value = ctx.attr("value", 0) if constant_value is None else np.asarray(constant_value)
        out = np.pad(x, width, constant_values=np.asarray(value).astype(x.dtype))
    else:
        out = np.pad(x, width, mode={"reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode])
    return out[crop]


@register()
def Slice(ctx: NodeContext, x, starts=None, ends=None, axes=None, steps=None):
    """x[starts:ends:steps] on ``axes`` (ONNX clamping of out-of-range bounds); opsets < 10
    give starts / ends / axes as attributes."""
    if starts is None:
        starts, ends, axes = ctx.attr("starts"), ctx.attr("ends"), ctx.attr("axes")
    st, en = _ints(starts), _ints(ends)
    ax = list(range(len(st))) if axes is None else [a % x.ndim for a in _ints(axes)]
    sp = [1] * len(st) if steps is None else _ints(steps)
    index = [slice(None)] * x.ndim
    for s, e, a, k in zip(st, en, ax, sp, strict=True):
        start, stop, step = slice(s, e, k).indices(x.shape[a])
        index[a] = slice(start, None if stop < 0 else stop, step)  # −1 here means "before 0"
    return x[tuple(index)]


def axis_indices(ctx: NodeContext, x: np.ndarray, indices) -> tuple[int, np.ndarray]:
    """The ``axis`` attribute (default 0, made non-negative) and ``indices`` as int64 with
    negative entries counted from the end of that axis (Gather, GatherElements)."""
    axis = int(ctx.attr("axis", 0)) % x.ndim
    idx = np.asarray(indices).astype(np.int64)
    return axis, np.where(idx < 0, idx + x.shape[axis], idx)


@register()
def Gather(ctx: NodeContext, x, indices):
    """Take ``indices`` (negative allowed) along ``axis``."""
    axis, idx = axis_indices(ctx, x, indices)
    return np.take(x, idx, axis=axis)


@register()
def Shape(ctx: NodeContext, x):
    """The shape as int64, optionally sliced by ``start`` / ``end``."""
    shape = np.asarray(x.shape, dtype=np.int64)
    return shape[slice(ctx.attr("start", 0), ctx.attr("end", None))]


@register()
def Expand(ctx: NodeContext, x, shape):
    """Broadcast to ``shape`` (bidirectional, as ONNX)."""
    target = np.broadcast_shapes(x.shape, tuple(_ints(shape)))
    return np.broadcast_to(x, target).copy()


@register()
def ConstantOfShape(ctx: NodeContext, shape):
    """Tensor of ``shape`` filled with ``value`` (default float32 0)."""
    value = ctx.attr("value")
    value = np.zeros(1, np.float32) if value is None else np.asarray(value)
    return np.full(_ints(shape) if np.size(shape) else (), value.reshape(-1)[0], value.dtype)


@register()
def Constant(ctx: NodeContext):
    """The ``value`` tensor (or one of the ``value_*`` scalar / list forms)."""
    for key, dtype in (("value", None), ("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in ctx.attrs:
            return np.asarray(ctx.attrs[key], dtype=dtype)
    raise ValueError(f"Constant node {ctx.name!r} has no value attribute this interpreter reads")


@register()
def Range(ctx: NodeContext, start, limit, delta):
    """[start, limit) by delta, in start's dtype."""
    return np.arange(start.item(), limit.item(), delta.item()).astype(np.asarray(start).dtype)


@register()
def GatherND(ctx: NodeContext, data, indices):
    """Gather slices addressed by the last axis of ``indices`` (``batch_dims`` leading dims
    shared by data and indices)."""
    b = int(ctx.attr("batch_dims", 0))
    idx = np.asarray(indices).astype(np.int64)
    m = idx.shape[-1]
    dims = np.asarray(data.shape[b: b + m], dtype=np.int64)
    idx = np.where(idx < 0, idx + dims, idx)
    n_batch = int(np.prod(data.shape[:b], dtype=np.int64))
    flat_data = data.reshape((n_batch, *data.shape[b:]))
    flat_idx = idx.reshape(n_batch, -1, m)  # (B, L, m)
    out = np.stack([flat_data[i][tuple(flat_idx[i].T)] for i in range(n_batch)])
    return out.reshape(idx.shape[:-1] + data.shape[b + m:])
