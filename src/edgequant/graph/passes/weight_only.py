"""Weight-only quantization: integer weights in the file, float compute.

Two layouts, each chosen so onnxruntime runs the result at least as fast as float:

- MatMul / Gemm: ``DequantizeLinear(W_q (K, N), blocked on K) → MatMul``. onnxruntime fuses
  this pattern into its 4-bit ``MatMulNBits`` kernel (measured here: 5x faster than the fp32
  MatMul for a 2048×1024 weight). A Gemm is rewritten to MatMul (+ Add of its bias) for it.
- Conv (and any weight under the dynamic recipe): ``Cast(W_q) → Mul(scale) → Reshape``.
  onnxruntime never constant-folds DequantizeLinear (it keeps it for QDQ fusion), which would
  dequantize the weights on every run and stop the conv from pre-packing them (measured: 80x
  slower); Cast and Mul on constants are folded once at session start instead.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgequant.graph.contract import tensor_stem
from edgequant.graph.info import GraphInfo, attr
from edgequant.graph.passes.qdq_nodes import dequantized_constant, int_initializer
from edgequant.primitives import quantize
from edgequant.qparams import QParams, qparams_for
from edgequant.recipes.decisions import QuantPlan
from edgequant.spec import PerChannel, PerGroup


def dequantize_weights(model: onnx.ModelProto, plan: QuantPlan, names: list[str] | None = None,
                       weight_qparams: dict[str, QParams] | None = None,
                       cast_mul: frozenset[str] = frozenset()
                       ) -> tuple[onnx.ModelProto, dict[str, QParams]]:
    """Replace each planned weight (or only ``names``) by integer storage + decompression.

    Weights named in ``cast_mul`` use the Cast/Mul layout even under a MatMul / Gemm. In a
    mixed plan the caller names the weights of this pass's nodes (``names``).
    """
    info = GraphInfo.build(model)
    weight_qparams = weight_qparams or {}
    todo = {t.tensor: t for t in plan.quantized("weight") if names is None or t.tensor in names}
    used: dict[str, QParams] = {}
    head: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    rename: dict[str, str] = {}
    out_nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        w = node.input[1] if len(node.input) > 1 else ""
        if w not in todo or (w in rename and node.op_type != "Gemm"):
            out_nodes.append(node)
            continue
        spec = todo[w].spec
        values = info.const_array(w).astype(np.float32)
        stem = tensor_stem(w)
        if node.op_type == "Conv" or w in cast_mul:
            axis = 0 if node.op_type == "MatMul" else 1  # the weight's input (reduction) axis
            spec = _input_group_spec(spec, values.shape[axis], axis, node.op_type)
            qp = weight_qparams.get(w) or qparams_for(values, spec)
            new, nodes = cast_mul_constant(values, qp, stem, f"{stem}_dequantized")
            out_nodes.append(node)
        elif node.op_type == "Gemm" and attr(node, "transB", 0):
            values = values.T  # (K, N): MatMulNBits wants blocks along K of a MatMul weight
            spec = _matmul_spec(spec)
            qp = weight_qparams.get(w) or qparams_for(values, spec)
            new, dq = dequantized_constant(values, qp, f"{stem}_t", f"{stem}_t_dequantized",
                                           omit_zero_point=True)
            nodes = [dq]
            out_nodes += gemm_as_matmul(node, f"{stem}_t_dequantized")
            rename[w] = f"{stem}_t_dequantized"
            head += nodes
            inits += new
            used[w] = qp
            continue
        else:
            spec = _matmul_spec(spec)
            qp = weight_qparams.get(w) or qparams_for(values, spec)
            new, dq = dequantized_constant(values, qp, stem, f"{stem}_dequantized",
                                           omit_zero_point=True)
            nodes = [dq]
            out_nodes.append(node)
        head += nodes
        inits += new
        rename[w] = f"{stem}_dequantized"
        used[w] = qp
    g = model.graph
    for node in out_nodes:
        for i, inp in enumerate(node.input):
            if inp in rename:
                node.input[i] = rename[inp]
    del g.node[:]
    g.node.extend([*head, *out_nodes])
    still = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name not in rename or t.name in still]
    del g.initializer[:]
    g.initializer.extend(keep + inits)
    return model, used


def _matmul_spec(spec):
    """Per-channel → columns of (K, N); groups → blocks along K (axis 0)."""
    g = spec.granularity
    if isinstance(g, PerGroup):
        return replace(spec, granularity=PerGroup(0, g.size))
    if isinstance(g, PerChannel):
        return replace(spec, granularity=PerChannel(1))
    return spec


def _input_group_spec(spec, n: int, axis: int, op_type: str):
    """Groups of the input axis that divide its ``n`` evenly (so blocks reshape); per-channel
    specs point at the output axis of ``op_type``'s weight."""
    g = spec.granularity
    if isinstance(g, PerChannel):
        return replace(spec, granularity=PerChannel(1 if op_type == "MatMul" else 0))
    if not isinstance(g, PerGroup):
        return spec
    size = g.size if n % g.size == 0 else (n if n <= g.size else math.gcd(n, g.size))
    return replace(spec, granularity=PerGroup(axis, size))


def unfused_dequantize_weights(model: onnx.ModelProto) -> set[str]:
    """Weights whose DequantizeLinear onnxruntime keeps in its optimized graph (it would
    dequantize them on every run): ask onnxruntime itself rather than guess its rules."""
    import os
    import tempfile

    from edgequant.runtime.sessions import ort_session

    dq_of = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "optimized.onnx")
        ort_session(model, optimization="extended", optimized_model_path=path)
        optimized = onnx.load(path, load_external_data=False)
    left = {n.output[0] for n in optimized.graph.node if n.op_type == "DequantizeLinear"}
    return {dq_of[o] for o in left if o in dq_of}


def gemm_as_matmul(node: onnx.NodeProto, weight_kn: str) -> list[onnx.NodeProto]:
    """``Gemm(A, B^T, C)`` (alpha = beta = 1, transA = 0) as ``MatMul(A, W) (+ C)``."""
    y = node.output[0]
    has_bias = len(node.input) > 2 and node.input[2]
    mm_out = f"{y}_matmul" if has_bias else y
    nodes = [helper.make_node("MatMul", [node.input[0], weight_kn], [mm_out],
                              name=f"{node.name or y}_MatMul")]
    if has_bias:
        nodes.append(helper.make_node("Add", [mm_out, node.input[2]], [y],
                                      name=f"{node.name or y}_AddBias"))
    return nodes


def cast_mul_constant(values: np.ndarray, qp: QParams, stem: str, out_name: str
                      ) -> tuple[list[onnx.TensorProto], list[onnx.NodeProto]]:
    """Integer storage decompressed by ``Cast → Mul(scale) [→ Reshape]`` (symmetric only).

    Blocked weights are stored with the block as its own axis, ``(..., n/size, size, ...)``,
    so one broadcasting Mul applies the scales; a Reshape restores the original shape.
    """
    assert not np.any(qp.zero_point), "cast/mul decompression is for symmetric weights"
    q = quantize(values, qp)  # same shape as values, integer container
    scale = np.asarray(qp.scale, np.float32)
    g = qp.granularity
    shape = values.shape
    if isinstance(g, PerGroup):
        ax = g.axis % values.ndim
        blocks = shape[ax] // g.size
        split = (*shape[:ax], blocks, g.size, *shape[ax + 1:])
        q = q.reshape(split)  # (..., blocks, size, ...)
        scale = scale.reshape((*shape[:ax], blocks, 1, *shape[ax + 1:]))
    elif isinstance(g, PerChannel) and scale.ndim:
        scale = scale.reshape([-1 if i == g.axis % values.ndim else 1
                               for i in range(values.ndim)])
    qinit = int_initializer(q, qp.qtype.onnx_dtype, f"{stem}_quantized")
    sinit = numpy_helper.from_array(scale, f"{stem}_scale")
    reshaped = q.shape != shape
    mul_out = f"{stem}_scaled" if reshaped else out_name
    nodes = [helper.make_node("Cast", [qinit.name], [f"{stem}_float"], to=onnx.TensorProto.FLOAT,
                              name=f"{stem}_Cast"),
             helper.make_node("Mul", [f"{stem}_float", sinit.name], [mul_out], name=f"{stem}_Mul")]
    inits = [qinit, sinit]
    if reshaped:
        shp = numpy_helper.from_array(np.array(shape, np.int64), f"{stem}_shape")
        inits.append(shp)
        nodes.append(helper.make_node("Reshape", [mul_out, shp.name], [out_name],
                                      name=f"{stem}_Reshape"))
    return inits, nodes
