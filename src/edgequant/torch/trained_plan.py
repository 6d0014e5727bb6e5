"""What QAT fake-quantized, as a :class:`~edgequant.recipes.plan.QuantPlan` of the exported graph.

``convert`` knows exactly which ONNX tensors were fake-quantized in training (each QAT layer's
output after its fused ReLU, each float region's boundary output, the model inputs) and which
initializers are QAT weights. This module turns that into a plan that
:func:`edgequant.graph.passes.insert_qdq.insert_qdq` executes, so QAT and PTQ share one Q/DQ
writer:

* node rules: every node float, except the QAT Conv/Gemm nodes and the exact ops
  (:data:`PROPAGATING_OPS`) outside float regions whose input was quantized;
* forced tensor decisions: every float activation is ``quantize`` if it was quantized in
  training (or inherits such a grid exactly), else ``float`` — which also lets the plan say
  "a quantized output of a float region at the graph end", something no node rule can.
"""

from __future__ import annotations

from dataclasses import replace

import onnx

from edgequant.errors import EdgequantError
from edgequant.graph.contract import PASS_THROUGH_OPS, WEIGHTED_OPS
from edgequant.graph.info import GraphInfo
from edgequant.qparams import QParams
from edgequant.recipes.plan import QuantPlan, TensorDecision, resolve
from edgequant.recipes.recipe import Recipe, Rule

#: Ops whose output lies exactly on their input's grid, so it inherits the input's trained
#: qparams: the pass-through ops of the QDQ contract, plus Relu (max(x, 0) maps a grid onto
#: itself: 0 is the zero point, which every grid holds).
PROPAGATING_OPS = (*PASS_THROUGH_OPS, "Relu")

RULE_FLOAT = "qat: not fake-quantized in training"
RULE_QUANTIZED = "qat: fake-quantized in training"


def rule_name(node: onnx.NodeProto) -> str:
    """The name a recipe rule's ``nodes`` globs match for ``node`` (as :func:`resolve` does)."""
    return node.name or node.output[0]


def in_module(node: onnx.NodeProto, path: str) -> bool:
    """Whether the dynamo exporter recorded ``node`` as computed inside module ``path``."""
    ns = next((p.value for p in node.metadata_props if p.key == "namespace"), "")
    return f"/{path}: " in ns


def region_nodes(graph: onnx.GraphProto, regions: list[str]) -> set[str]:
    """Labels of the nodes computed inside any of the float-region modules ``regions``."""
    return {rule_name(n) for n in graph.node if any(in_module(n, r) for r in regions)}


def region_output(graph: onnx.GraphProto, path: str) -> str:
    """The one tensor a float region hands to the rest of the graph (or the graph output)."""
    inside = [n for n in graph.node if in_module(n, path)]
    made = {o for n in inside for o in n.output}
    used_outside = {i for n in graph.node if not in_module(n, path) for i in n.input}
    outs = sorted(t for t in made if t in used_outside or t in {o.name for o in graph.output})
    if len(outs) != 1:
        raise EdgequantError(
            f"float region {path!r}: found {len(outs)} output tensors {outs} in the exported "
            "graph (need exactly 1; the region must return one tensor and be exported by the "
            "dynamo exporter, which records module names)"
        )
    return outs[0]


def propagate(graph: onnx.GraphProto, trained: dict[str, QParams],
              skip: set[str] = frozenset()) -> dict[str, QParams]:
    """``trained`` extended through :data:`PROPAGATING_OPS` outside the nodes ``skip``.

    Graph nodes are topologically sorted; a tensor that has its own trained qparams keeps them.
    """
    act = dict(trained)
    for node in graph.node:
        if (node.op_type in PROPAGATING_OPS and rule_name(node) not in skip and node.input
                and node.input[0] in act):
            act.setdefault(node.output[0], act[node.input[0]])
    return act


def _escape(name: str) -> str:
    """A glob matching exactly ``name`` (fnmatch has no escape function)."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def trained_plan(recipe: Recipe, model: onnx.ModelProto, acts: dict[str, QParams],
                 weights: dict[str, QParams], floats: set[str]) -> QuantPlan:
    """The static plan of the converted graph: exactly what training quantized.

    ``acts``: activation tensor → qparams, already extended by :func:`propagate`; ``weights``: QAT
    weight initializer → qparams; ``floats``: names (:func:`rule_name`) of the nodes inside float
    regions (:func:`region_nodes`).
    """
    info = GraphInfo.build(model)
    g = model.graph
    quantized = [rule_name(n) for n in g.node
                 if (n.op_type in WEIGHTED_OPS and len(n.input) > 1 and n.input[1] in weights)
                 or (n.op_type in PROPAGATING_OPS and rule_name(n) not in floats
                     and n.input and n.input[0] in acts)]
    rules: tuple[Rule, ...] = (Rule(nodes=("*",), action="float", name=RULE_FLOAT),)
    if quantized:  # a rule with no node globs would match every node
        rules += (Rule(nodes=tuple(map(_escape, quantized)), action="quantize",
                       name=RULE_QUANTIZED),)
    tensors = [*info.graph_inputs, *(o for n in g.node for o in n.output)]
    forced = {}
    for t in dict.fromkeys(tensors):
        if not info.is_activation(t):
            continue
        if t in acts:
            assert recipe.activations is not None, "trained activations need an activation spec"
            forced[t] = TensorDecision(t, "activation", "quantize", recipe.activations,
                                       RULE_QUANTIZED, "qparams from training")
        else:
            forced[t] = TensorDecision(t, "activation", "float", None, RULE_FLOAT,
                                       "float in training")
    missing = sorted(set(acts) - set(forced))
    if missing:
        raise EdgequantError(f"trained activations {missing} are not float tensors of the "
                             "exported graph (shape inference could not type them)")
    qat_recipe = replace(recipe, mode="static", rules=rules)
    return resolve(qat_recipe, model, io="float", info=info, forced=forced)
