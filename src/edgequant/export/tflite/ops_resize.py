"""Resize → RESIZE_NEAREST_NEIGHBOR / RESIZE_BILINEAR.

ONNX describes a resize by ``coordinate_transformation_mode`` (+ ``nearest_mode``); TFLite by
two flags, ``align_corners`` and ``half_pixel_centers``. Rather than a table that is right
only for some sizes (``half_pixel`` + ``round_prefer_floor`` equals TFLite's half-pixel
nearest when upsampling by 2, not when downsampling by 2), the builder computes, per spatial
axis, the source indices (and linear weights) ONNX uses and those of each TFLite flag pair,
and takes the pair that matches exactly; none matching is an error naming the node and its
attributes. Integer RESIZE_NEAREST_NEIGHBOR keeps its input's qparams (pure data movement);
so does integer RESIZE_BILINEAR (its blend rounds once). LiteRT's int16 bilinear steps source
coordinates in 1/1024 pixel: when that step is inexact (e.g. align_corners 6 → 12) the int16
node runs float between DEQUANTIZE and QUANTIZE instead (hundreds of LSB otherwise).
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgequant.errors import UnsupportedOpError
from edgequant.export.tflite.convert import OP, OPT, Converter
from edgequant.export.tflite.ingest import Node

FLAG_PAIRS = ((False, True), (False, False), (True, False))  # (align_corners, half_pixel)


def _attr(node: Node, key: str, default: str) -> str:
    v = node.attrs.get(key, default)
    return v.decode() if isinstance(v, bytes) else str(v)


def onnx_coords(out_size: int, in_size: int, scale: float, mode: str) -> np.ndarray:
    """Source coordinate of every output index under ONNX ``coordinate_transformation_mode``."""
    o = np.arange(out_size, dtype=np.float64)
    if mode == "half_pixel":
        return (o + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (o + 0.5) / scale - 0.5 if out_size > 1 else np.zeros(out_size)
    if mode == "align_corners":
        return o * (in_size - 1) / (out_size - 1) if out_size > 1 else np.zeros(out_size)
    if mode == "asymmetric":
        return o / scale
    if mode == "tf_half_pixel_for_nn":
        return (o + 0.5) / scale
    raise ValueError(mode)


def onnx_nearest(coords: np.ndarray, in_size: int, nearest_mode: str) -> np.ndarray:
    """ONNX nearest index for ``nearest_mode``, clamped to the input."""
    fn = {"round_prefer_floor": lambda c: np.ceil(c - 0.5),
          "round_prefer_ceil": lambda c: np.floor(c + 0.5),
          "floor": np.floor, "ceil": np.ceil}[nearest_mode]
    return np.clip(fn(coords), 0, in_size - 1).astype(np.int64)


def tflite_coords(out_size: int, in_size: int, align: bool, half: bool) -> np.ndarray:
    """TFLite's source coordinate (float32 scale, as its kernels)."""
    o = np.arange(out_size, dtype=np.float32)
    if align and out_size > 1:
        scale = np.float32(in_size - 1) / np.float32(out_size - 1)
    else:
        scale = np.float32(in_size) / np.float32(out_size)
    return (o + np.float32(0.5)) * scale if half else o * scale


def tflite_nearest(out_size: int, in_size: int, align: bool, half: bool) -> np.ndarray:
    """TFLite RESIZE_NEAREST_NEIGHBOR source indices (round half away with align_corners)."""
    c = tflite_coords(out_size, in_size, align, half).astype(np.float64)
    idx = np.floor(c + 0.5) if align else np.floor(c)
    return np.clip(idx, 0, in_size - 1).astype(np.int64)


def linear_taps(coords: np.ndarray, in_size: int) -> np.ndarray:
    """(lower, upper, weight of upper) per output, canonical (weight 0 when lower == upper)."""
    c = np.clip(coords, 0, in_size - 1)
    lo = np.floor(c)
    hi = np.minimum(lo + 1, in_size - 1)
    w = np.where(hi == lo, 0.0, c - lo)
    return np.stack([lo, hi, w])


def tflite_linear(out_size: int, in_size: int, align: bool, half: bool) -> np.ndarray:
    """TFLite RESIZE_BILINEAR taps (half pixel: ``(o + 0.5)·s − 0.5``)."""
    c = tflite_coords(out_size, in_size, align, half).astype(np.float64)
    return linear_taps(c - 0.5 if half else c, in_size)


def _flags(node: Node, linear: bool, sizes, scales) -> tuple[bool, bool]:
    ctm = _attr(node, "coordinate_transformation_mode", "half_pixel")
    nm = _attr(node, "nearest_mode", "round_prefer_floor")
    if ctm == "tf_crop_and_resize":
        raise UnsupportedOpError(f"node {node.name!r}: Resize attribute "
                                 "coordinate_transformation_mode='tf_crop_and_resize' has no "
                                 "TFLite equivalent")
    for pair in FLAG_PAIRS:
        ok = True
        for out_size, in_size, scale in zip(*sizes, scales, strict=True):
            c = onnx_coords(out_size, in_size, scale, ctm)
            if linear:
                ok &= np.allclose(linear_taps(c, in_size), tflite_linear(out_size, in_size, *pair),
                                  atol=1e-5)
            else:
                ok &= np.array_equal(onnx_nearest(c, in_size, nm),
                                     tflite_nearest(out_size, in_size, *pair))
        if ok:
            return pair
    extra = f", nearest_mode={nm!r}" if not linear else ""
    raise UnsupportedOpError(
        f"node {node.name!r}: Resize attribute coordinate_transformation_mode={ctm!r}{extra} "
        f"for sizes {list(sizes[1])} → {list(sizes[0])} has no TFLite equivalent "
        "(align_corners / half_pixel_centers give other source pixels)")


def _exact_10bit(out_size: int, in_size: int, align: bool) -> bool:
    """Is LiteRT's 10-bit fixed-point coordinate step exact for this axis?"""
    adj = int(align and out_size > 1)
    return ((1 << 10) * (in_size - adj)) % (out_size - adj) == 0


def Resize(cv: Converter, node: Node) -> None:
    """Resize / Upsample of H, W (nearest or linear) → RESIZE_NEAREST_NEIGHBOR / BILINEAR."""
    mode = _attr(node, "mode", "nearest")
    if mode not in ("nearest", "linear"):
        raise UnsupportedOpError(f"node {node.name!r}: Resize attribute mode={mode!r}: TFLite "
                                 "has nearest and linear (bilinear) only")
    for key in ("antialias", "exclude_outside"):
        if int(node.attrs.get(key, 0)):
            raise UnsupportedOpError(f"node {node.name!r}: Resize attribute {key}=1 has no "
                                     "TFLite equivalent")
    if "axes" in node.attrs:
        raise UnsupportedOpError(f"node {node.name!r}: Resize attribute axes is not exported "
                                 "(give scales / sizes for every axis)")
    in_shape, out_shape = cv.shape_of(node.inputs[0]), cv.shape_of(node.outputs[0])
    if len(in_shape) != 4 or tuple(in_shape[:2]) != tuple(out_shape[:2]):
        raise UnsupportedOpError(f"node {node.name!r}: only 4-D NCHW Resize of H and W exports "
                                 f"(shapes {in_shape} → {out_shape})")
    scales = None
    k = 2 if node.op_type == "Resize" and len(node.inputs) > 2 else 1
    if len(node.inputs) > k and node.inputs[k]:
        v = cv.g.value(node.inputs[k])
        scales = None if v is None or np.size(v) == 0 else np.asarray(v, np.float64)[2:]
    if scales is None:
        scales = np.array(out_shape[2:], np.float64) / np.array(in_shape[2:], np.float64)
    align, half = _flags(node, mode == "linear", (out_shape[2:], in_shape[2:]), scales)
    code, opt_type, opt = (OP.RESIZE_BILINEAR, OPT.ResizeBilinearOptions,
                           schema.ResizeBilinearOptionsT()) if mode == "linear" else \
        (OP.RESIZE_NEAREST_NEIGHBOR, OPT.ResizeNearestNeighborOptions,
         schema.ResizeNearestNeighborOptionsT())
    opt.alignCorners, opt.halfPixelCenters = align, half
    if code == OP.RESIZE_BILINEAR and cv.q and cv.act_dtype == np.int16 and not all(
            _exact_10bit(o, i, align) for o, i in zip(out_shape[2:], in_shape[2:], strict=True)):
        # LiteRT's integer bilinear steps source coordinates in 1/1024: an inexact step is off
        # by up to (size · error) / 1024 of a pixel difference — hundreds of int16 LSB
        cv.note(f"node {node.name!r}: int16 RESIZE_BILINEAR would step coordinates inexactly "
                "(10-bit fixed point); it runs float between DEQUANTIZE and QUANTIZE")
        cv.float_nodes.append(node.name)
        cv.dom = "f"
    x = cv.act(node.inputs[0], "nhwc")
    size = cv.const(f"{node.name}_size", np.array(out_shape[2:], np.int32))
    shape = cv.tflite_shape(node.outputs[0], True)
    if code == OP.RESIZE_NEAREST_NEIGHBOR:
        cv.passthrough(code, [x, size], node.outputs[0], shape, True, x.quant, opt_type, opt)
        return
    if cv.q:  # integer bilinear rounds its blend: the output keeps the input's qparams
        cv.passthrough(code, [x, size], node.outputs[0], shape, True, x.quant, opt_type, opt)
        return
    cv.op(code, [x, size], [cv.output(node.outputs[0], shape, True)], opt_type, opt)
