"""Dynamic-range quantization of MatMul / Gemm with per-row activation scales.

For ``Y = A·W (+ C)`` with constant ``W (K, N)``::

    s_row = max(|A|, axis=-1) / 127                           # (..., 1) float32, at run time
    A_q   = QuantizeLinear(A, s_row, 128, block_size=K)       # (..., K) uint8, one block per row
    Y_col = MatMulIntegerToFloat(A_q, W_q, 1, s_w, 128)       # (..., N) float32(acc) · s_w
    Y     = Y_col · s_row (+ C)                               # (..., N) float32

A per-row scale follows each token's own range — the single per-tensor scale of other tools
is what loses accuracy on transformers, whose activations carry large per-token outliers.
The uint8 storage with a fixed zero point 128 keeps onnxruntime's fast u8×s8 kernel (its
s8×s8 path is ~10x slower on x86). Rows that share an input (Q, K and V projections) share
one quantization of it.

Layout chosen by measuring (``bench/dynamic_speed.py``, onnxruntime profiles of
all-MiniLM-L6-v2): a blocked ``QuantizeLinear`` (opset 21, block = the whole row) replaces the
Div → Round → Add → Clip → Cast chain, and com.microsoft ``MatMulIntegerToFloat`` (per-column
``b_scale``) replaces MatMulInteger → Cast → Mul; only the per-row Mul stays outside the
kernel, since ``MatMulIntegerToFloat``'s ``a_scale`` is per tensor or per column of A, never
per row. The zero point 128 must have the scale's run-time shape: ``ConstantOfShape`` of it.

Against onnxruntime's ``quantize_dynamic`` (all-MiniLM-L6-v2, 1 thread, 2026-12-02, kernel
ms summed from onnxruntime profiles, batch 1 / 16; end-to-end in ``bench/transformer_int8.py``):

| kernels                                   | edgequant w8_dynamic | onnxruntime dynamic   |
|-------------------------------------------|----------------------|-----------------------|
| int8 GEMMs (Q/K/V/O, FFN in/out)          | 4.4 / 129 (MI2F ×36) | 4.9 / 162 (DQMatMul ×18 + MI2F ×18) |
| per-row scale chain + row Mul             | ~1.5 / ~35           | — (per tensor)        |
| Add + LayerNorm vs SkipLayerNormalization | 1.2 / 28             | 2.8 / 92              |
| all kernels                               | 11.3 / 369           | 12.1 / 406            |

Where the time goes: the GEMMs cost the same; the per-row quantization (Abs, ReduceMax and
the row Mul) is what per-row accuracy costs, and onnxruntime loses more than that in its
fused SkipLayerNormalization (slow at 1 thread here), which does not form in this graph.
Per-tensor activations where per-row buys nothing were measured too (cosine of MiniLM
embeddings to fp32, 200 held-out docstrings; per-row everywhere 0.9976): per-tensor Q/K/V
input 0.9977, O input 0.9975, FFN-in 0.9957, FFN-out 0.9950, Q/K/V + O 0.9977; Q/K/V + O per
tensor ran no faster (b1 2.34x vs 2.35x fp32, b16 2.02x vs 2.09x), so every input stays per
row. onnxruntime's 8-bit ``MatMulNBits`` (per-block int8 activations inside the kernel) ran
at 1.27x / 1.08x fp32: slower than this layout.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgequant.graph.contract import tensor_stem
from edgequant.graph.info import GraphInfo, attr
from edgequant.graph.passes.dynamic_lstm import MS_DOMAIN, dynamic_lstms
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
        numpy_helper.from_array(np.float32(1.0), "dynq_one"),
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
            row_cache[a] = _row_quant(a, stem, w.shape[0], out_nodes)
        aq, s_row = row_cache[a]
        y1 = f"{stem}_colscaled"
        y = node.output[0]
        has_bias = node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]
        y2 = f"{stem}_nobias" if has_bias else y
        out_nodes += [
            helper.make_node("MatMulIntegerToFloat",
                             [aq, f"{stem}_W_quantized", "dynq_one", f"{stem}_W_scale", "dynq_zp"],
                             [y1], name=f"{stem}_MatMulIntegerToFloat", domain=MS_DOMAIN),
            helper.make_node("Mul", [y1, s_row], [y2], name=f"{stem}_MulRow"),
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
    if done and not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    lstm_used, lstm_done = dynamic_lstms(model, plan)
    used.update(lstm_used)
    return model, used, done | lstm_done


def _row_quant(a: str, stem: str, k: int, nodes: list[onnx.NodeProto]) -> tuple[str, str]:
    """Nodes computing the per-row uint8 quantization of ``a`` (last dim ``k``); returns
    (A_q, s_row)."""
    p = f"{stem}_in"
    zp128 = numpy_helper.from_array(np.array([128], np.uint8))
    nodes += [
        helper.make_node("Abs", [a], [f"{p}_abs"], name=f"{p}_Abs"),
        helper.make_node("ReduceMax", [f"{p}_abs", "dynq_axes_last"], [f"{p}_amax"],
                         keepdims=1, name=f"{p}_ReduceMax"),  # (..., 1)
        helper.make_node("Max", [f"{p}_amax", "dynq_tiny"], [f"{p}_amax_safe"], name=f"{p}_Max"),
        helper.make_node("Div", [f"{p}_amax_safe", "dynq_127"], [f"{p}_scale"],
                         name=f"{p}_Scale"),  # (..., 1) float32
        helper.make_node("Shape", [f"{p}_scale"], [f"{p}_scale_shape"], name=f"{p}_Shape"),
        helper.make_node("ConstantOfShape", [f"{p}_scale_shape"], [f"{p}_zero_point"],
                         value=zp128, name=f"{p}_ZeroPoint"),  # (..., 1) uint8 128
        helper.make_node("QuantizeLinear", [a, f"{p}_scale", f"{p}_zero_point"],
                         [f"{p}_quantized"], axis=-1, block_size=int(k),
                         name=f"{p}_QuantizeLinear"),  # (..., K) uint8
    ]
    return f"{p}_quantized", f"{p}_scale"
