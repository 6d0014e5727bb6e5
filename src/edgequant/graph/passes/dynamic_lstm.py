"""Planned LSTM nodes → com.microsoft ``DynamicQuantizeLSTM`` (int8 weights, run-time
activation quantization inside onnxruntime's kernel), the layout onnxruntime's own
``quantize_dynamic`` writes:

    W (D, 4·H, I) float → W_q (D, I, 4·H) int8, W_scale / W_zero_point (D, 4·H)
    R (D, 4·H, H) float → R_q (D, H, 4·H) int8, R_scale / R_zero_point (D, 4·H)

one symmetric scale per gate row and direction. Every other input and attribute is kept
(``layout`` is dropped: only 0 is planned). The interpreter's kernel is
:mod:`edgequant.interp.ops.rnn_quant`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgequant.graph.contract import tensor_stem
from edgequant.graph.info import GraphInfo
from edgequant.primitives import quantize
from edgequant.qparams import QParams, qparams_for
from edgequant.recipes.decisions import QuantPlan
from edgequant.spec import PerChannel

MS_DOMAIN = "com.microsoft"


def _quantize_dirs(w: np.ndarray, spec) -> tuple[np.ndarray, np.ndarray, QParams]:
    """(W_q (D, K, 4·H) int8 transposed, scales (D, 4·H), qparams over (D·4·H, K) rows)."""
    d, rows, k = w.shape
    flat = w.reshape(d * rows, k)  # (D·4H, K): one scale per gate row of each direction
    qp = qparams_for(flat, replace(spec, granularity=PerChannel(0)))
    q = quantize(flat, qp).reshape(d, rows, k)  # (D, 4H, K) int8
    return np.ascontiguousarray(q.transpose(0, 2, 1)), qp.scale.reshape(d, rows), qp


def dynamic_lstms(model: onnx.ModelProto, plan: QuantPlan
                  ) -> tuple[dict[str, QParams], set[str]]:
    """Rewrite planned LSTM nodes in place; returns (weight qparams, rewritten weights)."""
    decided = {t.tensor: t for t in plan.quantized("weight", mode="dynamic")}
    lstms = [n for n in model.graph.node if n.op_type == "LSTM" and n.domain in ("", "ai.onnx")
             and len(n.input) > 2 and n.input[1] in decided and n.input[2] in decided]
    if not lstms:
        return {}, set()
    info = GraphInfo.build(model)
    used: dict[str, QParams] = {}
    nodes = list(model.graph.node)
    for node in lstms:
        stem = tensor_stem(node.name or node.output[0])
        names = []
        for tag, wname in (("W", node.input[1]), ("R", node.input[2])):
            wq, scale, qp = _quantize_dirs(info.const_array(wname).astype(np.float32),
                                           decided[wname].spec)
            used[wname] = qp
            model.graph.initializer.extend([
                numpy_helper.from_array(wq.astype(np.int8), f"{stem}_{tag}_quantized"),
                numpy_helper.from_array(scale.astype(np.float32), f"{stem}_{tag}_scale"),
                numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{stem}_{tag}_zero_point"),
            ])
            names.append(f"{stem}_{tag}")
        rest = [*node.input[3:8], *[""] * (8 - max(len(node.input), 3))][:5]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name != "layout"}
        new = helper.make_node(
            "DynamicQuantizeLSTM",
            [node.input[0], f"{names[0]}_quantized", f"{names[1]}_quantized", *rest,
             f"{names[0]}_scale", f"{names[0]}_zero_point", f"{names[1]}_scale",
             f"{names[1]}_zero_point"],
            list(node.output), name=node.name, domain=MS_DOMAIN, **attrs)
        nodes[nodes.index(node)] = new
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    still = {i for n in model.graph.node for i in n.input}
    keep = [t for t in model.graph.initializer if t.name in still]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return used, set(used)
