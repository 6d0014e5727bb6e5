"""Transformer methods run before the plan: rule set, SmoothQuant, outlier decomposition.

``prepare_transformer`` is the one call site in :func:`edgequant.ptq.quantizer.quantize`.
For static recipes it

1. puts the transformer rules first (:mod:`edgequant.recipes.transformer`) when the graph
   is a transformer (option ``transformer_rules``);
2. with option ``smoothquant_alpha``, migrates activation outliers into the weights of the
   MatMuls after each LayerNorm (:mod:`edgequant.graph.passes.smoothquant`);
3. with option ``outlier_threshold``, splits each static MatMul's outlier input features
   into a float MatMul (:mod:`edgequant.graph.passes.outlier_split`).

Steps 2 and 3 edit the float model (both are exact in float) and need calibration data;
their per-layer results land in ``report["smoothquant"]`` / ``report["outliers"]``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx

from edgequant.errors import CalibrationError
from edgequant.graph.info import GraphInfo
from edgequant.recipes.options import option
from edgequant.recipes.recipe import Recipe
from edgequant.recipes.transformer import with_transformer_rules


def prepare_transformer(model: onnx.ModelProto, recipe: Recipe, calibration, notes: list[str], *,
                        batch_size: int, batch_axes: Mapping[str, int] | None = None
                        ) -> tuple[onnx.ModelProto, Recipe, Any, dict[str, Any]]:
    """Return the (possibly edited) float model, the recipe with the transformer rules, the
    calibration data (a one-shot iterable becomes a list when read twice) and report entries.
    """
    if recipe.mode != "static":
        return model, recipe, calibration, {}
    recipe, more = with_transformer_rules(recipe, model)
    notes += more
    alpha = option(recipe, "smoothquant_alpha")
    threshold = option(recipe, "outlier_threshold")
    extra: dict[str, Any] = {}
    if alpha is None and threshold is None:
        return model, recipe, calibration, extra
    if calibration is None:
        raise CalibrationError("options smoothquant_alpha / outlier_threshold read activation "
                               "statistics: give calibration data")
    if not isinstance(calibration, str | os.PathLike | Mapping):
        calibration = list(calibration)  # read once here, again by calibrate()
    from edgequant.ptq.calibrate import calibration_batches

    def batches():
        return calibration_batches(model, calibration, batch_size, batch_axes)[0]

    if alpha is not None:
        model, extra["smoothquant"] = smooth_model(model, recipe, batches, alpha)
        notes.append(f"SmoothQuant (alpha={alpha}): {len(extra['smoothquant'])} LayerNorm "
                     "group(s) smoothed")
    if threshold is not None:
        model, recipe, extra["outliers"] = split_outliers(model, recipe, batches, threshold)
        o = extra["outliers"]
        notes.append(f"outlier decomposition (threshold {threshold:g}): {len(o['layers'])} "
                     f"MatMul(s) split, {o['share']:.2%} of their input features in float")
    GraphInfo.build(model)  # fail here, not in a later stage, if an edit broke the graph
    return model, recipe, calibration, extra


def static_nodes(model: onnx.ModelProto, recipe: Recipe) -> set[str]:
    """Names of the nodes ``recipe`` quantizes in static mode on ``model``."""
    from edgequant.recipes.plan import resolve

    plan = resolve(recipe, model)
    return {d.node for d in plan.nodes if d.action == "quantize" and d.mode == "static"}


def smooth_model(model: onnx.ModelProto, recipe: Recipe, batches, alpha
                 ) -> tuple[onnx.ModelProto, list[dict[str, Any]]]:
    """SmoothQuant on every LayerNorm → static MatMul group (see ``graph.passes.smoothquant``);
    returns the smoothed float model and one report row per group."""
    from edgequant.graph.passes.smoothquant import apply_smoothing, choose_alpha, smooth_groups
    from edgequant.ptq.channel_stats import channel_stats
    from edgequant.recipes.tensors import resolve_weight_spec

    info = GraphInfo.build(model)
    groups = smooth_groups(model, static_nodes(model, recipe), info)
    stats = channel_stats(model, [g.tensor for g in groups], batches)
    rows = []
    for g in groups:
        st = stats[g.tensor]
        weights = [info.const_array(m.input[1]).astype(np.float32) for m in g.matmuls]  # (K, N)
        wspecs = [resolve_weight_spec(recipe.weights, m, info) for m in g.matmuls]
        a, s, before, after = choose_alpha(st.rows, st.absmax, weights, alpha,
                                           recipe.activations, wspecs)
        if a is not None:
            apply_smoothing(model, g, s, info)
        rows.append({"layernorm": g.norm.name or g.tensor,
                     "matmuls": [m.name or m.output[0] for m in g.matmuls],
                     "alpha": a, "cloned": bool(g.others and a is not None),
                     "error_before": round(before, 6), "error_after": round(after, 6)})
    return model, rows


def split_outliers(model: onnx.ModelProto, recipe: Recipe, batches, threshold: float
                   ) -> tuple[onnx.ModelProto, Recipe, dict[str, Any]]:
    """LLM.int8() decomposition of the MatMuls with constant weights that are static, or
    float only by the transformer rule for long-tailed FFN inputs; returns the model, the
    recipe with a rule keeping the outlier parts float, and ``report["outliers"]``."""
    from edgequant.graph.passes.outlier_split import outlier_features, split_matmuls
    from edgequant.ptq.channel_stats import channel_stats
    from edgequant.recipes.plan import resolve
    from edgequant.recipes.recipe import Rule
    from edgequant.recipes.transformer import FFN_RULE

    info = GraphInfo.build(model)
    plan = resolve(recipe, model, info=info)
    by_name = {(n.name or n.output[0]): n for n in model.graph.node}
    cands = [d.node for d in plan.nodes if d.op_type == "MatMul"
             and ((d.action == "quantize" and d.mode == "static")
                  or d.rule == FFN_RULE)]  # float compute (int8 weights or float)
    cands = [c for c in cands if info.is_constant(by_name[c].input[1])
             and info.const_array(by_name[c].input[1]).ndim == 2]
    stats = channel_stats(model, [by_name[c].input[0] for c in cands], batches, max_rows=1)
    targets = {c: outlier_features(stats[by_name[c].input[0]].absmax, threshold) for c in cands}
    splits = split_matmuls(model, targets, info)
    floats = tuple(n for s in splits for n in s.float_nodes)
    if floats:
        recipe = recipe.with_rules(Rule(nodes=tuple(dict.fromkeys(floats)), action="float",
                                        name="outlier decomposition: outlier features float"))
    kept_float = {d.node for d in plan.nodes if d.action == "float" or d.rule == FFN_RULE}
    ints = tuple(s.int8_matmul for s in splits if s.matmul in kept_float)
    if ints:  # the int8 part of a MatMul the transformer rules kept float
        recipe = recipe.with_rules(Rule(nodes=ints, name="outlier decomposition: inliers int8"))
    total = sum(s.features for s in splits)
    report = {"threshold": threshold, "matmuls_checked": len(cands),
              "share": (sum(len(s.outliers) for s in splits) / total) if total else 0.0,
              "layers": [{"matmul": s.matmul, "features": s.features,
                          "outlier_features": len(s.outliers), "share": round(s.share, 4),
                          "int8_matmul": s.int8_matmul} for s in splits]}
    return model, recipe, report
