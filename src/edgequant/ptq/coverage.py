"""Does a plan quantize what matters? Warnings when nothing, or not most of the compute, is.

The compute of a model is its Conv / Gemm / MatMul multiply-accumulates (MACs). A plan that
quantizes no node, or leaves more than half of those MACs in float, is almost never what
the user wanted; the warning names the float nodes with the most MACs and why they stayed
float. Under ``strict`` it is an error.
"""

from __future__ import annotations

import logging
import math

import onnx

from edgequant.errors import UnsupportedOpError
from edgequant.graph.contract import WEIGHTED_OPS
from edgequant.graph.info import attr
from edgequant.graph.passes.normalize import subgraph_nodes
from edgequant.recipes.plan import QuantPlan

log = logging.getLogger(__name__)

#: Above this share of Conv/Gemm/MatMul MACs left float, the plan gets a warning.
MAX_FLOAT_MAC_SHARE = 0.5
#: Float nodes named in a warning (the ones with the most MACs).
NAMED_NODES = 3


def node_macs(model: onnx.ModelProto) -> dict[str, int]:
    """MACs per sample of every Conv/Gemm/MatMul (subgraph nodes by their plan path); symbolic
    dims count as 1; nodes whose shapes cannot be inferred are left out."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # shape inference is best effort
        inferred = model
    shapes = _shapes(inferred.graph)
    out: dict[str, int] = {}
    for path, node in [*((n.name or n.output[0], n) for n in inferred.graph.node),
                       *subgraph_nodes(inferred)]:
        if node.op_type not in WEIGHTED_OPS or len(node.input) < 2:
            continue
        y, w = shapes.get(node.output[0]), shapes.get(node.input[1])
        if y is None or w is None:
            continue
        if node.op_type == "Conv":
            k = math.prod(w[1:])  # (O, I/g, kh, kw): MACs per output element
        elif node.op_type == "Gemm":
            k = w[1] if attr(node, "transB", 0) else w[0]
        else:
            k = w[-2] if len(w) >= 2 else w[0]
        out[path] = math.prod(y) * k
    return out


def _shapes(graph: onnx.GraphProto) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for t in graph.initializer:
        shapes[t.name] = tuple(t.dims)
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        tt = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and tt.HasField("shape"):
            shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0
                                    else 1 for d in tt.shape.dim)
    for n in graph.node:
        for a in n.attribute:
            for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                shapes.update(_shapes(g))
    return shapes


def check_coverage(model: onnx.ModelProto, plan: QuantPlan, strict: bool = False) -> list[str]:
    """Warnings (errors under ``strict``) when ``plan`` quantizes no node of ``model`` or
    leaves more than :data:`MAX_FLOAT_MAC_SHARE` of its Conv/Gemm/MatMul MACs float."""
    if plan.recipe.mode in ("none", "fp16"):
        return []  # nothing is meant to be quantized
    warnings = []
    decisions = {d.node: d for d in plan.nodes}
    quantized = [d for d in plan.nodes if d.action == "quantize"]
    if not quantized:
        floats = plan.float_nodes()
        why = "; ".join(f"{d.node} ({d.op_type}): {d.reason}" for d in floats[:NAMED_NODES])
        warnings.append(f"no node quantized by recipe {plan.recipe.name}: "
                        + (why or "the model has no node this recipe quantizes"))
    macs = node_macs(model)
    total = sum(macs.values())
    left = {n: m for n, m in macs.items()
            if n in decisions and decisions[n].action != "quantize"}
    share = sum(left.values()) / total if total else 0.0
    if quantized and share > MAX_FLOAT_MAC_SHARE:
        top = sorted(left, key=left.get, reverse=True)[:NAMED_NODES]
        named = "; ".join(f"{n} ({decisions[n].op_type}): {decisions[n].reason}" for n in top)
        warnings.append(f"{100 * share:.0f}% of the Conv/Gemm/MatMul compute stays float: "
                        f"{named}")
    if warnings and strict:
        raise UnsupportedOpError(f"--strict: {warnings[0]}")
    for w in warnings:
        log.info(w)
    return warnings
