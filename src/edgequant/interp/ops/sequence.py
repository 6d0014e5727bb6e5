"""Sequence ops (TorchScript exports of Python lists: ``append`` in loops, ``torch.stack`` /
``torch.cat`` of a list, ``split``). A sequence is a Python list of arrays, never mutated:
every op returns a new list."""

from __future__ import annotations

import numpy as np

from edgequant.interp.registry import NodeContext, register


def _position(ctx: NodeContext, seq: list, position, insert: bool = False) -> int:
    """Index ``position`` (negative counts from the end) checked against the sequence."""
    n = len(seq)
    p = int(np.asarray(position).reshape(-1)[0])
    p = p + n if p < 0 else p
    if not 0 <= p <= (n if insert else n - 1):
        raise ValueError(f"{ctx.op_type} node {ctx.name!r}: position {p} is outside a sequence "
                         f"of length {n}")
    return p


@register()
def SequenceEmpty(ctx: NodeContext):
    """An empty sequence (its element type only matters to type checkers)."""
    return []


@register()
def SequenceConstruct(ctx: NodeContext, *xs):
    """The inputs as a sequence."""
    return list(xs)


@register()
def SequenceInsert(ctx: NodeContext, seq, x, position=None):
    """``seq`` with ``x`` inserted at ``position`` (default: appended)."""
    p = len(seq) if position is None else _position(ctx, seq, position, insert=True)
    return [*seq[:p], x, *seq[p:]]


@register()
def SequenceAt(ctx: NodeContext, seq, position):
    """Element ``position`` of ``seq``."""
    return seq[_position(ctx, seq, position)]


@register()
def SequenceErase(ctx: NodeContext, seq, position=None):
    """``seq`` without element ``position`` (default: the last)."""
    p = len(seq) - 1 if position is None else _position(ctx, seq, position)
    return [*seq[:p], *seq[p + 1:]]


@register()
def SequenceLength(ctx: NodeContext, seq):
    """Number of elements (int64 scalar)."""
    return np.array(len(seq), np.int64)


@register()
def ConcatFromSequence(ctx: NodeContext, seq):
    """Concatenate the elements along ``axis``, or stack them on a new axis (``new_axis=1``)."""
    axis = int(ctx.attr("axis"))
    if ctx.attr("new_axis", 0):
        return np.stack(seq, axis=axis)
    return np.concatenate(seq, axis=axis)


@register()
def SplitToSequence(ctx: NodeContext, x, split=None):
    """Split along ``axis`` into pieces of ``split`` sizes (scalar: equal chunks, last one
    smaller) or, without ``split``, into size-1 pieces (squeezed when ``keepdims=0``)."""
    axis = int(ctx.attr("axis", 0)) % x.ndim
    if split is None:
        parts = np.split(x, x.shape[axis], axis=axis)
        return parts if ctx.attr("keepdims", 1) else [np.squeeze(p, axis) for p in parts]
    sizes = np.asarray(split, np.int64)
    if sizes.ndim == 0:
        bounds = np.arange(int(sizes), x.shape[axis], int(sizes))
    else:
        bounds = np.cumsum(sizes)[:-1]
    return list(np.split(x, bounds, axis=axis))
