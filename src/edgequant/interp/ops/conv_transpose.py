"""ConvTranspose (1-D and 2-D): groups, strides, dilations, pads, auto_pad, output_padding,
output_shape. One GEMM spreads each input pixel over its kernel taps (col2im), then the taps
are added into the strided, padded output."""

from __future__ import annotations

import numpy as np

from edgequant.errors import UnsupportedOpError
from edgequant.interp.ops.conv import as_2d, restore_rank
from edgequant.interp.registry import NodeContext, register


def transpose_geometry(attrs: dict, spatial, kernel):
    """(strides, dilations, pads begin, output sizes) per spatial dim of a ConvTranspose node
    with attributes ``attrs`` (strings decoded), as onnxruntime places the output."""
    nd = len(spatial)
    strides = list(attrs.get("strides") or [1] * nd)
    dil = list(attrs.get("dilations") or [1] * nd)
    out_pad = list(attrs.get("output_padding") or [0] * nd)
    pads = list(attrs.get("pads") or [0] * (2 * nd))
    begin, end = pads[:nd], pads[nd:]
    auto_pad = attrs.get("auto_pad", "NOTSET")
    out_shape = attrs.get("output_shape")
    full = [strides[i] * (spatial[i] - 1) + out_pad[i] + (kernel[i] - 1) * dil[i] + 1
            for i in range(nd)]  # output size before any padding is removed
    if out_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        want = list(out_shape)[-nd:] if out_shape is not None else [
            spatial[i] * strides[i] for i in range(nd)]
        for i in range(nd):
            total = full[i] - want[i]
            # onnxruntime clamps at 0: a larger output_shape leaves zeros (+ bias) at the end
            total = max(0, total)
            small = total // 2
            # onnxruntime's placement: SAME_UPPER puts the larger half at the end, an explicit
            # output_shape or SAME_LOWER at the beginning
            begin[i], end[i] = (small, total - small) if auto_pad == "SAME_UPPER" else (
                total - small, small)
    elif auto_pad == "VALID":
        begin, end = [0] * nd, [0] * nd
    out = [full[i] - begin[i] - end[i] for i in range(nd)]
    if out_shape is not None:  # exactly the requested size (zeros past the full result)
        out = [int(v) for v in list(out_shape)[-nd:]]
    return strides, dil, begin, out


@register()
def ConvTranspose(ctx: NodeContext, x, weight, bias=None):
    """Transposed convolution: (N, C, H, W) with weight (C, M/g, kh, kw) → (N, M, OH, OW)."""
    if x.ndim not in (3, 4):
        raise UnsupportedOpError(f"ConvTranspose node {ctx.name!r}: {x.ndim - 2}-D spatial input "
                                 "is not supported (1-D, 2-D)")
    group = int(ctx.attr("group", 1))
    kernel = list(ctx.attr("kernel_shape") or weight.shape[2:])
    strides, dil, begin, out = transpose_geometry(ctx.attrs, x.shape[2:], kernel)
    if x.ndim == 3:  # run 1-D as 2-D with height 1
        strides, dil, begin, out, kernel = [1, *strides], [1, *dil], [0, *begin], [1, *out], \
            [1, *kernel]
    x2, w2 = as_2d(x).astype(np.float32), as_2d(weight).astype(np.float32)
    n, c, h, w = x2.shape
    m = w2.shape[1] * group
    kh, kw = kernel
    cols = np.matmul(  # (N, G, M/g·kh·kw, H·W)
        w2.reshape(group, c // group, -1).transpose(0, 2, 1)[None],
        x2.reshape(n, group, c // group, h * w))
    cols = cols.reshape(n, group, m // group, kh, kw, h, w)
    (sh, sw), (dh, dw) = strides, dil
    full_h = sh * (h - 1) + (kh - 1) * dh + 1
    full_w = sw * (w - 1) + (kw - 1) * dw + 1
    top, left = begin
    canvas = np.zeros((n, group, m // group, max(full_h, top + out[0]), max(full_w, left + out[1])),
                      np.float32)
    for i in range(kh):
        for j in range(kw):
            canvas[:, :, :, i * dh: i * dh + sh * (h - 1) + 1: sh,
                   j * dw: j * dw + sw * (w - 1) + 1: sw] += cols[:, :, :, i, j]
    y = canvas[:, :, :, top: top + out[0], left: left + out[1]].reshape(n, m, *out)
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1).astype(np.float32)
    return restore_rank(y.astype(x.dtype), x.ndim)
