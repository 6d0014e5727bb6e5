"""Reference kernels for RESIZE_NEAREST_NEIGHBOR, RESIZE_BILINEAR, PADV2, MIRROR_PAD, ADD_N,
DIV, RELU_0_TO_1, MAXIMUM, MINIMUM and LOCAL_RESPONSE_NORMALIZATION (``ReferenceInterpreter`` signature:
``(ins, infos, out, opt, flavor)``).

Integer resize-nearest and pads move data (bit exact by construction); integer bilinear
follows LiteRT's ``ResizeBilinearInteger`` (10-bit fixed-point source coordinates, the four
taps summed in int64 at 2^20 and rounded half away from zero).
"""

from __future__ import annotations

import numpy as np

from edgequant.errors import UnsupportedOpError
from edgequant.export.tflite.ops_resize import tflite_coords, tflite_nearest
from edgequant.interp.tflite import kernels as K


def _is_int(info) -> bool:
    return info.dtype.kind in "iu"


def resize_nearest(ins, infos, out, opt, flavor="builtin"):
    """RESIZE_NEAREST_NEIGHBOR on NHWC (any dtype: a gather)."""
    x = ins[0]
    oh, ow = (int(v) for v in ins[1])
    a, h = bool(opt.alignCorners), bool(opt.halfPixelCenters)
    iy = tflite_nearest(oh, x.shape[1], a, h)
    ix = tflite_nearest(ow, x.shape[2], a, h)
    return x[:, iy][:, :, ix]


def _int_taps(out_size: int, in_size: int, align: bool, half: bool):
    """LiteRT's 10-bit fixed-point source coordinate, lower and upper index per output."""
    if align and out_size > 1:
        scale10 = ((1 << 10) * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
    else:
        scale10 = ((1 << 10) * in_size + out_size // 2) // out_size
    o = np.arange(out_size, dtype=np.int64)
    v = o * scale10 + (scale10 // 2 - (1 << 9) if half else 0)
    lo = np.maximum(np.trunc(v / (1 << 10)).astype(np.int64), 0)
    hi = np.minimum(np.trunc((v + (1 << 10) - 1) / (1 << 10)).astype(np.int64), in_size - 1)
    return v, lo, hi


def _xnn_float_taps(out_size: int, in_size: int, align: bool, half: bool):
    """XNNPACK's source taps: float32 coordinate ``o · scale + offset``, lower / upper index
    (clamped), float32 weight of the upper one."""
    adj = int(align and out_size != 1)
    scale = np.float32(in_size - adj) / np.float32(out_size - adj)
    offset = np.float32(0.5) * scale - np.float32(0.5) if half and not align else np.float32(0)
    c = (np.arange(out_size).astype(np.float32) * scale + offset).astype(np.float32)
    lo = np.floor(c)
    w = (c - lo).astype(np.float32)
    lo = lo.astype(np.int64)
    return np.clip(lo, 0, in_size - 1), np.clip(lo + 1, 0, in_size - 1), w


def _xnn_taps(out_size: int, in_size: int, align: bool, half: bool):
    """XNNPACK's integer taps: the float taps' weight as ``lrintf(α · 2^11)``."""
    lo, hi, w = _xnn_float_taps(out_size, in_size, align, half)
    return lo, hi, np.rint((w * np.float32(2048)).astype(np.float32)).astype(np.int64)


def resize_bilinear_xnnpack(x: np.ndarray, oh: int, ow: int, align: bool, half: bool):
    """Integer RESIZE_BILINEAR as XNNPACK's s8 ibilinear kernel (11-bit weights, horizontal
    then vertical blend, one rounding shift by 22)."""
    y0, y1, wy = _xnn_taps(oh, x.shape[1], align, half)
    x0, x1, wx = _xnn_taps(ow, x.shape[2], align, half)
    xi = x.astype(np.int64)
    wx, wy = wx[None, None, :, None], wy[None, :, None, None]
    tl, tr = xi[:, y0][:, :, x0], xi[:, y0][:, :, x1]
    bl, br = xi[:, y1][:, :, x0], xi[:, y1][:, :, x1]
    top = (tl << 11) + (tr - tl) * wx  # (N, OH, OW, C) int32
    bot = (bl << 11) + (br - bl) * wx
    acc = (top << 11) + (bot - top) * wy
    return (acc + (1 << 21)) >> 22


def _resize_bilinear_xnnpack_f32(x: np.ndarray, oh: int, ow: int, align: bool, half: bool):
    """Float RESIZE_BILINEAR as XNNPACK's f32 ibilinear: horizontal then vertical lerp."""
    y0, y1, wy = _xnn_float_taps(oh, x.shape[1], align, half)
    x0, x1, wx = _xnn_float_taps(ow, x.shape[2], align, half)
    wx, wy = wx[None, None, :, None], wy[None, :, None, None]
    tl, tr = x[:, y0][:, :, x0], x[:, y0][:, :, x1]
    bl, br = x[:, y1][:, :, x0], x[:, y1][:, :, x1]
    top = tl + (tr - tl) * wx  # (N, OH, OW, C) float32
    bot = bl + (br - bl) * wx
    return (top + (bot - top) * wy).astype(np.float32)


def resize_bilinear(ins, infos, out, opt, flavor="builtin"):
    """RESIZE_BILINEAR on NHWC: float (float32 coordinates) or integer (LiteRT: 10-bit fixed
    point; XNNPACK: :func:`resize_bilinear_xnnpack`)."""
    x = ins[0]
    oh, ow = (int(v) for v in ins[1])
    a, h = bool(opt.alignCorners), bool(opt.halfPixelCenters)
    if _is_int(infos[0]) and flavor == "xnnpack" and x.dtype == np.int8:
        return resize_bilinear_xnnpack(x, oh, ow, a, h).astype(out.dtype)
    if flavor == "xnnpack" and x.dtype == np.float32:
        return _resize_bilinear_xnnpack_f32(x, oh, ow, a, h)
    if _is_int(infos[0]):
        vy, y0, y1 = _int_taps(oh, x.shape[1], a, h)
        vx, x0, x1 = _int_taps(ow, x.shape[2], a, h)
        one = 1 << 10
        fy = (vy - one * y0)[None, :, None, None]  # (1, OH, 1, 1) int64
        fx = (vx - one * x0)[None, None, :, None]  # (1, 1, OW, 1) int64
        xi = x.astype(np.int64)
        acc = (xi[:, y0][:, :, x0] * (one - fy) * (one - fx) + xi[:, y1][:, :, x0] * fy * (one - fx)
               + xi[:, y0][:, :, x1] * (one - fy) * fx + xi[:, y1][:, :, x1] * fy * fx)
        rnd = np.where(acc > 0, 1 << 19, -(1 << 19))
        y = np.trunc((acc + rnd) / (1 << 20)).astype(np.int64)  # C++ division truncates
        return y.astype(out.dtype)
    def taps(o, n):
        c = tflite_coords(o, n, a, h)
        c = c - np.float32(0.5) if h else c
        lo = np.floor(c).astype(np.int64)
        w = (c - lo).astype(np.float32)
        return np.maximum(lo, 0), np.minimum(lo + 1, n - 1), w
    y0, y1, wy = taps(oh, x.shape[1])
    x0, x1, wx = taps(ow, x.shape[2])
    wy, wx = wy[None, :, None, None], wx[None, None, :, None]
    top = x[:, y0][:, :, x0] * (1 - wx) + x[:, y0][:, :, x1] * wx
    bot = x[:, y1][:, :, x0] * (1 - wx) + x[:, y1][:, :, x1] * wx
    return (top * (1 - wy) + bot * wy).astype(np.float32)


def padv2(ins, infos, out, opt, flavor="builtin"):
    """PADV2: constant pad with the given (stored) value."""
    return np.pad(ins[0], [tuple(p) for p in ins[1]], constant_values=np.ravel(ins[2])[0])


def mirror_pad(ins, infos, out, opt, flavor="builtin"):
    """MIRROR_PAD REFLECT (0) / SYMMETRIC (1)."""
    return np.pad(ins[0], [tuple(p) for p in ins[1]],
                  mode="reflect" if int(opt.mode) == 0 else "symmetric")


def add_n(ins, infos, out, opt, flavor="builtin"):
    """ADD_N (float / int32 only in LiteRT)."""
    if _is_int(infos[0]):
        raise UnsupportedOpError("reference executor: integer ADD_N not implemented")
    return np.sum(np.stack([i.astype(np.float32) for i in ins]), axis=0, dtype=np.float32)


def div(ins, infos, out, opt, flavor="builtin"):
    """DIV (float)."""
    if _is_int(infos[0]):
        raise UnsupportedOpError("reference executor: integer DIV not implemented")
    y = ins[0].astype(np.float32) / ins[1].astype(np.float32)
    lo, hi = {"RELU": (0, np.inf), "RELU6": (0, 6), "RELU_N1_TO_1": (-1, 1)}.get(
        {1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}.get(opt.fusedActivationFunction, ""),
        (-np.inf, np.inf))
    return np.clip(y, lo, hi).astype(np.float32)


def relu_0_to_1(ins, infos, out, opt, flavor="builtin"):
    """RELU_0_TO_1: clamp to [0, 1]; integer in the input's qparams requantized to the
    output's, clamped to the output's integers for 0 and 1."""
    x = ins[0]
    if not _is_int(infos[0]):
        return np.clip(x, 0, 1).astype(np.float32)
    y = K.requantize_tensor(x, infos[0].q, out.q, np.int64)
    s, z = float(out.scale[0]), int(out.zero_point[0])
    info = np.iinfo(out.dtype)
    lo = max(info.min, z + int(K.tfl_round(np.array(0.0 / s))))
    hi = min(info.max, z + int(K.tfl_round(np.array(1.0 / s))))
    return np.clip(y, lo, hi).astype(out.dtype)


def local_response_norm(ins, infos, out, opt, flavor="builtin"):
    """LOCAL_RESPONSE_NORMALIZATION over the last (channel) axis, float."""
    if _is_int(infos[0]):
        raise UnsupportedOpError("reference executor: LiteRT has no integer LRN")
    x = ins[0].astype(np.float64)
    r, c = int(opt.radius), x.shape[-1]
    if not 0 <= r <= 4 * c:
        raise ValueError(f"LRN radius {r} is not allowed for {c} channels")
    sq = np.pad(x * x, [(0, 0)] * (x.ndim - 1) + [(r, r)])
    acc = sum(sq[..., k:k + c] for k in range(2 * r + 1))
    return (x / (opt.bias + opt.alpha * acc) ** opt.beta).astype(np.float32)


def _minmax(fn):
    def run(ins, infos, out, opt, flavor="builtin"):
        """MAXIMUM / MINIMUM: elementwise on the stored values (integer inputs share the
        output's qparams)."""
        return fn(ins[0], ins[1]).astype(out.dtype)
    return run


OPS = {
    "MAXIMUM": _minmax(np.maximum),
    "MINIMUM": _minmax(np.minimum),
    "RESIZE_NEAREST_NEIGHBOR": resize_nearest,
    "RESIZE_BILINEAR": resize_bilinear,
    "PADV2": padv2,
    "MIRROR_PAD": mirror_pad,
    "ADD_N": add_n,
    "DIV": div,
    "RELU_0_TO_1": relu_0_to_1,
    "LOCAL_RESPONSE_NORMALIZATION": local_response_norm,
}
