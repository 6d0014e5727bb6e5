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
        from edgequant.graph.passes.smoothquant import smooth_model

        model, extra["smoothquant"] = smooth_model(model, recipe, batches, alpha)
        notes.append(f"SmoothQuant (alpha={alpha}): {len(extra['smoothquant'])} LayerNorm "
                     "group(s) smoothed")
    if threshold is not None:
        from edgequant.graph.passes.outlier_split import split_outliers

        model, recipe, extra["outliers"] = split_outliers(model, recipe, batches, threshold)
    GraphInfo.build(model)  # fail here, not in a later stage, if an edit broke the graph
    return model, recipe, calibration, extra
