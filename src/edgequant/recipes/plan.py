"""Resolve a Recipe against a model: one decision per node and per tensor, with its reason.

The plan is plain data; ``edgequant.graph.passes.insert_qdq`` executes it. Fusion and
sharing are decided here so a reader of the plan sees exactly what the model will hold.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

import onnx

from edgequant.graph.contract import (
    FUSABLE_PRODUCERS,
    FUSED_ACTIVATIONS,
    SHARE_OPS,
    STATIC_OPS,
    WEIGHTED_OPS,
)
from edgequant.graph.info import GraphInfo, attr
from edgequant.recipes.recipe import Recipe, Rule
from edgequant.spec import PerChannel, PerGroup, QType, QuantSpec

Action = Literal["quantize", "float", "fused", "share", "fp16"]


@dataclass(frozen=True)
class NodeDecision:
    """What happens to one node and why."""

    node: str
    op_type: str
    action: Literal["quantize", "float", "skip"]
    reason: str
    rule: str


@dataclass(frozen=True)
class TensorDecision:
    """What happens to one tensor: quantized with ``spec``, fused, shared, kept float, fp16."""

    tensor: str
    role: Literal["activation", "weight", "bias", "constant"]
    action: Action
    spec: QuantSpec | None = None
    rule: str = ""
    reason: str = ""
    share_with: str = ""
    weight_of: str = ""   # bias: the weight tensor whose scale it multiplies
    input_of: str = ""    # bias: the activation tensor whose scale it multiplies


@dataclass(frozen=True)
class QuantPlan:
    """The resolved recipe: decisions per node (in graph order) and per tensor."""

    recipe: Recipe
    nodes: tuple[NodeDecision, ...]
    tensors: dict[str, TensorDecision] = field(default_factory=dict)
    unmatched_rules: tuple[str, ...] = ()
    io: str = "float"

    def float_nodes(self) -> list[NodeDecision]:
        """Nodes that compute on activations but stay in float, with reasons."""
        return [d for d in self.nodes if d.action == "float"]

    def quantized(self, role: str | None = None) -> list[TensorDecision]:
        """Tensor decisions with action ``quantize`` (optionally of one role)."""
        return [t for t in self.tensors.values()
                if t.action == "quantize" and (role is None or t.role == role)]

    def to_dict(self) -> dict:
        """JSON-able summary for reports."""
        from edgequant.recipes.recipe import spec_to_dict

        return {
            "recipe": self.recipe.name,
            "io": self.io,
            "nodes": [d.__dict__ for d in self.nodes],
            "tensors": {
                k: {**{f: v for f, v in t.__dict__.items() if f != "spec"},
                    "spec": spec_to_dict(t.spec) if t.spec else None}
                for k, t in self.tensors.items()
            },
            "unmatched_rules": list(self.unmatched_rules),
        }


def weight_axes(node: onnx.NodeProto, info: GraphInfo) -> tuple[int, int]:
    """(output-channel axis, input axis) of a node's weight tensor (input 1)."""
    if node.op_type == "Conv":
        return 0, 1
    if node.op_type == "Gemm" and attr(node, "transB", 0):
        return 0, 1
    return 1, 0  # MatMul / Gemm weight (K, N)


def resolve_weight_spec(spec: QuantSpec, node: onnx.NodeProto, info: GraphInfo) -> QuantSpec:
    """Replace the recipe's symbolic weight axis by this op's real one."""
    out_axis, in_axis = weight_axes(node, info)
    g = spec.granularity
    if isinstance(g, PerChannel):
        return replace(spec, granularity=PerChannel(out_axis))
    if isinstance(g, PerGroup):
        return replace(spec, granularity=PerGroup(in_axis, g.size))
    return spec


def _matches(rule: Rule, node: onnx.NodeProto) -> bool:
    if rule.op_types and node.op_type not in rule.op_types:
        return False
    name = node.name or node.output[0]
    return not rule.nodes or any(fnmatch.fnmatchcase(name, pat) for pat in rule.nodes)


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


def resolve(recipe: Recipe, model: onnx.ModelProto, io: str = "float",
            info: GraphInfo | None = None,
            forced: Mapping[str, TensorDecision] | None = None) -> QuantPlan:
    """Apply ``recipe`` to ``model``: last matching rule wins for each node.

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
    node_specs: dict[str, tuple[QuantSpec | None, QuantSpec | None, str]] = {}
    decisions: list[NodeDecision] = []
    mode = recipe.mode
    for node in model.graph.node:
        name = node.name or node.output[0]
        table = _is_table_gather(node, info) and mode in ("dynamic", "weight_only")
        if not (table or _computes_on_floats(node, info)) or mode in ("none", "fp16"):
            decisions.append(NodeDecision(name, node.op_type, "skip", "no float compute"
                                          if mode not in ("none", "fp16") else f"mode {mode}", ""))
            continue
        action, wspec, aspec, label = "quantize", recipe.weights, recipe.activations, "recipe"
        for idx, rule in enumerate(recipe.rules):
            if _matches(rule, node):
                used_rules.add(idx)
                action, label = rule.action, rule.label
                wspec = rule.weights or wspec
                aspec = rule.activations or aspec
        reason = ""
        if action == "float":
            reason = f"kept in float by rule {label}"
        elif mode == "static":
            if node.op_type not in STATIC_OPS:
                action, reason = "float", f"no integer kernel for {node.op_type}"
            elif node.op_type in WEIGHTED_OPS:
                why = _weighted_ok(node, info, need_const=node.op_type == "Conv")
                if why:
                    action, reason = "float", why
        elif table:
            pass  # an embedding table: int8 rows, dequantized after the lookup
        else:  # dynamic / weight_only: only ops with constant weights are touched
            if node.op_type not in WEIGHTED_OPS:
                decisions.append(NodeDecision(name, node.op_type, "skip",
                                              f"{mode} mode quantizes weighted ops only", label))
                continue
            why = _weighted_ok(node, info, need_const=True)
            if why:
                action, reason = "float", why
        decisions.append(NodeDecision(name, node.op_type, action, reason or "quantized", label))
        node_specs[name] = (wspec, aspec, label)
    unmatched = tuple(r.label for i, r in enumerate(recipe.rules) if i not in used_rules)
    tensors = _tensor_decisions(recipe, model, info, decisions, node_specs, io, forced)
    return QuantPlan(recipe, tuple(decisions), tensors, unmatched, io)


def _is_table_gather(node: onnx.NodeProto, info: GraphInfo) -> bool:
    """A Gather from a constant 2-D float table along axis 0 (an embedding lookup)."""
    return (node.op_type == "Gather" and attr(node, "axis", 0) == 0
            and info.is_constant(node.input[0]) and info.is_float(node.input[0])
            and info.const_array(node.input[0]).ndim == 2)


#: Embedding tables are stored int8 per row (symmetric, narrow) under dynamic and
#: weight-only recipes: lookups touch few rows, so int4 groups would buy little speed and
#: cost accuracy.
TABLE_SPEC = QuantSpec(QType(8, True, narrow_range=True), PerChannel(0), symmetric=True)


def _activation_inputs(node: onnx.NodeProto, info: GraphInfo) -> list[str]:
    if node.op_type in ("Conv", "Gemm", "MatMul"):
        return [i for i in node.input[:2] if info.is_activation(i)]
    if node.op_type in ("Add", "Mul", "Concat"):
        return [i for i in node.input if i and info.is_float(i)]
    return [node.input[0]] if node.input and info.is_activation(node.input[0]) else []


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


def _tensor_decisions(recipe, model, info: GraphInfo, decisions, node_specs, io, forced):
    out: dict[str, TensorDecision] = {}
    by_name = {(n.name or n.output[0]): n for n in model.graph.node}
    quantized = {d.node for d in decisions if d.action == "quantize"}
    if recipe.mode == "fp16":
        for t in model.graph.initializer:
            if t.data_type == onnx.TensorProto.FLOAT:
                out[t.name] = TensorDecision(t.name, "weight", "fp16", rule="recipe")
        return out
    for d in decisions:
        if d.action != "quantize":
            continue
        node = by_name[d.node]
        wspec, aspec, label = node_specs[d.node]
        if node.op_type == "Gather":
            out[node.input[0]] = TensorDecision(node.input[0], "weight", "quantize", TABLE_SPEC,
                                                label)
            continue
        if node.op_type in WEIGHTED_OPS and info.is_constant(node.input[1]):
            w = node.input[1]
            out[w] = TensorDecision(w, "weight", "quantize",
                                    resolve_weight_spec(wspec, node, info), label)
        if recipe.mode != "static":
            continue
        for i in _activation_inputs(node, info):
            role = "constant" if info.is_constant(i) else "activation"
            out.setdefault(i, TensorDecision(i, role, "quantize", aspec, label))
        for o in node.output[:1]:
            out.setdefault(o, TensorDecision(o, "activation", "quantize", aspec, label))
    out.update(forced)
    if recipe.mode == "static":
        _fuse_and_share(model, info, out, quantized)
        _biases(model, info, out, quantized)
        if io != "float":
            for name in [*info.graph_inputs, *info.graph_outputs]:
                if name in out and out[name].action != "quantize":
                    out[name] = replace(out[name], action="quantize", share_with="")
    return out


def _fuse_and_share(model, info: GraphInfo, out, quantized) -> None:
    for node in model.graph.node:
        name = node.name or node.output[0]
        if name not in quantized:
            continue
        y = node.output[0]
        users = info.consumers.get(y, [])
        if (out[y].action == "quantize" and node.op_type in FUSABLE_PRODUCERS and len(users) == 1
                and users[0].op_type in FUSED_ACTIVATIONS
                and (users[0].name or users[0].output[0]) in quantized
                and y not in info.graph_outputs and _clip_is_const(users[0], info)):
            out[y] = replace(out[y], action="fused",
                             reason=f"range fused into {users[0].op_type} output")
        if node.op_type in SHARE_OPS and node.input[0] in out and out[y].action == "quantize":
            src = node.input[0]
            while out[src].action == "share":
                src = out[src].share_with
            if out[src].action != "quantize":  # a (forced) float input: nothing to share
                continue
            out[y] = replace(out[y], action="share", share_with=src,
                             reason=f"{node.op_type} keeps its input's qparams")


def _clip_is_const(node, info: GraphInfo) -> bool:
    return node.op_type == "Relu" or all(not i or info.is_constant(i) for i in node.input[1:])


def _biases(model, info: GraphInfo, out, quantized) -> None:
    for node in model.graph.node:
        name = node.name or node.output[0]
        if (name not in quantized or node.op_type not in ("Conv", "Gemm") or len(node.input) < 3
                or not node.input[2] or not info.is_constant(node.input[2])):
            continue
        if info.const_array(node.input[2]).ndim != 1 or node.input[1] not in out:
            continue
        b = node.input[2]
        out[b] = TensorDecision(b, "bias", "quantize", None, out[node.input[1]].rule,
                                weight_of=node.input[1], input_of=node.input[0])
