"""The precision each node computes in, read from a ``QuantPlan``: rows for reports.

Labels: ``float``, ``fp16``, ``int8`` (static: weights and activations integer, e.g.
``int8 w8a8``), ``int16`` (16-bit activations: ``int16 w8a16``), ``int4`` (4-bit weights),
with the mode when it is not static (``int8 dynamic``, ``int4 weight-only``). The first
word is the one charts colour by.
"""

from __future__ import annotations

import onnx

from edgequant.recipes.decisions import QuantPlan


def precision_rows(plan: QuantPlan, model: onnx.ModelProto) -> list[dict]:
    """One row per node the plan decided (``quantize`` or ``float``): layer, op, precision."""
    by_name = {n.name: n for n in model.graph.node}
    rows = []
    for d in plan.nodes:
        if d.action == "skip":
            continue
        node = by_name.get(d.node)
        rows.append({"layer": d.node, "op_type": d.op_type,
                     "precision": _label(d, node, plan) if node is not None else d.mode or "float",
                     "rule": d.rule})
    return rows


def _label(d, node: onnx.NodeProto, plan: QuantPlan) -> str:
    if d.action != "quantize":
        return "float"
    if d.mode == "fp16":
        return "fp16"
    wbits = abits = None
    for name in (*node.input, *node.output):
        t = _followed(plan, name)
        if t is None or t.action != "quantize" or t.spec is None:
            continue
        if t.role == "weight":
            wbits = t.spec.qtype.bits
        elif t.role == "activation" and abits is None:
            abits = t.spec.qtype.bits
    if d.mode == "static":
        widest = max(b for b in (wbits, abits, 8) if b is not None)
        first = "int16" if (abits or 0) > 8 else "int4" if (wbits or 8) <= 4 else f"int{min(widest, 8)}"
        parts = ([f"w{wbits}"] if wbits else []) + ([f"a{abits}"] if abits else [])
        return f"{first} {''.join(parts)}".strip()
    bits = wbits or 8
    kind = "int4" if bits <= 4 else "int8"
    return f"{kind} {d.mode.replace('_', '-')}"


def _followed(plan: QuantPlan, name: str):
    """The decision that sets ``name``'s precision: shares lead to the tensor they share with."""
    t = plan.tensors.get(name)
    seen = set()
    while t is not None and t.action == "share" and t.share_with and t.share_with not in seen:
        seen.add(t.share_with)
        t = plan.tensors.get(t.share_with)
    return t
