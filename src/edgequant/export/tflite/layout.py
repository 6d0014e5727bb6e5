"""NCHW (ONNX) → NHWC (TFLite) layout arithmetic: permutations, weight layouts, padding.

Inside the exported graph every 4-D activation produced by a spatial op is NHWC; the ONNX
model's public layout is kept by one TRANSPOSE at a 4-D input and one at a 4-D output.
Weights are permuted at export time, so no Transpose pairs surround the convolutions.
1-D convolutions keep their 3-D activations channels-last too: (N, C, L) is stored as
(N, L, C) (``TVal.nhwc`` means "channels last" at rank 3 and 4), so a Conv1d stack is
RESHAPE → CONV_2D → RESHAPE with no TRANSPOSE between the layers.
"""

from __future__ import annotations

import math

import numpy as np

TO_NHWC = (0, 2, 3, 1)  # NCHW array → NHWC array
TO_NCHW = (0, 3, 1, 2)  # NHWC array → NCHW array


def to_last(rank: int) -> tuple[int, ...]:
    """Permutation channels-first → channels-last: (0, 2, …, rank − 1, 1)."""
    return (0, *range(2, rank), 1)


def to_first(rank: int) -> tuple[int, ...]:
    """Permutation channels-last → channels-first: (0, rank − 1, 1, …, rank − 2)."""
    return (0, rank - 1, *range(1, rank - 1))


def nhwc_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(N, C, H, W) → (N, H, W, C); (N, C, L) → (N, L, C)."""
    return tuple(shape[i] for i in to_last(len(shape)))


def nhwc_axis(axis: int, rank: int = 4) -> int:
    """Where ONNX channels-first axis ``axis`` lives in the channels-last tensor."""
    return to_last(rank).index(axis % rank)


def conv_weight_ohwi(w: np.ndarray) -> np.ndarray:
    """ONNX Conv weight (O, I, kh, kw) → TFLite CONV_2D filter (O, kh, kw, I)."""
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1))  # (O, kh, kw, I)


def depthwise_weight_1hwc(w: np.ndarray) -> np.ndarray:
    """ONNX depthwise weight (C·M, 1, kh, kw) → TFLite DEPTHWISE filter (1, kh, kw, C·M)."""
    return np.ascontiguousarray(w.transpose(1, 2, 3, 0))  # (1, kh, kw, C·M)


def same_pads(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    """Pads (before, after) TFLite's SAME padding applies along one spatial axis."""
    eff = (k - 1) * dilation + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def padding_mode(
    hw: tuple[int, int],
    kernel: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
    pads: tuple[int, int, int, int],
) -> str | None:
    """``'VALID'`` / ``'SAME'`` when ONNX ``pads`` (t, l, b, r) equal one of them, else None."""
    if not any(pads):
        return "VALID"
    sh = same_pads(hw[0], kernel[0], strides[0], dilations[0])
    sw = same_pads(hw[1], kernel[1], strides[1], dilations[1])
    if (pads[0], pads[2]) == sh and (pads[1], pads[3]) == sw:
        return "SAME"
    return None


def onnx_pads(attrs: dict, hw: tuple[int, int], kernel, strides, dilations) -> tuple[int, ...]:
    """Explicit (top, left, bottom, right) pads from ONNX ``pads`` / ``auto_pad``."""
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        sh = same_pads(hw[0], kernel[0], strides[0], dilations[0])
        sw = same_pads(hw[1], kernel[1], strides[1], dilations[1])
        if auto == "SAME_LOWER":
            sh, sw = sh[::-1], sw[::-1]
        return sh[0], sw[0], sh[1], sw[1]
    if auto == "VALID":
        return 0, 0, 0, 0
    p = list(attrs.get("pads", [0, 0, 0, 0]))
    return p[0], p[1], p[2], p[3]


def flatten_permutation(c: int, h: int, w: int) -> np.ndarray:
    """Index map for flattening an NHWC tensor: NHWC feature j holds ONNX feature ``perm[j]``.

    ONNX flattens (C, H, W) as ``c·H·W + h·W + w``; the NHWC tensor flattens as
    ``h·W·C + w·C + c``. A FULLY_CONNECTED reading the NHWC flatten uses weight columns
    ``W[:, perm]`` and gives exactly the ONNX result.
    """
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()  # (H·W·C,)
