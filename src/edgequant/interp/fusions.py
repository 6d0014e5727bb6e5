"""Graph fusions onnxruntime applies at load time that change arithmetic, mirrored so the
interpreter computes what onnxruntime ships.

Only one lives here: ``DequantizeLinear(int4 weight, blocked on K) → MatMul`` becomes
``MatMulNBits`` with ``accuracy_level=4`` (onnxruntime's default for this fusion,
``session.qdq_matmulnbits_accuracy_level``), which quantizes the activations to int8. The
QDQ → QLinear* fusions are mirrored by ``export.qop.lower``.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgequant.interp.ops.nbits import INT8_ACCURACY_LEVEL

logger = logging.getLogger(__name__)

_INT4 = {onnx.TensorProto.INT4: 8, onnx.TensorProto.UINT4: 0}  # code offset to unsigned


def _pack_nibbles(codes: np.ndarray) -> np.ndarray:
    """(..., 2m) values 0..15 → (..., m) uint8, element 2i in the low nibble."""
    return (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def fuse_dq_matmul_nbits(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """Copy of ``model`` with every int4 blocked DequantizeLinear → MatMul as MatMulNBits,
    or None when there is none."""
    inits = {t.name: t for t in model.graph.initializer}
    users: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for t in n.input:
            users.setdefault(t, []).append(n)
    graph_outputs = {o.name for o in model.graph.output}
    replace: dict[int, onnx.NodeProto] = {}
    drop: set[int] = set()
    new_inits: list[onnx.TensorProto] = []
    index = {id(n): i for i, n in enumerate(model.graph.node)}
    for dq in model.graph.node:
        if dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            continue
        w_init = inits[dq.input[0]]
        block = _attr(dq, "block_size", 0)
        consumers = users.get(dq.output[0], [])
        if (w_init.data_type not in _INT4 or len(w_init.dims) != 2 or _attr(dq, "axis", 1) != 0
                or block < 16 or block & (block - 1) or len(consumers) != 1
                or consumers[0].op_type != "MatMul" or consumers[0].input[1] != dq.output[0]
                or dq.output[0] in graph_outputs or dq.input[1] not in inits):
            continue
        mm = consumers[0]
        offset = _INT4[w_init.data_type]
        q = numpy_helper.to_array(w_init).astype(np.int32) + offset  # (K, N) codes 0..15
        k, n = q.shape
        blocks = -(-k // block)
        scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32).reshape(blocks, n)
        if len(dq.input) > 2 and dq.input[2]:
            zp = numpy_helper.to_array(inits[dq.input[2]]).astype(np.int32) + offset
        else:
            zp = np.full((blocks, n), offset, dtype=np.int32)
        codes = np.zeros((n, blocks * block), dtype=np.int32)
        codes[:, :k] = q.T
        codes[:, k:] = np.repeat(zp.T, block, axis=1)[:, k:]  # padding decodes to 0
        zp_t = zp.T  # (N, blocks)
        if blocks % 2:
            zp_t = np.concatenate([zp_t, np.zeros((n, 1), np.int32)], axis=1)
        stem = dq.output[0]
        names = (f"{stem}_nbits_B", f"{stem}_nbits_scales", f"{stem}_nbits_zp")
        new_inits += [
            numpy_helper.from_array(_pack_nibbles(codes).reshape(n, blocks, block // 2), names[0]),
            numpy_helper.from_array(scale.T.reshape(-1).copy(), names[1]),
            numpy_helper.from_array(_pack_nibbles(zp_t), names[2]),
        ]
        replace[index[id(mm)]] = helper.make_node(
            "MatMulNBits", [mm.input[0], *names], list(mm.output), name=f"{mm.name}_nbits",
            domain="com.microsoft", K=k, N=n, bits=4, block_size=block,
            accuracy_level=INT8_ACCURACY_LEVEL)
        drop.add(index[id(dq)])
    if not replace:
        return None
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    for i, node in enumerate(model.graph.node):
        if i not in drop:
            out.graph.node.append(replace.get(i, node))
    out.graph.initializer.extend(new_inits)
    if not any(o.domain == "com.microsoft" for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    logger.info("mirrored %d DequantizeLinear(int4) → MatMul fusions as MatMulNBits", len(replace))
    return out
