"""Layers of a model and the per-layer precisions the sensitivity sweeps and the auto search use.

A *layer* is a weighted node (``Conv`` / ``Gemm`` / ``MatMul`` reading an initializer) that the
base recipe quantizes, together with the ``Relu`` / ``Clip`` fused into it. Each precision is
one recipe ``Rule`` over the layer's nodes, so every mix is an ordinary recipe:

| precision | rule over the layer's nodes                                        | weights | acts   |
|-----------|--------------------------------------------------------------------|---------|--------|
| ``int4``  | static, int4 per-channel symmetric weights, uint8 activations      | 4 bit   | 8 bit  |
| ``int8``  | static, int8 per-channel weights, uint8 activations (``w8a8``)     | 8 bit   | 8 bit  |
| ``int16`` | static, int8 per-channel weights, int16 activations (``w8a16``)    | 8 bit   | 16 bit |
| ``fp16``  | float16 weight storage, float32 compute                            | 16 bit  | float  |
| ``float`` | kept in float                                                      | 32 bit  | float  |
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np
import onnx

from edgequant.graph.contract import FUSED_ACTIVATIONS, WEIGHTED_OPS
from edgequant.graph.info import GraphInfo
from edgequant.recipes.builtin import activation_spec, weight_spec
from edgequant.recipes.plan import resolve
from edgequant.recipes.recipe import Recipe, Rule

#: Every per-layer precision, cheapest storage first.
PRECISIONS = ("int4", "int8", "int16", "fp16", "float")
#: Bits per stored weight element of each precision.
WEIGHT_BITS = {"int4": 4, "int8": 8, "int16": 8, "fp16": 16, "float": 32}


@dataclass(frozen=True)
class Layer:
    """One weighted node, the activation fused into it, and its weight."""

    node: str
    op_type: str
    nodes: tuple[str, ...]
    weight: str
    params: int
    input: str
    output: str

    def to_dict(self) -> dict:
        """JSON-able fields."""
        return {"node": self.node, "op_type": self.op_type, "nodes": list(self.nodes),
                "weight": self.weight, "params": self.params, "input": self.input,
                "output": self.output}


def _name(node: onnx.NodeProto) -> str:
    return node.name or node.output[0]


def literal(name: str) -> str:
    """A node-name glob that matches exactly ``name`` (``*``, ``?`` and ``[`` escaped)."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def find_layers(float_model: onnx.ModelProto, base: Recipe) -> list[Layer]:
    """Weighted nodes of a *prepared* float model that ``base`` quantizes, in graph order —
    with the rules ``quantize`` adds (the transformer rule set keeps some MatMuls float: they
    are not layers the base recipe quantizes)."""
    from edgequant.recipes.transformer import FFN_RULE, with_transformer_rules

    base, _ = with_transformer_rules(base, float_model)
    plan = resolve(base, float_model)
    # the FFN-output MatMuls compute in float (int8 weights only): not layers to sweep
    quantized = {d.node for d in plan.nodes if d.action == "quantize" and d.rule != FFN_RULE}
    info = GraphInfo.build(float_model)
    layers = []
    for node in float_model.graph.node:
        name = _name(node)
        if node.op_type not in WEIGHTED_OPS or name not in quantized or len(node.input) < 2:
            continue
        weight = node.input[1]
        if weight not in info.constants:
            continue
        members = [name]
        out = node.output[0]
        users = info.consumers.get(out, [])
        if len(users) == 1 and users[0].op_type in FUSED_ACTIVATIONS:
            members.append(_name(users[0]))
            out = users[0].output[0]
        params = int(np.prod(tuple(info.constants[weight].dims), dtype=np.int64))
        layers.append(Layer(name, node.op_type, tuple(members), weight, params, node.input[0],
                            out))
    return layers


def precision_rule(nodes: tuple[str, ...] | list[str], precision: str, label: str = "") -> Rule:
    """The recipe rule putting ``nodes`` (exact names) in ``precision`` (see the table)."""
    pats = tuple(literal(n) for n in nodes)
    name = label or f"{precision}"
    if precision == "float":
        return Rule(nodes=pats, action="float", name=name)
    if precision == "fp16":
        return Rule(nodes=pats, mode="fp16", name=name)
    if precision in ("int4", "int8", "int16"):
        wbits = 4 if precision == "int4" else 8
        abits = 16 if precision == "int16" else 8
        return Rule(nodes=pats, mode="static", weights=weight_spec(wbits),
                    activations=activation_spec(abits), name=name)
    raise ValueError(f"precision {precision!r} is not allowed: use one of {list(PRECISIONS)}")


def mixed_recipe(base: Recipe, layers: list[Layer], choice: dict[str, str], name: str) -> Recipe:
    """``base`` plus one rule per precision used in ``choice`` (layer node → precision).

    Layers at ``int8`` need no rule (the base recipe is w8a8); the rules list nodes in graph
    order so the JSON reads like the model.
    """
    rules = []
    for precision in PRECISIONS:
        members = [n for layer in layers if choice.get(layer.node, "int8") == precision
                   for n in layer.nodes]
        if members and precision != "int8":
            rules.append(precision_rule(members, precision, f"auto:{precision}"))
    return replace(base, name=name, rules=(*base.rules, *rules),
                   description=f"mixed precision chosen by edgequant auto from {base.name}")


def only_layer(base: Recipe, layer: Layer, precision: str | None = None) -> Recipe:
    """Every node in float except ``layer``: quantized as ``base`` says, or at ``precision``."""
    rule = precision_rule(layer.nodes, precision, f"only:{layer.node}") if precision else \
        Rule(nodes=tuple(literal(n) for n in layer.nodes), name=f"only:{layer.node}")
    return replace(base, name=f"{base.name}-only-{layer.node}",
                   rules=(*base.rules, Rule(action="float", name="float:all"), rule))


def all_but(base: Recipe, layer: Layer, precision: str = "float") -> Recipe:
    """``base`` everywhere except ``layer``, which gets ``precision`` (default: float)."""
    return replace(base, name=f"{base.name}-{precision}-{layer.node}",
                   rules=(*base.rules, precision_rule(layer.nodes, precision,
                                                      f"{precision}:{layer.node}")))


def weight_bytes(layers: list[Layer], choice: dict[str, str]) -> int:
    """Bytes of the layers' weights at their chosen precisions (scales not counted)."""
    return sum(layer.params * WEIGHT_BITS[choice.get(layer.node, "int8")] // 8 for layer in layers)
