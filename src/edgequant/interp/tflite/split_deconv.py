"""Reference kernels for SPLIT, SPLIT_V and TRANSPOSE_CONV (``ReferenceInterpreter``
signature ``(ins, infos, out, opt, flavor)``; SPLIT / SPLIT_V return one array per output).

SPLIT / SPLIT_V copy stored values (integers keep the input's qparams), so they are exact by
construction. TRANSPOSE_CONV is float only here (the exporter runs ConvTranspose in float,
as the QDQ graph does): float64 accumulation, a float oracle like the other float kernels.
Its geometry is LiteRT's: the padding comes from the *output* size, as for the CONV_2D whose
gradient it is (``ComputePaddingHeightWidth(stride, 1, out_h, out_w, kh, kw, padding)``),
and the output is the full transposed convolution cropped from ``pad`` on, zeros (+ bias)
past its end.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgequant.errors import UnsupportedOpError

_FLOAT_ACT = {schema.ActivationFunctionType.RELU: (0.0, np.inf),
              schema.ActivationFunctionType.RELU6: (0.0, 6.0),
              schema.ActivationFunctionType.RELU_N1_TO_1: (-1.0, 1.0)}


def split(ins, infos, out, opt, flavor="builtin"):
    """SPLIT(axis, x) into ``numSplits`` equal parts."""
    axis, x = ins
    return np.split(x, int(opt.numSplits), axis=int(np.ravel(axis)[0]) % x.ndim)


def split_v(ins, infos, out, opt, flavor="builtin"):
    """SPLIT_V(x, sizes, axis): parts of the given sizes (one size may be −1: the rest)."""
    x, sizes, axis = ins
    ax = int(np.ravel(axis)[0]) % x.ndim
    sizes = [int(v) for v in np.ravel(sizes)]
    if sizes.count(-1) == 1:
        sizes[sizes.index(-1)] = x.shape[ax] - (sum(sizes) + 1)
    if sum(sizes) != x.shape[ax] or min(sizes) < 0:
        raise ValueError(f"SPLIT_V sizes {sizes} do not cut an axis of length {x.shape[ax]}")
    return np.split(x, np.cumsum(sizes)[:-1], axis=ax)


def transpose_conv_geometry(padding: int, out_size: int, k: int, stride: int) -> tuple[int, int]:
    """LiteRT's TRANSPOSE_CONV along one axis: ``(input size, leading pad)`` the output size
    implies (SAME / VALID of the CONV_2D from output to input). LiteRT refuses a model whose
    input size differs from the implied one."""
    if padding == schema.Padding.SAME:
        conv_out = -(-out_size // stride)
    else:
        conv_out = (out_size - k + stride) // stride
    return conv_out, max((conv_out - 1) * stride + k - out_size, 0) // 2


def transpose_conv(ins, infos, out, opt, flavor="builtin"):
    """TRANSPOSE_CONV(output_shape, filter OHWI, x NHWC[, bias]), float."""
    shape, w, x = ins[:3]
    b = ins[3] if len(ins) > 3 else None
    if any(i is not None and i.dtype.kind in "iu" for i in infos[1:3]):
        raise UnsupportedOpError("reference executor: integer TRANSPOSE_CONV is not implemented "
                                 "(the exporter writes it float)")
    n, oh, ow, oc = (int(v) for v in np.ravel(shape))
    _, kh, kw, _ = w.shape
    sh, sw = int(opt.strideH), int(opt.strideW)
    _, ih, iw, _ = x.shape
    (ch, pt), (cw, pl) = (transpose_conv_geometry(opt.padding, o, k, s_) for o, k, s_ in
                          ((oh, kh, sh), (ow, kw, sw)))
    if (ch, cw) != (ih, iw):  # LiteRT's Prepare check
        raise ValueError(f"TRANSPOSE_CONV output {oh}x{ow} implies input {ch}x{cw}, got "
                         f"{ih}x{iw}")
    full_h = max((ih - 1) * sh + kh, pt + oh)
    full_w = max((iw - 1) * sw + kw, pl + ow)
    y = np.zeros((n, full_h, full_w, oc), np.float64)  # (N, H_full, W_full, O)
    xf, wf = x.astype(np.float64), w.astype(np.float64)
    for fy in range(kh):
        for fx in range(kw):
            tap = xf @ wf[:, fy, fx, :].T  # (N, IH, IW, O)
            y[:, fy:fy + (ih - 1) * sh + 1:sh, fx:fx + (iw - 1) * sw + 1:sw] += tap
    y = y[:, pt:pt + oh, pl:pl + ow]  # (N, OH, OW, O)
    if b is not None:
        y = y + b.astype(np.float64)
    lo, hi = _FLOAT_ACT.get(getattr(opt, "fusedActivationFunction", 0), (None, None))
    if lo is not None:
        y = np.clip(y, lo, hi)
    return y.astype(np.float32)


OPS = {
    "SPLIT": split,
    "SPLIT_V": split_v,
    "TRANSPOSE_CONV": transpose_conv,
}
