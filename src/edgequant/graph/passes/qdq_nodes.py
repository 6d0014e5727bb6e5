"""Building blocks shared by the QDQ, dynamic and weight-only passes: quantized initializers
and QuantizeLinear / DequantizeLinear nodes in the ONNX layout of a ``QParams``."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgequant.primitives import quantize
from edgequant.qparams import QParams
from edgequant.spec import PerChannel, PerGroup


def int_initializer(values: np.ndarray, qtype_onnx: int, name: str) -> onnx.TensorProto:
    """An integer initializer of ONNX type ``qtype_onnx``; int4/uint4 are packed two per byte
    in ``raw_data`` (``helper.make_tensor`` would spend a varint per pair)."""
    if qtype_onnx in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
        packed = ml_dtypes.int4 if qtype_onnx == onnx.TensorProto.INT4 else ml_dtypes.uint4
        return numpy_helper.from_array(np.asarray(values).astype(packed), name)
    np_type = helper.tensor_dtype_to_np_dtype(qtype_onnx)
    return numpy_helper.from_array(values.astype(np_type), name)


def qparam_initializers(qp: QParams, stem: str) -> tuple[list[onnx.TensorProto], dict]:
    """Scale and zero-point initializers of ``qp`` plus the Q/DQ attributes (axis, block_size)."""
    scale = numpy_helper.from_array(np.asarray(qp.scale, np.float32), f"{stem}_scale")
    zp = int_initializer(np.asarray(qp.zero_point), qp.qtype.onnx_dtype, f"{stem}_zero_point")
    attrs: dict = {}
    g = qp.granularity
    if isinstance(g, PerChannel) and np.ndim(qp.scale):
        attrs["axis"] = g.axis
    elif isinstance(g, PerGroup):
        attrs["axis"] = g.axis
        attrs["block_size"] = g.size
    return [scale, zp], attrs


def dequantized_constant(values: np.ndarray, qp: QParams, stem: str, out_name: str,
                         omit_zero_point: bool = False, ints: np.ndarray | None = None
                         ) -> tuple[list[onnx.TensorProto], onnx.NodeProto]:
    """Quantize a constant tensor and return its initializers and the DequantizeLinear node.

    ``omit_zero_point`` drops an all-zero zero point (ONNX's default), which saves half a
    byte per group for blocked int4 weights. ``ints`` are integers already chosen on the grid
    of ``qp`` (AdaRound); they replace round-to-nearest.
    """
    q = quantize(values, qp) if ints is None else ints  # same shape, integer container dtype
    qinit = int_initializer(q, qp.qtype.onnx_dtype, f"{stem}_quantized")
    inits, attrs = qparam_initializers(qp, stem)
    if omit_zero_point and not np.any(qp.zero_point):
        inits = inits[:1]
    node = helper.make_node("DequantizeLinear", [qinit.name, *(t.name for t in inits)],
                            [out_name], name=f"{stem}_DequantizeLinear", **attrs)
    return [qinit, *inits], node


def qdq_pair(src: str, q_name: str, dq_name: str, qp: QParams, stem: str
             ) -> tuple[list[onnx.TensorProto], list[onnx.NodeProto]]:
    """``src → QuantizeLinear → q_name → DequantizeLinear → dq_name`` (per-tensor activations)."""
    inits, attrs = qparam_initializers(qp, stem)
    names = [inits[0].name, inits[1].name]
    q = helper.make_node("QuantizeLinear", [src, *names], [q_name], name=f"{stem}_QuantizeLinear",
                         **attrs)
    dq = helper.make_node("DequantizeLinear", [q_name, *names], [dq_name],
                          name=f"{stem}_DequantizeLinear", **attrs)
    return inits, [q, dq]
