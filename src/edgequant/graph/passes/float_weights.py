"""Keep float-weight Conv / ConvTranspose / Gemm nodes float in onnxruntime.

A node the plan leaves float (a ``skip`` / ``Rule(action="float")`` / ``float_region``, a
mixed-precision fp32 layer, a speed-guard region, an op with no integer plan such as
ConvTranspose) can still sit between quantized neighbours: ``DQ → Conv(float W) → Q``.
onnxruntime's ``WeightBiasQuantization`` graph transformer (CPU, session start; checked on
1.31) matches exactly that shape — input from a DequantizeLinear with a *scalar* scale, output
reaching a QuantizeLinear through Relu / Clip only, float32 weight initializer — and
quantizes the weight to int8 *per tensor* (its own min/max) and the bias to int32, so the
node then runs as QLinearConv: the model onnxruntime executes is not the one edgequant wrote,
evaluated or verified, and a layer the user asked to keep float is silently int8.

:func:`keep_float_weights` gives such a node its own DequantizeLinear of the same integer
tensor written *per axis* (the per-tensor scale and zero point repeated along the input's
channel axis): the values are identical (same scale, same zero point), but the scalar-scale
condition fails, so onnxruntime leaves the node float. Readers of the QDQ contract take a
tensor's qparams from its QuantizeLinear (:mod:`edgequant.graph.read_qdq`), so nothing else
changes.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgequant.graph.contract import tensor_stem
from edgequant.graph.info import attr

#: Ops onnxruntime's WeightBiasQuantization rewrites when their weight is float.
WEIGHT_BIAS_OPS = ("Conv", "ConvTranspose", "Gemm")


def _channel_axis(node: onnx.NodeProto, w: np.ndarray) -> tuple[int, int] | None:
    """(axis, length) of a known-length axis of the node's input 0, from the weight shape."""
    if node.op_type == "Conv":
        return 1, int(w.shape[1]) * int(attr(node, "group", 1))
    if node.op_type == "ConvTranspose":
        return 1, int(w.shape[0])
    k = int(w.shape[1] if attr(node, "transB", 0) else w.shape[0])  # Gemm: A is (M, K)
    return (0, k) if attr(node, "transA", 0) else (1, k)


def _reaches_q(node: onnx.NodeProto, consumers: dict[str, list[onnx.NodeProto]]) -> bool:
    """onnxruntime's ``IsNoBranchPathToQuantizeLinear``: one consumer each step, Relu / Clip
    in between, ending at a QuantizeLinear."""
    current = node
    while len(current.output) == 1 and len(consumers.get(current.output[0], [])) == 1:
        nxt = consumers[current.output[0]][0]
        if nxt.op_type == "QuantizeLinear":
            return True
        if nxt.op_type not in ("Relu", "Clip"):
            return False
        current = nxt
    return False


def keep_float_weights(model: onnx.ModelProto) -> list[str]:
    """Rewrite ``model`` in place (module docstring); returns the names of the nodes kept float
    this way."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inserted: dict[int, list[onnx.NodeProto]] = {}  # id(DQ node) -> new DQs after it
    kept: list[str] = []
    for node in g.node:
        if node.op_type not in WEIGHT_BIAS_OPS or len(node.input) < 2:
            continue
        w = inits.get(node.input[1])
        dq = producer.get(node.input[0])
        if (w is None or w.data_type != onnx.TensorProto.FLOAT or dq is None
                or dq.op_type != "DequantizeLinear" or len(dq.input) < 2
                or dq.input[1] not in inits or not _reaches_q(node, consumers)):
            continue
        scale = numpy_helper.to_array(inits[dq.input[1]])
        if scale.size != 1:
            continue
        zp = (numpy_helper.to_array(inits[dq.input[2]]) if len(dq.input) > 2 and dq.input[2]
              else None)
        axis, length = _channel_axis(node, numpy_helper.to_array(w))
        stem = tensor_stem(f"{node.input[0]}_for_{node.name or node.output[0]}")
        new_inits = [numpy_helper.from_array(np.full(length, scale.reshape(()), np.float32),
                                             f"{stem}_scale")]  # (C,)
        if zp is not None:
            new_inits.append(numpy_helper.from_array(np.full(length, zp.reshape(()), zp.dtype),
                                                     f"{stem}_zero_point"))  # (C,)
        g.initializer.extend(new_inits)
        inserted.setdefault(id(dq), []).append(helper.make_node(
            "DequantizeLinear", [dq.input[0], *(t.name for t in new_inits)], [f"{stem}_dequantized"],
            name=f"{stem}_DequantizeLinear", axis=axis))
        node.input[0] = f"{stem}_dequantized"
        kept.append(node.name or node.output[0])
    if inserted:
        read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        ordered = []
        for n in g.node:
            if id(n) not in inserted or n.output[0] in read:  # drop a DQ nobody reads now
                ordered.append(n)
            ordered.extend(inserted.get(id(n), []))
        del g.node[:]
        g.node.extend(ordered)
    return kept
