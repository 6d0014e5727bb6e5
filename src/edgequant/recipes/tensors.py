"""Per-tensor decisions of a plan, from the per-node decisions (see :mod:`recipes.plan`).

Each quantized node claims its tensors in its own mode: weights (with the op's real axes),
embedding tables, float16 constants, and — for static nodes — activations, where the
producer's decision wins (it fixes the tensor's integer type in the deployed model) and
graph inputs / outputs of float producers take their first static consumer's. Then:

- **fusion**: a Relu / Clip with the same activation spec absorbs its producer's range;
- **sharing**: MaxPool / Reshape / ... keep their input's qparams;
- **seams**: a static consumer whose activation spec differs from the tensor's (an int16
  layer reading an int8 tensor, or the reverse) gets its own re-quantization of it — a
  decision keyed ``requant_key(tensor, consumer)`` that only that consumer reads;
- **biases**: int32 at ``input_scale · weight_scale`` of the input decision the op reads.
"""

from __future__ import annotations

from dataclasses import replace

import onnx

from edgequant.graph.contract import (
    FUSABLE_PRODUCERS,
    FUSED_ACTIVATIONS,
    MULTI_INPUT_OPS,
    SHARE_OPS,
    WEIGHTED_OPS,
)
from edgequant.graph.info import GraphInfo, attr
from edgequant.recipes.decisions import Choice, NodeDecision, TensorDecision, requant_key
from edgequant.recipes.recipe import Recipe
from edgequant.spec import PerChannel, PerGroup, QType, QuantSpec

#: Embedding tables are stored int8 per row (symmetric, narrow) under dynamic and
#: weight-only recipes: lookups touch few rows, so int4 groups would buy little speed and
#: cost accuracy.
TABLE_SPEC = QuantSpec(QType(8, True, narrow_range=True), PerChannel(0), symmetric=True)

#: LSTM weights W (D, 4·H, I) and R (D, 4·H, H) under dynamic recipes: int8 per gate row, the
#: only weight type onnxruntime's DynamicQuantizeLSTM takes, whatever the recipe's weight bits.
LSTM_WEIGHT_SPEC = QuantSpec(QType(8, True, narrow_range=True), PerChannel(1), symmetric=True)

Decisions = dict[str, TensorDecision]


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


def is_table_gather(node: onnx.NodeProto, info: GraphInfo) -> bool:
    """A Gather from a constant 2-D float table along axis 0 (an embedding lookup)."""
    return (node.op_type == "Gather" and attr(node, "axis", 0) == 0
            and info.is_constant(node.input[0]) and info.is_float(node.input[0])
            and info.const_array(node.input[0]).ndim == 2)


def fp32_initializers(model: onnx.ModelProto) -> set[str]:
    """Names of the float32 initializers (what fp16 storage converts)."""
    return {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}


def _activation_inputs(node: onnx.NodeProto, info: GraphInfo) -> list[str]:
    if node.op_type in WEIGHTED_OPS:
        return [i for i in node.input[:2] if info.is_activation(i)]
    if node.op_type in MULTI_INPUT_OPS:
        return [i for i in node.input if i and info.is_float(i)]
    return [node.input[0]] if node.input and info.is_activation(node.input[0]) else []


def tensor_decisions(recipe: Recipe, model: onnx.ModelProto, info: GraphInfo,
                     decisions: list[NodeDecision], choices: dict[str, Choice], io: str,
                     forced: Decisions | None = None) -> Decisions:
    """Every tensor's decision (see the module docstring), keyed by tensor name or seam key."""
    out: Decisions = {}
    by_name = {(n.name or n.output[0]): n for n in model.graph.node}
    static = {d.node for d in decisions if d.action == "quantize" and d.mode == "static"}
    wants: dict[str, list[tuple[str, Choice]]] = {}  # activation → its static consumers' needs
    fp32 = fp32_initializers(model)
    for d in decisions:
        if d.action != "quantize":
            continue
        node, c = by_name[d.node], choices[d.node]
        if d.mode == "fp16":
            for t in (i for i in node.input if i in fp32):
                out.setdefault(t, TensorDecision(t, "weight", "fp16", rule=c.rule, mode="fp16"))
            continue
        if node.op_type == "LSTM":  # dynamic (recipes.conditions.recurrent_ok)
            for w in node.input[1:3]:
                out[w] = TensorDecision(w, "weight", "quantize", LSTM_WEIGHT_SPEC, c.rule,
                                        mode=d.mode)
            continue
        if node.op_type == "Gather":
            out[node.input[0]] = TensorDecision(node.input[0], "weight", "quantize", TABLE_SPEC,
                                                c.rule, mode=d.mode)
            continue
        if node.op_type in WEIGHTED_OPS and info.is_constant(node.input[1]):
            w = node.input[1]
            out[w] = TensorDecision(w, "weight", "quantize",
                                    resolve_weight_spec(c.weights, node, info), c.rule,
                                    mode=d.mode)
        if d.mode != "static":
            continue
        for i in _activation_inputs(node, info):
            role = "constant" if info.is_constant(i) else "activation"
            out.setdefault(i, TensorDecision(i, role, "quantize", c.activations, c.rule))
            if role == "activation" and node.op_type not in SHARE_OPS:
                wants.setdefault(i, []).append((d.node, c))
        for o in node.output[:1]:
            out.setdefault(o, TensorDecision(o, "activation", "quantize", c.activations, c.rule))
    if recipe.mode == "fp16":  # the recipe's default: every other float initializer too
        for t in model.graph.initializer:
            if t.data_type == onnx.TensorProto.FLOAT and t.name not in out:
                out[t.name] = TensorDecision(t.name, "weight", "fp16", rule="recipe", mode="fp16")
    out.update(forced or {})
    if static:
        _fuse_and_share(model, info, out, static, choices)
        if io != "float":
            for name in [*info.graph_inputs, *info.graph_outputs]:
                if name in out and out[name].action != "quantize":
                    out[name] = replace(out[name], action="quantize", share_with="")
        _seams(info, out, wants, static, io)
        _biases(model, info, out, static)
    return out


def _fuse_and_share(model, info: GraphInfo, out: Decisions, static: set[str],
                    choices: dict[str, Choice]) -> None:
    for node in model.graph.node:
        name = node.name or node.output[0]
        if name not in static:
            continue
        y = node.output[0]
        users = info.consumers.get(y, [])
        user = (users[0].name or users[0].output[0]) if len(users) == 1 else ""
        if y not in out:
            continue
        if (out[y].action == "quantize" and node.op_type in FUSABLE_PRODUCERS and user in static
                and users[0].op_type in FUSED_ACTIVATIONS
                and choices[user].activations == choices[name].activations
                and y not in info.graph_outputs and _clip_is_const(users[0], info)):
            out[y] = replace(out[y], action="fused",
                             reason=f"range fused into {users[0].op_type} output")
        if node.op_type in SHARE_OPS and node.input[0] in out and out[y].action == "quantize":
            src = node.input[0]
            while out[src].action == "share":
                src = out[src].share_with
            if out[src].action != "quantize":  # a (forced) float input: nothing to share
                continue
            out[y] = replace(out[y], action="share", share_with=src, spec=out[src].spec,
                             reason=f"{node.op_type} keeps its input's qparams")


def _clip_is_const(node, info: GraphInfo) -> bool:
    return node.op_type == "Relu" or all(not i or info.is_constant(i) for i in node.input[1:])


def _seams(info: GraphInfo, out: Decisions, wants: dict[str, list[tuple[str, Choice]]],
           static: set[str], io: str) -> None:
    """Re-quantize a tensor for each group of static consumers whose spec differs from it."""
    for t, needs in wants.items():
        main = out.get(t)
        if main is None or main.action in ("fused", "float") or main.role != "activation":
            continue
        producer = info.producer.get(t)
        from_dq = ((producer is not None and (producer.name or producer.output[0]) in static)
                   or (t in info.graph_inputs and io != "float"))
        groups: dict[QuantSpec, list[tuple[str, Choice]]] = {}
        for node, c in needs:
            if c.activations != main.spec:
                groups.setdefault(c.activations, []).append((node, c))
        for spec, group in groups.items():
            names = tuple(n for n, _ in group)
            out[requant_key(t, names[0])] = TensorDecision(
                t, "activation", "quantize", spec, group[0][1].rule,
                reason=f"re-quantized from {main.spec.qtype.name} to {spec.qtype.name} for "
                       f"{', '.join(names)}",
                consumers=names, from_dequantized=from_dq)


def _seam_for(out: Decisions, tensor: str, consumer: str) -> str:
    """Plan key of the decision ``consumer`` reads ``tensor`` through (seam or main)."""
    return next((k for k, d in out.items() if d.consumers and d.tensor == tensor
                 and consumer in d.consumers), tensor)


def _biases(model, info: GraphInfo, out: Decisions, static: set[str]) -> None:
    for node in model.graph.node:
        name = node.name or node.output[0]
        if (name not in static or node.op_type not in ("Conv", "Gemm") or len(node.input) < 3
                or not node.input[2] or not info.is_constant(node.input[2])):
            continue
        if info.const_array(node.input[2]).ndim != 1 or node.input[1] not in out:
            continue
        b = node.input[2]
        out[b] = TensorDecision(b, "bias", "quantize", None, out[node.input[1]].rule,
                                weight_of=node.input[1],
                                input_of=_seam_for(out, node.input[0], name))
