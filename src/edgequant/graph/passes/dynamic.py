"""Dynamic-range quantization of MatMul / Gemm with per-row activation scales.

For ``Y = A·W (+ C)`` with constant ``W (K, N)``::

    s_row = max(|A|, axis=-1) / 127                        # (..., 1) float32, at run time
    A_q   = clip(round(A / s_row) + 128, 0, 255) as uint8  # symmetric, stored with offset 128
    acc   = MatMulInteger(A_q, W_q, a_zero_point=128)       # (..., N) int32, W_q int8 per column
    Y     = float(acc) · s_row · s_w (+ C)                  # (..., N) float32

A per-row scale follows each token's own range — the single per-tensor scale of other tools
is what loses accuracy on transformers, whose activations carry large per-token outliers.
The uint8 storage with a fixed zero point 128 keeps onnxruntime's fast u8×s8 kernel.
Rows that share an input (Q, K and V projections) share one quantization of it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgequant.graph.contract import tensor_stem
from edgequant.graph.info import GraphInfo, attr
from edgequant.graph.passes.dynamic_lstm import dynamic_lstms
from edgequant.graph.passes.qdq_nodes import int_initializer
from edgequant.primitives import quantize
from edgequant.qparams import QParams, qparams_for
from edgequant.recipes.decisions import QuantPlan
from edgequant.spec import PerChannel

#: Avoids a zero scale for all-zero rows (padding tokens): 0 / tiny = 0, never NaN.
TINY = np.float32(1e-12)


def dynamic_matmuls(model: onnx.ModelProto, plan: QuantPlan,
                    weight_qparams: dict[str, QParams] | None = None
                    ) -> tuple[onnx.ModelProto, dict[str, QParams], set[str]]:
    """Rewrite planned MatMul/Gemm nodes (and LSTMs: :mod:`dynamic_lstm`); returns model,
    weight qparams, rewritten weights."""
    info = GraphInfo.build(model)
    g = model.graph
    weight_qparams = weight_qparams or {}
    decided = {t.tensor: t for t in plan.quantized("weight", mode="dynamic")}
    common = [
        numpy_helper.from_array(np.array([-1], np.int64), "dynq_axes_last"),
        numpy_helper.from_array(TINY, "dynq_tiny"),
        numpy_helper.from_array(np.float32(127.0), "dynq_127"),
        numpy_helper.from_array(np.float32(128.0), "dynq_128"),
        numpy_helper.from_array(np.float32(0.0), "dynq_0"),
        numpy_helper.from_array(np.float32(255.0), "dynq_255"),
        numpy_helper.from_array(np.uint8(128), "dynq_zp"),
    ]
    row_cache: dict[str, tuple[str, str]] = {}
    used: dict[str, QParams] = {}
    out_nodes: list[onnx.NodeProto] = []
    new_inits: list[onnx.TensorProto] = []
    done: set[str] = set()
    for node in g.node:
        if (node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2
                or node.input[1] not in decided):
            out_nodes.append(node)
            continue
        a, wname = node.input[0], node.input[1]
        stem = tensor_stem(node.name or node.output[0])
        w = info.const_array(wname).astype(np.float32)
        if node.op_type == "Gemm" and attr(node, "transB", 0):
            w = w.T  # (K, N)
        spec = replace(decided[wname].spec, granularity=PerChannel(1))  # columns of (K, N)
        qp = weight_qparams.get(wname) or qparams_for(w, spec)
        used[wname] = qp
        wq = quantize(w, qp)  # (K, N) int8
        new_inits.append(int_initializer(wq, qp.qtype.onnx_dtype, f"{stem}_W_quantized"))
        new_inits.append(numpy_helper.from_array(qp.scale.astype(np.float32), f"{stem}_W_scale"))
        if a not in row_cache:
            row_cache[a] = _row_quant(a, stem, out_nodes)
        aq, s_row = row_cache[a]
        acc, accf, y1 = f"{stem}_acc", f"{stem}_accf", f"{stem}_rowscaled"
        y = node.output[0]
        has_bias = node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]
        y2 = f"{stem}_nobias" if has_bias else y
        out_nodes += [
            helper.make_node("MatMulInteger", [aq, f"{stem}_W_quantized", "dynq_zp"], [acc],
                             name=f"{stem}_MatMulInteger"),
            helper.make_node("Cast", [acc], [accf], to=onnx.TensorProto.FLOAT,
                             name=f"{stem}_CastAcc"),
            helper.make_node("Mul", [accf, s_row], [y1], name=f"{stem}_MulRow"),
            helper.make_node("Mul", [y1, f"{stem}_W_scale"], [y2], name=f"{stem}_MulCol"),
        ]
        if has_bias:
            out_nodes.append(helper.make_node("Add", [y2, node.input[2]], [y],
                                              name=f"{stem}_AddBias"))
        done.add(wname)
    del g.node[:]
    g.node.extend(out_nodes)
    still = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in still]
    del g.initializer[:]
    g.initializer.extend(keep + [c for c in common if c.name in still] + new_inits)
    lstm_used, lstm_done = dynamic_lstms(model, plan)
    used.update(lstm_used)
    return model, used, done | lstm_done


def _row_quant(a: str, stem: str, nodes: list[onnx.NodeProto]) -> tuple[str, str]:
    """Nodes computing the per-row uint8 quantization of ``a``; returns (A_q, s_row)."""
    p = f"{stem}_in"
    nodes += [
        helper.make_node("Abs", [a], [f"{p}_abs"], name=f"{p}_Abs"),
        helper.make_node("ReduceMax", [f"{p}_abs", "dynq_axes_last"], [f"{p}_amax"],
                         keepdims=1, name=f"{p}_ReduceMax"),
        helper.make_node("Max", [f"{p}_amax", "dynq_tiny"], [f"{p}_amax_safe"], name=f"{p}_Max"),
        helper.make_node("Div", [f"{p}_amax_safe", "dynq_127"], [f"{p}_scale"],
                         name=f"{p}_Scale"),
        helper.make_node("Div", [a, f"{p}_scale"], [f"{p}_scaled"], name=f"{p}_Div"),
        helper.make_node("Round", [f"{p}_scaled"], [f"{p}_rounded"], name=f"{p}_Round"),
        helper.make_node("Add", [f"{p}_rounded", "dynq_128"], [f"{p}_shifted"], name=f"{p}_Add"),
        helper.make_node("Clip", [f"{p}_shifted", "dynq_0", "dynq_255"], [f"{p}_clipped"],
                         name=f"{p}_Clip"),
        helper.make_node("Cast", [f"{p}_clipped"], [f"{p}_quantized"], to=onnx.TensorProto.UINT8,
                         name=f"{p}_Cast"),
    ]
    return f"{p}_quantized", f"{p}_scale"
