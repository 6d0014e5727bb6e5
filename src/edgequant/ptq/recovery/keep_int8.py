"""Mixed bit widths for low-bit weights: the layers 4-bit PTQ papers keep at 8 bits.

AdaRound and BRECQ report W4A8 ImageNet numbers with the first convolution and the last
linear layer at 8 bits: the first sees raw pixels through 3 input channels (few weights, each
carrying much signal), the last maps features to logits directly. Depthwise convolutions
hold 9 weights per channel, so one 4-bit rounding step is a large part of each channel, and
they are a small share of a MobileNet-style model's weights. The ``w4_keep_int8`` recipe
option names which of these groups stay at 8 bits; it is applied as one extra recipe rule
(so the plan, the report and every exporter see an ordinary per-layer mix).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import onnx

from edgequant.graph.info import GraphInfo, attr
from edgequant.recipes.decisions import QuantPlan
from edgequant.recipes.recipe import Recipe, Rule
from edgequant.spec import QType

log = logging.getLogger(__name__)

#: The ``w4_keep_int8`` values, and what each keeps at 8 bits.
CHOICES = ("none", "first_last", "first_last_depthwise")

RULE_NAME = "w4_keep_int8"


def _depthwise(info: GraphInfo, node: onnx.NodeProto) -> bool:
    """A Conv whose every group has one input channel (``group == C_in``, ``group > 1``)."""
    if node.op_type != "Conv" or not info.is_constant(node.input[1]):
        return False
    group = int(attr(node, "group", 1))
    return group > 1 and info.constants[node.input[1]].dims[1] == 1


def int8_layers(model: onnx.ModelProto, plan: QuantPlan, which: str) -> list[str]:
    """Nodes ``which`` keeps at 8 bits among those the plan quantizes statically with
    constant weights of fewer than 8 bits (graph order)."""
    if which not in CHOICES:
        raise ValueError(f"w4_keep_int8={which!r} is not allowed: use one of {list(CHOICES)}")
    if which == "none":
        return []
    info = GraphInfo.build(model)
    low = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        d = plan.tensors.get(node.input[1])
        if (d is None or d.role != "weight" or d.action != "quantize" or d.mode != "static"
                or d.spec is None or d.spec.qtype.bits >= 8):
            continue
        low.append(node)
    if not low:
        return []
    keep = [low[0], low[-1]]
    if which == "first_last_depthwise":
        keep += [n for n in low if _depthwise(info, n)]
    names = {n.name or n.output[0] for n in keep}
    return [n.name or n.output[0] for n in low if (n.name or n.output[0]) in names]


def with_int8_layers(model: onnx.ModelProto, plan: QuantPlan, recipe: Recipe) -> Recipe:
    """``recipe`` with a last rule giving the layers its ``w4_keep_int8`` option names 8-bit
    weights (same granularity and symmetry), or ``recipe`` itself when there are none."""
    from edgequant.recipes.options import option

    nodes = int8_layers(model, plan, option(recipe, RULE_NAME))
    if not nodes or recipe.weights is None:
        return recipe
    qt = recipe.weights.qtype
    spec = replace(recipe.weights, qtype=QType(8, qt.signed, narrow_range=qt.narrow_range))
    log.info("%s: %d layer(s) keep 8-bit weights", RULE_NAME, len(nodes))
    return recipe.with_rules(Rule(nodes=tuple(nodes), weights=spec, name=RULE_NAME))
