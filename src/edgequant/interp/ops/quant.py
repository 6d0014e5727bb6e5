"""QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear (ONNX semantics, opset 21)."""

from __future__ import annotations

import numpy as np

from edgequant.interp.integers import as_int, container_dtype, qtype_of
from edgequant.interp.registry import NodeContext, register
from edgequant.primitives import dequantize, quantize
from edgequant.qparams import QParams
from edgequant.spec import PerChannel, PerGroup, PerTensor, QType

_OUTPUT_DTYPES = {2: QType(8, False), 3: QType(8, True), 4: QType(16, False), 5: QType(16, True),
                  21: QType(4, False), 22: QType(4, True)}


def _granularity(ctx: NodeContext, scale: np.ndarray, rank: int):
    """PerTensor / PerChannel(axis) / PerGroup(axis, block_size) from the scale's shape."""
    per_tensor = scale.size == 1 and scale.ndim <= 1 and ctx.attr("block_size", 0) == 0
    if scale.ndim == 0 or per_tensor:
        return PerTensor()
    axis = int(ctx.attr("axis", 1)) % rank
    block = int(ctx.attr("block_size", 0))
    if block > 0:
        return PerGroup(axis, block)
    return PerChannel(axis)


def _params(ctx, scale, zero_point, qtype: QType, rank: int) -> QParams:
    scale = np.asarray(scale, dtype=np.float32)
    gran = _granularity(ctx, scale, rank)
    if isinstance(gran, PerTensor):
        scale = scale.reshape(())
    zp = np.zeros(scale.shape, np.int32) if zero_point is None else as_int(zero_point)
    return QParams(scale, zp.reshape(scale.shape).astype(np.int32), qtype, gran)


@register()
def QuantizeLinear(ctx: NodeContext, x, y_scale, y_zero_point=None):
    """``y = saturate(round_half_even(x / y_scale) + y_zero_point)``, float32 division."""
    if y_zero_point is not None:
        qtype = qtype_of(y_zero_point.dtype)
    else:
        qtype = _OUTPUT_DTYPES.get(int(ctx.attr("output_dtype", 0)) or 2)
        if qtype is None:
            raise TypeError(f"QuantizeLinear {ctx.name!r}: output_dtype not supported")
    qp = _params(ctx, y_scale, y_zero_point, qtype, max(np.ndim(x), 1))
    xf = np.asarray(x, dtype=np.float32)
    q = quantize(xf, qp)  # container int8/uint8/int16
    # NaN has no ONNX-specified integer; onnxruntime's clamp (max/min) turns it into qmin.
    q = np.where(np.isnan(xf), np.asarray(qtype.qmin).astype(q.dtype), q)
    return q.astype(container_dtype(qtype))


@register()
def DequantizeLinear(ctx: NodeContext, x, x_scale, x_zero_point=None):
    """``y = (x − x_zero_point) · x_scale`` (int32 difference, float32 product)."""
    xi = as_int(x)
    qtype = qtype_of(xi.dtype) if xi.dtype.itemsize < 4 else QType(32, True)
    qp = _params(ctx, x_scale, x_zero_point, qtype, max(xi.ndim, 1))
    out = dequantize(xi, qp)
    return out.astype(np.asarray(x_scale).dtype)


@register()
def DynamicQuantizeLinear(ctx: NodeContext, x):
    """uint8 quantization of ``x`` over ``[min(x, 0), max(x, 0)]`` (ONNX / ORT formula)."""
    x = np.asarray(x, dtype=np.float32)
    lo = np.float32(min(np.float32(0), x.min())) if x.size else np.float32(0)
    hi = np.float32(max(np.float32(0), x.max())) if x.size else np.float32(0)
    # ORT's GetQuantizationParameter: a zero range gets scale 1 rather than 0.
    scale = np.float32(1.0) if hi == lo else np.float32((hi - lo) / np.float32(255))
    initial_zp = np.float32(0) - np.float32(lo / scale)
    zp = np.uint8(np.rint(np.clip(initial_zp, 0, 255)))
    qp = QParams(np.asarray(scale), np.asarray(zp, np.int32), QType(8, False), PerTensor())
    return quantize(x, qp), np.asarray(scale, np.float32), np.asarray(zp, np.uint8)
