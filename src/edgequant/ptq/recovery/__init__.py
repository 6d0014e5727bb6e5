"""Post-training accuracy recovery: float-graph rewrites that make the same integer model
closer to float, with no training (docs/ptq_recovery.md).

:func:`recover` runs the techniques a recipe's options enable, in order, on the float model
``quantize`` is about to calibrate and quantize:

1. ``cle`` — cross-layer equalization (:mod:`.cle`); the plan is resolved again afterwards.
2. ``weight_clip`` — MSE-optimal per-channel weight ranges (:mod:`.weight_clip`); ``auto``
   (the default) searches weights of at most 4 bits. The qparams go back to ``quantize``.
3. ``bias_correction`` — per-channel mean shift of weight rounding folded into the biases
   (:mod:`.bias_correction`), measured on the calibration data; ``auto`` (the default) does
   it for weights below 8 bits.

Per-layer weight SQNR and weight-rounding output SQNR before / after go to
``report["recovery"]`` (:mod:`.layer_sqnr`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from edgequant.ptq.recovery.bias_correction import correct_biases
from edgequant.ptq.recovery.cle import equalize
from edgequant.ptq.recovery.error_stats import measure, static_layers
from edgequant.ptq.recovery.layer_sqnr import sqnr_table
from edgequant.ptq.recovery.stats import Batches
from edgequant.ptq.recovery.weight_clip import clip_method, clipped_weights
from edgequant.qparams import QParams
from edgequant.recipes.decisions import QuantPlan
from edgequant.recipes.options import option
from edgequant.recipes.recipe import Recipe

log = logging.getLogger(__name__)

__all__ = ["Recovered", "bias_method", "calibration_batches", "enabled", "recover"]


@dataclass
class Recovered:
    """What :func:`recover` hands back to ``quantize``."""

    model: onnx.ModelProto
    plan: QuantPlan
    #: the calibration data, made re-iterable when it was a one-shot iterator
    calibration: Any
    report: dict[str, Any] = field(default_factory=dict)
    #: searched weight qparams (``weight_clip``); the quantizer's given qparams win over them
    weight_qparams: dict[str, QParams] = field(default_factory=dict)


def enabled(recipe: Recipe) -> list[str]:
    """The recovery techniques ``recipe`` turns on, in the order they run."""
    out = []
    if recipe.mode == "static" and option(recipe, "cle"):
        out.append("cle")
    if clip_method(recipe) != "none":
        out.append(f"weight_clip ({clip_method(recipe)})")
    if recipe.mode == "static" and bias_method(recipe) != "none":
        out.append(f"bias_correction ({bias_method(recipe)})")
    return out


#: ``bias_correction="auto"`` corrects recipes whose weights have fewer bits than this: on
#: EfficientNet-Lite0 it lifts w4a8 from unusable, while in w8a8 it raised the output cosine
#: but lost top-1 agreement (bench/ptq_recovery.py), so 8-bit weights are left alone.
AUTO_BELOW_BITS = 8


def bias_method(recipe: Recipe) -> str:
    """The bias-correction method ``recipe`` asks for, ``auto`` decided: none | empirical."""
    value = option(recipe, "bias_correction")
    if value != "auto":
        return value
    if option(recipe, "adaround"):  # AdaRound's rounding is fitted to the float outputs:
        return "none"               # an RTN-based bias shift would pull it off target
    bits = recipe.weights.qtype.bits if recipe.weights is not None else 32
    return "empirical" if bits < AUTO_BELOW_BITS else "none"


def calibration_batches(model: onnx.ModelProto, calibration, batch_size: int,
                        batch_axes: Mapping[str, int] | None = None) -> tuple[Batches, Any]:
    """A callable yielding fresh calibration batches on every call, and the calibration data
    to hand on (a one-shot iterator of batches is kept as a list)."""
    from edgequant.ptq import calibrate

    if not isinstance(calibration, str | os.PathLike | Mapping):
        if not isinstance(calibration, Iterable):
            raise TypeError(f"calibration of type {type(calibration).__name__} is not allowed: "
                            "use a DATA.npz path, a dict input name → array or an iterable of "
                            "such dicts")
        calibration = list(calibration)
    return (lambda: calibrate.calibration_batches(model, calibration, batch_size,
                                                  batch_axes)[0]), calibration


def recover(float_model: onnx.ModelProto, plan: QuantPlan, recipe: Recipe, calibration, *,
            overrides: Mapping[str, QParams] | None = None, batch_size: int = 32,
            batch_axes: Mapping[str, int] | None = None) -> Recovered:
    """Run the techniques ``recipe`` enables on ``float_model`` (a copy is edited).

    ``plan`` is the plan resolved for ``float_model``; it is resolved again when a rewrite
    changed the graph. ``overrides`` are given weight qparams (they win, as in Q/DQ
    insertion). Returns the model and plan to quantize, and ``report`` with per-layer SQNR.
    """
    steps = enabled(recipe)
    if not steps:
        return Recovered(float_model, plan, calibration)
    if calibration is None:  # qparams given for every activation (QAT): nothing to measure on
        log.info("recovery (%s) skipped: no calibration data", ", ".join(steps))
        return Recovered(float_model, plan, calibration)
    batches, calibration = calibration_batches(float_model, calibration, batch_size, batch_axes)
    model = onnx.ModelProto()
    model.CopyFrom(float_model)
    report: dict[str, Any] = {"techniques": steps}
    corrected = any(s.startswith("bias_correction") for s in steps)
    clip: dict[str, QParams] = {}
    if not corrected and "cle" not in steps:  # weight clip search alone: nothing to measure
        clip, report["weight_clip"] = clipped_weights(model, plan, overrides)
        return Recovered(model, plan, calibration, report, clip)
    before = measure(model, static_layers(model, plan, overrides), batches)
    if "cle" in steps:
        model, summary = equalize(model, batches)
        report["cle"] = summary
        if summary["pairs"]:
            from edgequant.recipes.plan import resolve

            plan = resolve(recipe, model, io=plan.io)
    if any(s.startswith("weight_clip") for s in steps):
        clip, report["weight_clip"] = clipped_weights(model, plan, overrides)
    weights = {**clip, **(overrides or {})}
    after = measure(model, static_layers(model, plan, weights), batches) \
        if "cle" in steps or clip else before
    if corrected:
        model, skipped = correct_biases(model, after)
        report["bias_correction"] = {"layers": len(after) - len(skipped), "skipped": skipped}
    changed = "".join(f"+{t}" for t, on in (("cle", "cle" in steps), ("weight_clip", clip)) if on)
    report["layers"] = sqnr_table(before, after, corrected, changed)
    sq = [r["output_sqnr_db"][-1] for r in report["layers"] if r["output_sqnr_db"][-1] is not None]
    if sq:
        log.info("recovery: median weight-rounding output SQNR %.2f dB over %d layer(s)",
                 float(np.median(sq)), len(sq))
    return Recovered(model, plan, calibration, report, clip)
