"""Op builders for Gather → GATHER and GatherND → GATHER_ND.

An embedding table stays small: a quantized table (a DequantizeLinear of an int8 / uint8
initializer, per tensor or per channel along an axis that is not gathered) is stored int8
and gathered as int8; the gathered rows carry the table's qparams and a DEQUANTIZE follows
only where a float consumer reads them (:meth:`Converter.act`). A raw integer table (the
``gather_weights`` pass's int8 rows + float row scales, gathered separately) is gathered as
plain int8 data exactly as in the ONNX graph. Constant indices are made non-negative here
(TFLite's GATHER does not wrap negative indices); run-time indices (token ids) must be
non-negative, as they are for a tokenizer's output.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgequant.errors import UnsupportedOpError
from edgequant.export.tflite.builder import Quant
from edgequant.export.tflite.convert import OP, OPT, Converter, TVal
from edgequant.export.tflite.ingest import Node, QConst
from edgequant.export.tflite.ops_data import operand


def _indices(cv: Converter, node: Node, name: str, dim: int | None) -> TVal:
    """Gather indices: a constant (int32, negatives wrapped by ``dim``) or the activation."""
    value = cv.g.value(name)
    if value is None:
        return cv.act(name, "nchw")
    idx = np.asarray(value).astype(np.int64)
    if dim is not None:
        if np.any((idx < -dim) | (idx >= dim)):
            raise UnsupportedOpError(f"node {node.name!r}: Gather index out of range for an axis "
                                     f"of size {dim} (indices {name!r})")
        idx = np.where(idx < 0, idx + dim, idx)
    tv = cv.const(name, idx.astype(np.int32))
    tv.plain = True
    return tv


def _int8_table(cv: Converter, node: Node, axis: int) -> TVal | None:
    """The gathered table as an int8 constant with its qparams, when it maps exactly."""
    w = cv.g.qconsts.get(node.inputs[0])
    if not isinstance(w, QConst) or w.block_size is not None or w.values.dtype not in (
            np.int8, np.uint8) or (w.axis is not None and w.axis % w.values.ndim == axis):
        return None
    shift = 128 if w.values.dtype == np.uint8 else 0
    vals = (w.values.astype(np.int16) - shift).astype(np.int8)
    zp = np.asarray(w.zero_point, np.int64).reshape(-1) - shift
    qaxis = 0 if w.axis is None else w.axis % w.values.ndim
    return cv.const(f"{node.name}_table", vals, Quant.of(w.scale.reshape(-1), zp, qaxis))


def Gather(cv: Converter, node: Node) -> None:
    """Gather → GATHER (axis attribute; a quantized constant table stays int8)."""
    data, ids = node.inputs[:2]
    shape = cv.shape_of(data)
    axis = int(node.attrs.get("axis", 0)) % len(shape)
    out_shape = cv.shape_of(node.outputs[0])
    opt = schema.GatherOptionsT()
    opt.axis = axis
    idx = _indices(cv, node, ids, shape[axis])
    table = None if cv.q or cv.g.value(data) is None else _int8_table(cv, node, axis)
    if table is not None:  # int8 rows with the table's qparams; DEQUANTIZE at float readers
        q = table.quant
        if not q.per_tensor:  # the channel axis moves by the indices' rank − 1
            k = len(cv.shape_of(ids)) if cv.g.value(ids) is None else np.ndim(cv.g.value(ids))
            q = Quant(q.scale, q.zero_point, q.axis + (k - 1 if q.axis > axis else 0))
        out = cv.temp(node.outputs[0], out_shape, np.int8, q)
        cv.op(OP.GATHER, [table, idx], [out], OPT.GatherOptions, opt)
        cv.vals[(node.outputs[0], "i8", False)] = out
        cv.vals[(node.outputs[0], "src", False)] = out
        return
    if cv.g.value(data) is not None and data in cv.g.qconsts and not cv.q:
        cv.note(f"node {node.name!r}: Gather table {data!r} stored float32 (its quantization "
                "does not map onto an int8 GATHER: per-row or blocked scales)")
    x = operand(cv, data, cv.act_quant(node.outputs[0]) if cv.q else None)
    cv.passthrough(OP.GATHER, [x, idx], node.outputs[0], out_shape, False, x.quant,
                   OPT.GatherOptions, opt)


def GatherND(cv: Converter, node: Node) -> None:
    """GatherND (batch_dims 0) → GATHER_ND; constant indices must be non-negative."""
    if int(node.attrs.get("batch_dims", 0)):
        raise UnsupportedOpError(f"node {node.name!r}: GatherND with batch_dims "
                                 f"{node.attrs['batch_dims']} is not exported (allowed: 0)")
    data, ids = node.inputs[:2]
    value = cv.g.value(ids)
    if value is not None and np.any(np.asarray(value) < 0):
        raise UnsupportedOpError(f"node {node.name!r}: GatherND with negative constant indices "
                                 "is not exported")
    idx = _indices(cv, node, ids, None)
    x = operand(cv, data, cv.act_quant(node.outputs[0]) if cv.q else None)
    cv.passthrough(OP.GATHER_ND, [x, idx], node.outputs[0], cv.shape_of(node.outputs[0]),
                   False, x.quant)
