"""Convolution geometry (pads, auto_pad, output sizes), im2col, and float Conv.

Tensors are NC + spatial (1-D, 2-D or 3-D spatial; 1-D is run as 2-D with height 1). im2col
gathers every kernel tap as a strided view so a convolution is one batched GEMM.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from edgequant.errors import UnsupportedOpError
from edgequant.interp.registry import NodeContext, register


@dataclass(frozen=True)
class Window:
    """Sliding-window geometry for 2 (or 3) spatial dims."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[int, ...]  # (begins..., ends...), 2-D: (top, left, bottom, right), incl. ceil
    out: tuple[int, ...]
    explicit_end: tuple[int, ...]  # end pads declared by the model (no ceil extension)


def _to2d(values, n_spatial: int, fill: int) -> list[int]:
    values = list(values)
    return [fill] * max(0, 2 - n_spatial) + values


def window(ctx: NodeContext, spatial: tuple[int, ...], kernel: tuple[int, ...],
           ceil_mode: bool = False) -> Window:
    """Resolve strides / dilations / pads / auto_pad of ``ctx`` for input ``spatial`` dims."""
    nd = len(spatial)
    if nd not in (1, 2, 3):
        raise UnsupportedOpError(
            f"{ctx.op_type} node {ctx.name!r}: {nd}-D spatial input is not supported "
            "(1-D, 2-D, 3-D)"
        )
    strides = ctx.attr("strides") or [1] * nd
    dilations = ctx.attr("dilations") or [1] * nd
    pads = ctx.attr("pads") or [0] * (2 * nd)
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if isinstance(auto_pad, bytes):
        auto_pad = auto_pad.decode()
    begin, end = list(pads[:nd]), list(pads[nd:])
    out = []
    for i in range(nd):
        eff = (kernel[i] - 1) * dilations[i] + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            o = -(-spatial[i] // strides[i])
            total = max(0, (o - 1) * strides[i] + eff - spatial[i])
            small = total // 2
            begin[i], end[i] = (small, total - small) if auto_pad == "SAME_UPPER" else (
                total - small, small)
        elif auto_pad == "VALID":
            begin[i] = end[i] = 0
        span = spatial[i] + begin[i] + end[i] - eff
        if ceil_mode:
            o = -(-span // strides[i]) + 1
            if (o - 1) * strides[i] >= spatial[i] + begin[i]:  # last window must start inside
                o -= 1
        else:
            o = span // strides[i] + 1
        out.append(o)
    explicit_end = list(end)
    for i in range(nd):  # extend the end padding so the ceil-mode windows fit
        eff = (kernel[i] - 1) * dilations[i] + 1
        need = (out[i] - 1) * strides[i] + eff - (spatial[i] + begin[i] + end[i])
        end[i] += max(0, need)
    return Window(
        kernel=tuple(_to2d(kernel, nd, 1)),
        strides=tuple(_to2d(strides, nd, 1)),
        dilations=tuple(_to2d(dilations, nd, 1)),
        pads=(*_to2d(begin, nd, 0), *_to2d(end, nd, 0)),
        out=tuple(_to2d(out, nd, 1)),
        explicit_end=tuple(_to2d(explicit_end, nd, 0)),
    )


def as_2d(x: np.ndarray) -> np.ndarray:
    """(N, C, W) → (N, C, 1, W); 2-D inputs unchanged."""
    return x[:, :, None, :] if x.ndim == 3 else x


def im2col(x: np.ndarray, w: Window, pad_value) -> np.ndarray:
    """(N, C, *S) → (N, C, *kernel, *out): every kernel tap of every output position
    (2-D: (N, C, H, W) → (N, C, kh, kw, OH, OW))."""
    nd = len(w.kernel)
    width = [(0, 0), (0, 0)] + [(w.pads[i], w.pads[nd + i]) for i in range(nd)]
    xp = np.pad(x, width, constant_values=pad_value)
    cols = np.empty((*x.shape[:2], *w.kernel, *w.out), dtype=x.dtype)
    for tap in itertools.product(*(range(k) for k in w.kernel)):
        index = tuple(slice(t * d, t * d + s * (o - 1) + 1, s)
                      for t, d, s, o in zip(tap, w.dilations, w.strides, w.out, strict=True))
        cols[(slice(None), slice(None), *tap)] = xp[(slice(None), slice(None), *index)]
    return cols


def conv_gemm(x: np.ndarray, weight: np.ndarray, w: Window, group: int, matmul) -> np.ndarray:
    """Grouped convolution as batched GEMM: (N, C, *S) ⊛ (M, C/g, *kernel) → (N, M, *out).

    ``x`` must already be padded-value-neutral (pads contribute 0), ``matmul`` does the GEMM
    (float32 for Conv, the exact float64 integer GEMM for integer convolutions).
    """
    n, c = x.shape[:2]
    m = weight.shape[0]
    cols = im2col(x, w, 0)  # (N, C, *kernel, *out)
    k = (c // group) * math.prod(w.kernel)
    cols = cols.reshape(n, group, k, math.prod(w.out))  # (N, G, K, L)
    wm = weight.reshape(group, m // group, k)  # (G, M/G, K)
    out = matmul(wm[None], cols)  # (N, G, M/G, L)
    return out.reshape(n, m, *w.out)


def conv_shapes(ctx: NodeContext, x: np.ndarray, weight: np.ndarray) -> tuple[Window, int]:
    """Window and group count of a Conv-like node."""
    group = int(ctx.attr("group", 1))
    kshape = ctx.attr("kernel_shape") or weight.shape[2:]
    if x.shape[1] != weight.shape[1] * group:
        raise ValueError(
            f"{ctx.op_type} node {ctx.name!r}: input channels {x.shape[1]} != "
            f"weight channels {weight.shape[1]} × group {group}"
        )
    return window(ctx, x.shape[2:], tuple(kshape)), group


def restore_rank(y: np.ndarray, rank: int) -> np.ndarray:
    """Undo :func:`as_2d` for 1-D convolutions."""
    return y[:, :, 0, :] if rank == 3 else y


@register()
def Conv(ctx: NodeContext, x, weight, bias=None):
    """Float convolution (groups, strides, pads, dilations) via im2col + float32 GEMM."""
    win, group = conv_shapes(ctx, x, weight)
    y = conv_gemm(as_2d(x.astype(np.float32)), as_2d(weight.astype(np.float32)), win, group,
                  np.matmul)  # (N, M, *out) float32
    if bias is not None:
        y = y + bias.reshape([1, -1] + [1] * (y.ndim - 2)).astype(np.float32)
    return restore_rank(y.astype(x.dtype), x.ndim)
