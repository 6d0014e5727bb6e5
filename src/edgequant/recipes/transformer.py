"""The transformer rule set: what stays float in static recipes on encoder graphs.

Measured on all-MiniLM-L6-v2 (``bench/transformer_int8.py``; mean cosine of sentence embeddings
to float, 200 held-out docstrings): plain w8a8 0.34 (the mask calibrated into the scores'
grid); Softmax / Add / Mul / Where float 0.93; and the MatMul after GELU float as well 0.991
(int16 activations there give the same 0.991 but run slower in onnxruntime, which has no
int16 GEMM). That float FFN-output MatMul held 3.5 M float weights (file 0.37x of fp32) and
half the run time; run per-row dynamic int8 instead (the ``w8_dynamic`` layout: its per-token
scales follow the long tail a calibrated per-tensor grid cannot) it keeps mean cosine 0.9906,
shrinks the file to 0.25x and runs 1.2–1.5x faster than with the float FFN (int8 weight-only,
float compute: 0.9908, 0.25x, about float-FFN speed). So under a static recipe, for a graph recognised
as a transformer:

| nodes                                   | treatment | why                                          |
|-----------------------------------------|-----------|----------------------------------------------|
| attention-mask path, mask Adds          | float     | 0 / "−inf" bias fits no grid (``mask_path``)  |
| Softmax, Add (bias, residual), Mul, Div | float     | residual stream outliers; no fast int kernel  |
| LayerNormalization, Gelu, Erf, ...      | float     | not in ``STATIC_OPS`` anyway                   |
| MatMul reading a GELU / nonlinearity    | dynamic   | long-tailed input (hundreds × the median):    |
|                                         |           | per-row int8 at run time (``ffn_rule``)       |
| every other MatMul (Q/K/V/O, FFN-in,    | int8      | per-tensor uint8 activations, per-channel     |
| Q·Kᵀ, P·V)                              |           | int8 weights                                  |

These rules come *before* the recipe's own, so a user rule still wins (last match wins).
The option ``transformer_rules`` (``auto`` / ``on`` / ``off``) switches them;
``transformer_ffn_output`` (``dynamic`` / ``weight_only`` / ``float``) picks the FFN-output row.
"""

from __future__ import annotations

from dataclasses import replace

import onnx

from edgequant.graph.info import GraphInfo
from edgequant.graph.passes.mask_path import SCORE_PASS_OPS, mask_adds, mask_path_nodes
from edgequant.recipes.options import option
from edgequant.recipes.recipe import Recipe, Rule

#: Op types kept float by the transformer rules (when present in the graph).
FLOAT_OPS = ("Softmax", "Add", "Mul", "Div", "Sub", "Where")
#: Producers after which a MatMul's input is long-tailed (the FFN's second linear).
NONLINEAR_PRODUCERS = ("Gelu", "Erf", "Tanh", "Mul", "Relu", "Sigmoid", "FastGelu")
#: The name of the rule keeping FFN-output MatMuls out of static quantization (the outlier
#: decomposition splits them); per-row dynamic int8 under 8-bit recipes (:func:`ffn_rule`).
FFN_RULE = "transformer: MatMul after GELU not static (long-tailed input)"
#: Ops between the attention-score MatMul and its Softmax (scaling, masking, moves). A
#: ``Where`` is ``scores.masked_fill(~mask, -inf)``: the float scores reach it as data (a
#: float tensor can never be its bool condition).
SCORE_OPS = ("Mul", "Div", "Add", "Where", *SCORE_PASS_OPS)


def _name(node: onnx.NodeProto) -> str:
    return node.name or node.output[0]


def attention_matmuls(model: onnx.ModelProto, info: GraphInfo | None = None) -> list[str]:
    """MatMuls of two activations whose output reaches a Softmax through :data:`SCORE_OPS`
    (the Q·Kᵀ of self-attention)."""
    info = info or GraphInfo.build(model)
    found = []
    for node in model.graph.node:
        if node.op_type != "MatMul" or not all(info.is_activation(i) for i in node.input[:2]):
            continue
        todo, seen = [node.output[0]], set()
        while todo:
            t = todo.pop()
            if t in seen:
                continue
            seen.add(t)
            users = info.consumers.get(t, [])
            if any(u.op_type == "Softmax" for u in users):
                found.append(_name(node))
                break
            todo += [u.output[0] for u in users if u.op_type in SCORE_OPS]
    return found


def is_transformer(model: onnx.ModelProto, info: GraphInfo | None = None) -> bool:
    """A graph with self-attention: a mask Add before Softmax or a Q·Kᵀ MatMul (reaching the
    Softmax through scaling, an additive mask or a ``masked_fill`` Where)."""
    info = info or GraphInfo.build(model)
    return bool(mask_adds(model, info) or attention_matmuls(model, info))


def ffn_output_matmuls(model: onnx.ModelProto, info: GraphInfo) -> list[str]:
    """MatMuls with a constant weight whose input comes from a nonlinearity (FFN output)."""
    out = []
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm") or not info.is_constant(node.input[1]):
            continue
        prod = info.producer.get(node.input[0])
        if prod is not None and prod.op_type in NONLINEAR_PRODUCERS:
            out.append(_name(node))
    return out


def transformer_rules(model: onnx.ModelProto, info: GraphInfo | None = None,
                      recipe: Recipe | None = None) -> tuple[Rule, ...]:
    """The rules of the module table, limited to what the graph holds (none match nothing);
    ``recipe`` decides the FFN-output weights (:func:`ffn_rule`; float without it)."""
    info = info or GraphInfo.build(model)
    present = {n.op_type for n in model.graph.node}
    rules = []
    ops = tuple(op for op in FLOAT_OPS if op in present)
    if ops:
        rules.append(Rule(op_types=ops, action="float",
                          name="transformer: Softmax / bias and residual Adds / Mul float"))
    masks = mask_path_nodes(model, info)
    if masks:
        rules.append(Rule(nodes=tuple(masks), action="float",
                          name="transformer: attention-mask path float"))
    ffn = ffn_output_matmuls(model, info)
    if ffn:
        rules.append(ffn_rule(tuple(ffn), recipe))
    return tuple(rules)


def ffn_rule(nodes: tuple[str, ...], recipe: Recipe | None) -> Rule:
    """The FFN-output rule: never static (the long-tailed input fits no calibrated grid).

    Option ``transformer_ffn_output`` under a recipe with 8-bit weights: ``dynamic`` (default)
    int8 weights and per-row int8 activations at run time (the ``w8_dynamic`` layout,
    :mod:`edgequant.graph.passes.dynamic`; symmetric weights only, else ``weight_only``);
    ``weight_only`` int8 weights, float compute; ``float``. Other weight widths, and recipes
    with activations wider than 8 bits (``w8a16``: per-row int8 would lower the precision asked
    for, and the 16x8 TFLite export would turn hybrid): float.
    """
    w = recipe.weights if recipe is not None else None
    a = recipe.activations if recipe is not None else None
    choice = option(recipe, "transformer_ffn_output") if recipe is not None else "float"
    if (choice == "float" or w is None or w.qtype.bits != 8
            or (a is not None and a.qtype.bits > 8)):
        return Rule(nodes=nodes, action="float", name=FFN_RULE)
    mode = "dynamic" if choice == "dynamic" and w.symmetric else "weight_only"
    return Rule(nodes=nodes, mode=mode, name=FFN_RULE)  # the recipe's weight spec


def with_transformer_rules(recipe: Recipe, model: onnx.ModelProto,
                           info: GraphInfo | None = None) -> tuple[Recipe, list[str]]:
    """``recipe`` with the transformer rules put first when they apply, and report notes.

    They apply to static recipes when option ``transformer_rules`` is ``on``, or ``auto``
    (the default) and :func:`is_transformer` recognises the graph.
    """
    setting = option(recipe, "transformer_rules")
    if recipe.mode != "static" or setting == "off":
        return recipe, []
    info = info or GraphInfo.build(model)
    if setting == "auto" and not is_transformer(model, info):
        return recipe, []
    rules = transformer_rules(model, info, recipe)
    note = (f"transformer graph: {len(rules)} transformer rule(s) applied first "
            f"({'; '.join(r.label for r in rules)}); option transformer_rules='off' turns them off")
    return replace(recipe, rules=(*rules, *recipe.rules)), [note]


def cli_options(smoothquant: str | None, outlier_threshold: float | None) -> dict[str, object]:
    """Recipe options from ``--smoothquant ALPHA|search`` and ``--outlier-threshold T``."""
    out: dict[str, object] = {}
    if smoothquant is not None:
        text = smoothquant.strip().lower()
        if text == "search":
            out["smoothquant_alpha"] = "search"
        else:
            try:
                out["smoothquant_alpha"] = float(text)
            except ValueError:
                raise ValueError(f"--smoothquant {smoothquant!r}: use a number in [0, 1] or "
                                 "'search'") from None
    if outlier_threshold is not None:
        out["outlier_threshold"] = float(outlier_threshold)
    return out
