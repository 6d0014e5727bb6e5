"""Mixed bit widths for low-bit weights: the layers 4-bit PTQ papers keep at 8 bits.

AdaRound and BRECQ report W4A8 ImageNet numbers with the first convolution and the last
linear layer at 8 bits: the first sees raw pixels through 3 input channels (few weights, each
carrying much signal), the last maps features to logits directly. Depthwise convolutions
hold 9 weights per channel, so one 4-bit rounding step is a large part of each channel, and
they are a small share of a MobileNet-style model's weights. The ``w4_keep_int8`` recipe
option names which of these groups stay at 8 bits, or ``sensitivity``: the layers whose int4
weights measurably hurt the model output most per weight byte, within the ``w4_int8_budget``
(:mod:`.sensitivity_int8`). Either way it is applied as one extra recipe rule (so the plan,
the report and every exporter see an ordinary per-layer mix), and ``report["w4_keep_int8"]``
lists the layers kept and the weight bytes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import onnx

from edgequant.analysis.layers import literal
from edgequant.graph.info import GraphInfo, attr
from edgequant.ptq.recovery.low_bit import low_bit_layers, weight_bytes
from edgequant.recipes.decisions import QuantPlan
from edgequant.recipes.recipe import Recipe, Rule
from edgequant.spec import QType

log = logging.getLogger(__name__)

#: The ``w4_keep_int8`` values, and what each keeps at 8 bits.
CHOICES = ("none", "first_last", "first_last_depthwise", "sensitivity")

RULE_NAME = "w4_keep_int8"


def _depthwise(info: GraphInfo, node: onnx.NodeProto) -> bool:
    """A Conv whose every group has one input channel (``group == C_in``, ``group > 1``)."""
    if node.op_type != "Conv" or not info.is_constant(node.input[1]):
        return False
    group = int(attr(node, "group", 1))
    return group > 1 and info.constants[node.input[1]].dims[1] == 1


def int8_layers(model: onnx.ModelProto, plan: QuantPlan, which: str) -> list[str]:
    """Nodes the rule-of-thumb choice ``which`` keeps at 8 bits among
    :func:`low_bit_layers` (graph order). ``sensitivity`` needs data: see
    :func:`with_int8_layers`."""
    if which not in CHOICES:
        raise ValueError(f"w4_keep_int8={which!r} is not allowed: use one of {list(CHOICES)}")
    if which == "sensitivity":
        raise ValueError("w4_keep_int8='sensitivity' measures the layers on calibration data: "
                         "use with_int8_layers (or edgequant.quantize)")
    if which == "none":
        return []
    info = GraphInfo.build(model)
    low = low_bit_layers(model, plan)
    if not low:
        return []
    keep = [low[0], low[-1]]
    if which == "first_last_depthwise":
        keep += [n for n in low if _depthwise(info, n)]
    names = {n.name or n.output[0] for n in keep}
    return [n.name or n.output[0] for n in low if (n.name or n.output[0]) in names]


def size_report(model: onnx.ModelProto, plan: QuantPlan, nodes: list[str]) -> dict[str, int]:
    """Weight bytes of the low-bit layers all at their bits, all at 8 bits, and with ``nodes``
    at 8 bits (scales, zero points and biases not counted: they do not change)."""
    info = GraphInfo.build(model)
    low, kept = 0, 0
    high = 0
    for node in low_bit_layers(model, plan):
        n = int(np.prod(tuple(info.constants[node.input[1]].dims), dtype=np.int64))
        bits = plan.tensors[node.input[1]].spec.qtype.bits
        low += weight_bytes(n, bits)
        high += weight_bytes(n, 8)
        kept += weight_bytes(n, 8 if (node.name or node.output[0]) in nodes else bits)
    return {"all_low_bit": low, "all_int8": high, "chosen": kept}


@dataclass
class KeptInt8:
    """What :func:`with_int8_layers` hands back to ``quantize``."""

    recipe: Recipe
    #: the calibration data, re-iterable when the sensitivity measurement read it
    calibration: Any
    #: ``report["w4_keep_int8"]``: mode, layers kept, weight bytes (None for ``none``)
    report: dict[str, Any] | None = None


def with_int8_layers(model: onnx.ModelProto, plan: QuantPlan, recipe: Recipe,
                     calibration: Any = None, *, batch_size: int = 32,
                     batch_axes: dict[str, int] | None = None) -> KeptInt8:
    """``recipe`` with a last rule giving the layers its ``w4_keep_int8`` option names 8-bit
    weights (same granularity and symmetry), or ``recipe`` itself when there are none.

    ``sensitivity`` measures every low-bit layer on the first calibration samples
    (:func:`.sensitivity_int8.sensitive_layers`) and needs ``calibration``.
    """
    from edgequant.recipes.options import option

    which = option(recipe, RULE_NAME)
    if which == "none" or recipe.weights is None:
        return KeptInt8(recipe, calibration)
    detail: dict[str, Any] = {}
    if which == "sensitivity":
        from edgequant.ptq.recovery.sensitivity_int8 import sensitive_layers

        nodes, detail, calibration = sensitive_layers(model, plan, recipe, calibration,
                                                      batch_size=batch_size,
                                                      batch_axes=batch_axes)
    else:
        nodes = int8_layers(model, plan, which)
    report = {"mode": which, "layers": list(nodes), "weight_bytes": size_report(model, plan, nodes),
              **detail}
    if not nodes:
        return KeptInt8(recipe, calibration, report)
    qt = recipe.weights.qtype
    spec = replace(recipe.weights, qtype=QType(8, qt.signed, narrow_range=qt.narrow_range))
    log.info("%s: %d layer(s) keep 8-bit weights", RULE_NAME, len(nodes))
    rule = Rule(nodes=tuple(literal(n) for n in nodes), weights=spec, name=RULE_NAME)
    return KeptInt8(recipe.with_rules(rule), calibration, report)
