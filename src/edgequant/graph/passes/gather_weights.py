"""Quantized embedding tables: look up int8 rows, then dequantize only what was gathered.

``Gather(table (V, D), ids)`` becomes::

    rows_q = Gather(table_q (V, D) int8, ids)         # (..., D) int8
    scale  = Gather(row_scale (V, 1) float32, ids)    # (..., 1)
    rows   = Cast(rows_q) · scale                     # (..., D) float32

Dequantizing the whole table with DequantizeLinear would run on every inference
(onnxruntime never constant-folds it); this costs two lookups and one multiply per token.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgequant.graph.contract import tensor_stem
from edgequant.graph.info import GraphInfo
from edgequant.graph.passes.qdq_nodes import int_initializer
from edgequant.primitives import quantize
from edgequant.qparams import QParams, qparams_for
from edgequant.recipes.decisions import QuantPlan

#: Modes whose plans quantize embedding tables (static plans keep Gather on floats).
TABLE_MODES = ("dynamic", "weight_only")


def quantize_gathers(model: onnx.ModelProto, plan: QuantPlan,
                     weight_qparams: dict[str, QParams] | None = None
                     ) -> tuple[onnx.ModelProto, dict[str, QParams]]:
    """Rewrite planned embedding Gathers; returns the model and the table qparams."""
    info = GraphInfo.build(model)
    weight_qparams = weight_qparams or {}
    decided = {t.tensor: t for t in plan.quantized("weight") if t.mode in TABLE_MODES}
    g = model.graph
    used: dict[str, QParams] = {}
    new_inits: dict[str, onnx.TensorProto] = {}
    nodes: list[onnx.NodeProto] = []
    for node in g.node:
        table = node.input[0] if node.input else ""
        if node.op_type != "Gather" or table not in decided:
            nodes.append(node)
            continue
        stem = tensor_stem(table)
        if table not in used:
            values = info.const_array(table).astype(np.float32)  # (V, D)
            qp = weight_qparams.get(table) or qparams_for(values, decided[table].spec)
            used[table] = qp
            new_inits[table] = int_initializer(quantize(values, qp), qp.qtype.onnx_dtype,
                                               f"{stem}_quantized")
            new_inits[f"{table}#scale"] = numpy_helper.from_array(
                qp.scale.reshape(-1, 1).astype(np.float32), f"{stem}_row_scale")  # (V, 1)
        y = node.output[0]
        p = f"{(node.name or y)}".replace("/", "_")
        nodes += [
            helper.make_node("Gather", [f"{stem}_quantized", node.input[1]], [f"{p}_rows_q"],
                             axis=0, name=f"{p}_GatherRows"),
            helper.make_node("Gather", [f"{stem}_row_scale", node.input[1]], [f"{p}_scale"],
                             axis=0, name=f"{p}_GatherScale"),
            helper.make_node("Cast", [f"{p}_rows_q"], [f"{p}_rows_f"], to=onnx.TensorProto.FLOAT,
                             name=f"{p}_Cast"),
            helper.make_node("Mul", [f"{p}_rows_f", f"{p}_scale"], [y], name=f"{p}_Mul"),
        ]
    del g.node[:]
    g.node.extend(nodes)
    still = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in still]
    del g.initializer[:]
    g.initializer.extend(keep + list(new_inits.values()))
    return model, used
