"""Resolve a Recipe against a model: one decision per node and per tensor, with its reason.

Each node gets a :class:`Choice` (the recipe's default, overridden by the last matching
rule, or followed from the producer a Relu/Clip fuses into) and a :class:`NodeDecision`
saying what the choice amounts to for that op. :mod:`edgequant.recipes.tensors` turns the
quantized nodes into per-tensor decisions. The plan is plain data; the graph passes
(``insert_qdq``, ``weight_only``, ``dynamic``, ``fp16``, ``gather_weights``) execute it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import replace

import onnx

from edgequant.graph.contract import (
    FLOAT_REASONS,
    FUSABLE_PRODUCERS,
    FUSED_ACTIVATIONS,
    STATIC_OPS,
    WEIGHTED_OPS,
)
from edgequant.graph.info import GraphInfo, attr
from edgequant.graph.passes.normalize import subgraph_nodes
from edgequant.recipes.conditions import RECURRENT_OPS, recurrent_ok, share_ok
from edgequant.recipes.decisions import Choice, NodeDecision, QuantPlan, TensorDecision
from edgequant.recipes.recipe import Recipe, Rule
from edgequant.recipes.tensors import (
    TABLE_SPEC,
    fp32_initializers,
    is_table_gather,
    resolve_weight_spec,
    tensor_decisions,
    weight_axes,
)

#: Modes whose plans store embedding tables (Gather from a constant 2-D table) as int8 rows,
#: dequantized after the lookup (static plans do it in weight-only mode: the lookup has no
#: integer kernel worth a Q/DQ seam, and the table is most of a small transformer's size).
TABLE_MODES = ("dynamic", "weight_only", "static")

__all__ = ["TABLE_SPEC", "Choice", "NodeDecision", "QuantPlan", "TensorDecision", "resolve",
           "resolve_weight_spec", "weight_axes"]


def _name(node: onnx.NodeProto) -> str:
    return node.name or node.output[0]


def _matches(rule: Rule, node: onnx.NodeProto) -> bool:
    if rule.op_types and node.op_type not in rule.op_types:
        return False
    return not rule.nodes or any(fnmatch.fnmatchcase(_name(node), pat) for pat in rule.nodes)


def _choose(recipe: Recipe, node: onnx.NodeProto) -> tuple[Choice, set[int]]:
    """The recipe default overridden by every matching rule in order (last wins)."""
    c = Choice("quantize", recipe.mode, recipe.weights, recipe.activations, "recipe")
    matched: set[int] = set()
    for idx, rule in enumerate(recipe.rules):
        if not _matches(rule, node):
            continue
        matched.add(idx)
        float_rule = rule.action == "float" or rule.mode == "none"
        c = Choice("float" if float_rule else "quantize", rule.mode or c.mode,
                   rule.weights or c.weights, rule.activations or c.activations, rule.label)
    return c, matched


def _follow_producer(node: onnx.NodeProto, info: GraphInfo, choices: dict[str, Choice]
                     ) -> Choice | None:
    """A Relu/Clip no rule matched follows the producer it fuses into when a rule decided
    that producer: ``Rule(nodes=("conv2",), ...)`` means the whole conv2 layer."""
    if node.op_type not in FUSED_ACTIVATIONS or not node.input:
        return None
    prod = info.producer.get(node.input[0])
    if prod is None or prod.op_type not in FUSABLE_PRODUCERS:
        return None
    if [_name(n) for n in info.consumers.get(prod.output[0], [])] != [_name(node)]:
        return None
    c = choices.get(_name(prod))
    return c if c is not None and c.rule != "recipe" else None


def _computes_on_floats(node: onnx.NodeProto, info: GraphInfo) -> bool:
    return any(info.is_activation(i) for i in node.input)


def _weighted_ok(node: onnx.NodeProto, info: GraphInfo, need_const: bool) -> str:
    """'' if the weighted node can be quantized, else the reason."""
    if len(node.input) < 2 or not node.input[1]:
        return "no weight input"
    if need_const and not info.is_constant(node.input[1]):
        return "weight is computed at run time (no constant weight to quantize)"
    if node.op_type == "Gemm":
        if attr(node, "transA", 0):
            return "Gemm with transA=1 is not supported"
        if attr(node, "alpha", 1.0) != 1.0 or attr(node, "beta", 1.0) != 1.0:
            return "Gemm with alpha/beta other than 1 is not supported"
    if info.is_constant(node.input[1]) and node.op_type in ("MatMul", "Gemm"):
        if info.const_array(node.input[1]).ndim != 2:
            return "weight is not 2-D"
    return ""


def _decide(node: onnx.NodeProto, info: GraphInfo, c: Choice, table: bool, fp16: bool
            ) -> NodeDecision:
    """What ``c`` amounts to for this op: quantize / float (with the reason) / skip."""
    name, mode = _name(node), c.mode

    def decision(action: str, reason: str) -> NodeDecision:
        return NodeDecision(name, node.op_type, action, reason, c.rule, mode)

    if c.action == "float":
        return decision("float", f"kept in float by rule {c.rule}")
    if mode == "none":
        return decision("skip", "mode none")
    if mode == "fp16":
        if fp16:
            return decision("quantize", "float16 weight storage")
        return decision("skip", "fp16 mode stores float weights only; this node has none")
    if mode == "static":
        if node.op_type not in STATIC_OPS:
            return decision("float", FLOAT_REASONS.get(node.op_type,
                                                       f"no integer kernel for {node.op_type}"))
        why = share_ok(node, info)
        if why:
            return decision("float", why)
        if node.op_type in WEIGHTED_OPS:
            why = _weighted_ok(node, info, need_const=node.op_type == "Conv")
            if why:
                return decision("float", why)
        return decision("quantize", "quantized")
    if table:  # an embedding table: int8 rows, dequantized after the lookup
        return decision("quantize", "quantized")
    if mode == "dynamic" and node.op_type in RECURRENT_OPS:
        why = recurrent_ok(node, info)
        return decision("float", why) if why else decision("quantize", "quantized")
    # dynamic / weight_only: only ops with constant weights are touched
    if node.op_type not in WEIGHTED_OPS:
        return decision("skip", f"{mode} mode quantizes weighted ops only")
    why = _weighted_ok(node, info, need_const=True)
    return decision("float", why) if why else decision("quantize", "quantized")


def resolve(recipe: Recipe, model: onnx.ModelProto, io: str = "float",
            info: GraphInfo | None = None,
            forced: Mapping[str, TensorDecision] | None = None) -> QuantPlan:
    """Apply ``recipe`` to ``model``: last matching rule wins for each node.

    Nodes that touch no float tensor are skipped (rules matching only those count as
    unmatched); every other node gets a decision with its mode, action, reason and rule.

    ``forced`` (static recipes) maps activation tensor names to decisions the caller has
    already made — action ``quantize`` (with a spec) or ``float`` — e.g. QAT's convert: exactly
    the tensors fake-quantized in training, including a quantized output of a float region
    that no quantized node reads. They replace what the rules decided for those tensors
    before fusion and sharing; a forced ``quantize`` may still become ``fused`` / ``share``
    (same grid), a forced ``float`` stays float and is never a sharing source.
    """
    info = info or GraphInfo.build(model)
    forced = dict(forced or {})
    _check_forced(forced, recipe, info)
    used_rules: set[int] = set()
    choices: dict[str, Choice] = {}
    decisions: list[NodeDecision] = []
    fp32 = fp32_initializers(model)
    for node in model.graph.node:
        name = node.name or node.output[0]
        c, matched = _choose(recipe, node)
        if not matched:
            c = _follow_producer(node, info, choices) or c
        table = is_table_gather(node, info) and c.mode in TABLE_MODES
        if table and c.mode == "static":  # no integer Gather→float seam: int8 rows, float after
            c = replace(c, mode="weight_only")
        choices[name] = c
        fp16 = c.mode == "fp16" and any(i in fp32 for i in node.input)
        if not (table or fp16 or _computes_on_floats(node, info)):
            reason = f"mode {c.mode}" if c.mode in ("none", "fp16") else "no float compute"
            decisions.append(NodeDecision(name, node.op_type, "skip", reason, "", c.mode))
            continue
        used_rules |= matched
        decisions.append(_decide(node, info, c, table, fp16))
    if recipe.mode != "none":
        decisions += _subgraph_decisions(model, recipe.mode)
    unmatched = tuple(r.label for i, r in enumerate(recipe.rules) if i not in used_rules)
    tensors = tensor_decisions(recipe, model, info, decisions, choices, io, forced)
    return QuantPlan(recipe, tuple(decisions), tensors, unmatched, io)


def _check_forced(forced: dict[str, TensorDecision], recipe: Recipe, info: GraphInfo) -> None:
    if forced and recipe.mode != "static":
        raise ValueError(f"forced tensor decisions need a static recipe; {recipe.name!r} is "
                         f"{recipe.mode}")
    for name, d in forced.items():
        if not isinstance(d, TensorDecision) or d.tensor != name:
            raise TypeError(f"forced decision for {name!r} must be a TensorDecision of that "
                            f"tensor, got {d!r}")
        if not info.is_activation(name):
            raise ValueError(f"forced tensor {name!r} is not a float activation of the model")
        if d.role != "activation" or d.action not in ("quantize", "float") \
                or (d.action == "quantize" and d.spec is None):
            raise ValueError(f"forced decision for {name!r}: role {d.role!r}, action "
                             f"{d.action!r}; allowed: an activation 'quantize' (with a spec) "
                             "or 'float'")


#: Why a node inside a control-flow subgraph stays float.
SUBGRAPH_REASON = "inside If/Loop subgraph: kept float"


def _subgraph_decisions(model: onnx.ModelProto, mode: str) -> list[NodeDecision]:
    """Float decisions for the compute nodes inside If/Loop/Scan subgraphs (not rewritten)."""
    return [NodeDecision(path, n.op_type, "float", SUBGRAPH_REASON, "", mode)
            for path, n in subgraph_nodes(model) if n.op_type in STATIC_OPS]
