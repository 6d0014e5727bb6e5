"""Float rewrites that give onnxruntime-integer ops to what exporters write in other forms.

onnxruntime has no integer kernel for ``Sum``, ``Div`` or ``BatchNormalization`` (its QDQ
optimizer leaves them on floats), but has QLinearAdd / QLinearMul. So, in float preparation:

- ``Sum(a, b, c, ...)`` → ``Add(Add(a, b), c) ...``: the same sum, to float32 rounding of
  the association (onnxruntime's Sum kernel may add in another order: ≤ 1 ulp);
- ``Div(x, c)`` with a constant, finite, non-zero ``c`` → ``Mul(x, 1/c)``. Decision: rewritten
  even when ``1/c`` is not exact in float32 (``x / 6``): the product differs from the
  quotient by at most one unit in the last place (≈ 6e-8 relative), far below any 8- or
  16-bit quantization step, and the Mul then runs as QLinearMul;
- a ``BatchNormalization`` no Conv absorbed (inference form, constant parameters) →
  ``Mul(x, γ/√(σ²+ε)) + (β − μ·γ/√(σ²+ε))`` per channel (axis 1): the same affine map, to
  float32 rounding of the folded parameters.

Nodes whose tensors a subgraph reads are left alone (renaming them would break it).
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgequant.graph.info import GraphInfo, attr
from edgequant.graph.passes.normalize import subgraph_references

log = logging.getLogger(__name__)


def _const(model: onnx.ModelProto, name: str, value: np.ndarray) -> str:
    model.graph.initializer.append(numpy_helper.from_array(value, name))
    return name


def _sum_chain(node: onnx.NodeProto) -> list[onnx.NodeProto]:
    label = node.name or node.output[0]
    ins = [i for i in node.input if i]
    if len(ins) == 1:
        return [helper.make_node("Identity", ins, [node.output[0]], name=label)]
    out, acc = [], ins[0]
    for k, x in enumerate(ins[1:], start=1):
        last = k == len(ins) - 1
        y = node.output[0] if last else f"{label}_partial{k}"
        out.append(helper.make_node("Add", [acc, x], [y], name=label if last else f"{label}_add{k}"))
        acc = y
    return out


def _div_to_mul(model, node, info: GraphInfo) -> list[onnx.NodeProto] | None:
    if not info.is_constant(node.input[1]) or not info.is_float(node.input[1]):
        return None
    c = info.const_array(node.input[1])
    if not np.all(np.isfinite(c)) or np.any(c == 0):
        return None
    label = node.name or node.output[0]
    inv = _const(model, f"{label}_reciprocal", (1.0 / c.astype(np.float64)).astype(c.dtype))
    return [helper.make_node("Mul", [node.input[0], inv], [node.output[0]], name=label)]


def _bn_to_affine(model, node, info: GraphInfo, ranks: dict[str, int]) -> list[onnx.NodeProto] | None:
    if (len(node.output) > 1 and any(node.output[1:])) or attr(node, "training_mode", 0):
        return None
    if not all(info.is_constant(i) for i in node.input[1:5]) or node.input[0] not in ranks:
        return None
    gamma, beta, mean, var = (info.const_array(i).astype(np.float64) for i in node.input[1:5])
    k = gamma / np.sqrt(var + attr(node, "epsilon", 1e-5))  # (C,)
    shift = beta - mean * k  # (C,)
    shape = (-1, *[1] * (ranks[node.input[0]] - 2))  # broadcast over (N, C, ...)
    label = node.name or node.output[0]
    scale_name = _const(model, f"{label}_scale", k.reshape(shape).astype(np.float32))
    shift_name = _const(model, f"{label}_shift", shift.reshape(shape).astype(np.float32))
    return [helper.make_node("Mul", [node.input[0], scale_name], [f"{label}_scaled"],
                             name=f"{label}_mul"),
            helper.make_node("Add", [f"{label}_scaled", shift_name], [node.output[0]],
                             name=f"{label}_add")]


def tensor_ranks(model: onnx.ModelProto) -> dict[str, int]:
    """Rank of every tensor shape inference can type (non-strict)."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    vis = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    return {v.name: len(v.type.tensor_type.shape.dim) for v in vis
            if v.type.tensor_type.HasField("shape")}


def integer_forms(model: onnx.ModelProto, notes: list[str] | None = None) -> onnx.ModelProto:
    """Rewrite Sum / Div-by-constant / lone BatchNormalization (module docstring); in place."""
    ops = {"Sum", "Div", "BatchNormalization"}
    if not any(n.op_type in ops for n in model.graph.node):
        return model
    info = GraphInfo.build(model)
    keep = subgraph_references(model)
    ranks = tensor_ranks(model) if any(n.op_type == "BatchNormalization" for n in model.graph.node) else {}
    out: list[onnx.NodeProto] = []
    for node in model.graph.node:
        new = None
        if node.domain in ("", "ai.onnx") and not any(t in keep for t in (*node.input, *node.output)):
            if node.op_type == "Sum" and len([i for i in node.input if i]) >= 1:
                new = _sum_chain(node)
            elif node.op_type == "Div" and len(node.input) == 2:
                new = _div_to_mul(model, node, info)
            elif node.op_type == "BatchNormalization":
                new = _bn_to_affine(model, node, info, ranks)
        if new is None:
            out.append(node)
            continue
        out.extend(new)
        note = (f"{node.op_type} '{node.name or node.output[0]}' rewritten as "
                f"{' → '.join(n.op_type for n in new)} (integer kernels in onnxruntime)")
        log.info(note)
        if notes is not None:
            notes.append(note)
    del model.graph.node[:]
    model.graph.node.extend(out)
    return model
