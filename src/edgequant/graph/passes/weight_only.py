"""Weight-only quantization: integer weights read through DequantizeLinear, float compute.

Used by ``w4a16_g128`` (int4, blocked) and by the dynamic recipe for convolutions
(onnxruntime has no fast dynamic int8 convolution, so conv weights are stored int8 and
dequantized once at session start)."""

from __future__ import annotations

import numpy as np
import onnx

from edgequant.graph.info import GraphInfo
from edgequant.graph.passes.qdq_nodes import dequantized_constant
from edgequant.qparams import QParams, qparams_for
from edgequant.recipes.plan import QuantPlan


def dequantize_weights(model: onnx.ModelProto, plan: QuantPlan, names: list[str] | None = None,
                       weight_qparams: dict[str, QParams] | None = None
                       ) -> tuple[onnx.ModelProto, dict[str, QParams]]:
    """Replace each planned weight (or only ``names``) by integer storage + DequantizeLinear."""
    info = GraphInfo.build(model)
    weight_qparams = weight_qparams or {}
    todo = [t for t in plan.quantized("weight") if names is None or t.tensor in names]
    used: dict[str, QParams] = {}
    head, inits, rename = [], [], {}
    for d in todo:
        values = info.const_array(d.tensor).astype(np.float32)
        qp = weight_qparams.get(d.tensor) or qparams_for(values, d.spec)
        stem = d.tensor.replace("/", "_").replace(":", "_")
        new, node = dequantized_constant(values, qp, stem, f"{stem}_dequantized",
                                         omit_zero_point=True)
        inits += new
        head.append(node)
        rename[d.tensor] = f"{stem}_dequantized"
        used[d.tensor] = qp
    g = model.graph
    for node in g.node:
        for i, inp in enumerate(node.input):
            if inp in rename:
                node.input[i] = rename[inp]
    nodes = [*head, *g.node]
    del g.node[:]
    g.node.extend(nodes)
    keep = [t for t in g.initializer if t.name not in rename]
    del g.initializer[:]
    g.initializer.extend(keep + inits)
    return model, used
