"""ONNX upsampling ops as differentiable torch functions (see :mod:`onnx_ops`): ConvTranspose
and Resize, the decoder half of segmentation, super-resolution and detection networks.

Output geometry and sampling coordinates come from the reference interpreter's own rules
(:func:`edgequant.interp.ops.conv_transpose.transpose_geometry`,
:mod:`edgequant.interp.ops.resize`: onnxruntime's formulas), so training computes the tensor
shapes and the neighbours the deployed model uses.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from edgequant.errors import UnsupportedOpError
from edgequant.interp.ops.conv_transpose import transpose_geometry
from edgequant.interp.ops.resize import (
    COORDINATE_MODES,
    MODES,
    NEAREST_MODES,
    interpolation_matrix,
    nearest_index,
    original_coordinate,
)

_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def ConvTranspose(i, a):
    """(N, C, *S) with weight (C, M/g, *K) → (N, M, *S'), pads / output_padding / output_shape
    / auto_pad placed as onnxruntime places them."""
    x, w, b = i[0], i[1], i[2] if len(i) > 2 else None
    nd = w.ndim - 2
    kernel = list(a.get("kernel_shape") or w.shape[2:])
    strides, dil, begin, out = transpose_geometry(a, list(x.shape[2:]), kernel)
    y = _CONV_T[nd](x, w, None, strides, 0, 0, a.get("group", 1), dil)  # (N, M, *full)
    pad = []  # F.pad order: last axis first; negative values crop
    for k in reversed(range(nd)):
        pad += [-begin[k], begin[k] + out[k] - y.shape[2 + k]]
    y = F.pad(y, pad)  # (N, M, *out)
    if b is not None:
        y = y + b.reshape(1, -1, *[1] * nd)
    return y


def _option(a: dict, key: str, default: str, allowed: tuple) -> str:
    value = a.get(key, default)
    if value not in allowed:
        raise UnsupportedOpError(f"Resize attribute {key}={value!r} is not supported in QAT "
                                 f"(allowed: {allowed})")
    return value


def Resize(i, a):
    """ONNX Resize (opset 11+) by ``scales`` or to ``sizes`` (optionally on ``axes``): nearest
    (one index gather per axis), linear and cubic (one interpolation matrix per axis)."""
    x = i[0]
    scales = i[2] if len(i) > 2 and i[2] is not None and i[2].numel() else None
    sizes = i[3] if len(i) > 3 and i[3] is not None and i[3].numel() else None
    mode = _option(a, "mode", "nearest", MODES)
    coord_mode = _option(a, "coordinate_transformation_mode", "half_pixel",
                         tuple(m for m in COORDINATE_MODES if m != "tf_crop_and_resize"))
    nearest_mode = _option(a, "nearest_mode", "round_prefer_floor", NEAREST_MODES)
    if a.get("antialias", 0) or a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise UnsupportedOpError("Resize with antialias=1 or keep_aspect_ratio_policy other than "
                                 "'stretch' is not supported in QAT")
    axes = [int(v) % x.ndim for v in (a.get("axes") or range(x.ndim))]
    shape, sc = list(x.shape), [np.float32(1)] * x.ndim
    if sizes is not None:
        for ax, s in zip(axes, sizes.reshape(-1).tolist(), strict=True):
            shape[ax], sc[ax] = int(s), np.float32(s) / np.float32(x.shape[ax])
    elif scales is not None:
        for ax, s in zip(axes, scales.reshape(-1).tolist(), strict=True):
            sc[ax] = np.float32(s)
            shape[ax] = int(sc[ax] * np.float32(x.shape[ax]))
    else:
        raise UnsupportedOpError("Resize needs non-empty scales or sizes")
    if tuple(shape) == tuple(x.shape):
        return x
    y = x
    for ax in range(x.ndim):
        if shape[ax] == x.shape[ax] and sc[ax] == 1:
            continue
        coord = original_coordinate(coord_mode, shape[ax], x.shape[ax], sc[ax], (0.0, 1.0))
        if mode == "nearest":
            idx = np.clip(nearest_index(coord, nearest_mode, sc[ax] < 1), 0, x.shape[ax] - 1)
            y = torch.index_select(y, ax, torch.from_numpy(idx))
        else:
            m = interpolation_matrix(coord, x.shape[ax], mode, float(a.get("cubic_coeff_a", -0.75)),
                                     bool(a.get("exclude_outside", 0)))  # (out, in)
            m = torch.from_numpy(m.astype(np.float32))
            y = torch.movedim(torch.tensordot(m, y, dims=([1], [ax])), 0, ax)
    return y
