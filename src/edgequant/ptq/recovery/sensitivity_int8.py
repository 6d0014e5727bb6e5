"""Which low-bit layers keep 8-bit weights: chosen by measured sensitivity, within a byte budget.

``w4_keep_int8="sensitivity"`` (the per-layer search of HAWQ and AIMET's automatic mixed
precision, with one measurement per layer): for every layer the plan gives low-bit weights
(:func:`.low_bit.low_bit_layers`), the *float* model is run on the first
``w4_sensitivity_samples`` calibration samples with only that layer's weights replaced by the
low-bit weights the pipeline would store — the same qparams (the ``weight_clip`` search when
it is on) and, when the recipe bias-corrects, the same empirically corrected bias. The layer's
sensitivity is the output noise it causes alone,

    s_l = Σ (y_l − y)² / Σ y²          (first model output, all measured samples)

Everything else stays float because the choice is between int4 and int8 weights of *this*
layer: its input/output activation rounding is the same either way, and a w8a8 (or all-int4)
context would add its own error, larger than many single layers' int4 noise, to every
measurement. For small, independent perturbations output noise adds up over layers, so the
total is lowered most per byte by keeping the layers with the largest ``s_l / extra bytes``
at 8 bits: a greedy fill of the budget ``w4_int8_budget`` × (bytes of all those weights at 8
bits − bytes at their low bits), skipping a layer that no longer fits and going on with
smaller ones. ``0`` keeps every layer low-bit, ``1`` every layer int8.

With ``adaround`` the stored integers are learned later; the measurement uses the
round-to-nearest ones (with the bias correction after AdaRound when that is on) as their
stand-in. It runs on the float model before ``cle`` rewrites it (the choice is made first).

Cost: one weight-error pass (when bias-correcting) and one onnxruntime session + run per
layer (EfficientNet-Lite0, 50 layers, 32 crops: 75-90 s on a busy 2-core machine).
bench/w4_sensitivity_proxies.py compares this measurement with a w8a8 context and with each
layer's local output noise at equal size (docs/recovery_w4.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx

from edgequant.errors import CalibrationError
from edgequant.graph.info import GraphInfo
from edgequant.ptq.recovery.cle import set_constant
from edgequant.ptq.recovery.error_stats import LayerError, measure, static_layers
from edgequant.ptq.recovery.low_bit import low_bit_layers, weight_bytes
from edgequant.ptq.recovery.samples import calibration_batches, reusable
from edgequant.ptq.recovery.weight_clip import clip_method, clipped_weights
from edgequant.recipes.decisions import QuantPlan
from edgequant.recipes.options import option
from edgequant.recipes.recipe import Recipe
from edgequant.runtime.sessions import ort_session

log = logging.getLogger(__name__)

#: What ``sensitivity`` in the report measures.
METRIC = "relative output MSE: sum (y_layer_low_bit - y_float)^2 / sum y_float^2, rest float"


@dataclass
class LayerCost:
    """One low-bit layer: its measured sensitivity and what 8-bit weights would cost."""

    node: str
    weight: str
    params: int
    #: bytes 8-bit weights add over the layer's low-bit weights
    extra_bytes: int
    #: relative output MSE with only this layer's weights low-bit (see the module docstring)
    sensitivity: float
    int8: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields."""
        return asdict(self)


def _corrects_bias(recipe: Recipe) -> bool:
    """Whether the pipeline folds the weight-rounding shift into the biases of this recipe
    (RTN bias correction, or the correction after AdaRound)."""
    from edgequant.ptq.recovery import bias_method
    from edgequant.ptq.recovery.adaround_bias import adaround_bias_method

    if option(recipe, "adaround"):
        return adaround_bias_method(recipe) == "empirical"
    return bias_method(recipe) == "empirical"


def _noise(sess, batches: list[dict[str, np.ndarray]], reference: list[np.ndarray]) -> float:
    """Σ (y − reference)² over the batches, float64."""
    first = sess.get_outputs()[0].name
    total = 0.0
    for feeds, ref in zip(batches, reference, strict=True):
        out = sess.run([first], feeds)[0].astype(np.float64)  # (B, ...) first output
        total += float(np.sum((out - ref) ** 2))
    return total


def measure_sensitivity(model: onnx.ModelProto, plan: QuantPlan, recipe: Recipe,
                        batches: list[dict[str, np.ndarray]]) -> list[LayerCost]:
    """:class:`LayerCost` of every low-bit layer of ``plan`` (graph order), measured on
    ``batches`` of the float ``model`` (which is not changed)."""
    low = {n.name or n.output[0] for n in low_bit_layers(model, plan)}
    clip = clipped_weights(model, plan)[0] if clip_method(recipe) == "mse" else {}
    layers = [la for la in static_layers(model, plan, clip) if la.node in low]
    if _corrects_bias(recipe) and layers:
        # E[layer(x, W − Ŵ)] per channel, all layers in one pass (what bias correction folds;
        # a layer measure() cannot shape stays uncorrected, as in bias correction)
        measure(model, layers, lambda: iter(batches))
    work = onnx.ModelProto()
    work.CopyFrom(model)
    sess = ort_session(work)
    first = sess.get_outputs()[0].name
    reference = [sess.run([first], f)[0].astype(np.float64) for f in batches]  # float outputs
    signal = sum(float(np.sum(r ** 2)) for r in reference)
    if signal == 0:
        raise CalibrationError("w4_keep_int8='sensitivity': the float model's first output is "
                               "all zero on the calibration samples; nothing to measure against")
    info = GraphInfo.build(work)
    out = []
    for la in layers:
        # a shared bias is not corrected (bias_correction skips it too)
        shared = la.bias is not None and len(info.consumers.get(la.bias, [])) != 1
        bias = info.const_array(la.bias).astype(np.float64) if la.bias and not shared \
            else None  # (C,)
        noise = _with_low_bit(work, la, bias,
                              lambda m: _noise(ort_session(m), batches, reference))
        n = int(la.w.size)
        bits = plan.tensors[la.weight].spec.qtype.bits
        out.append(LayerCost(la.node, la.weight, n, weight_bytes(n, 8) - weight_bytes(n, bits),
                             noise / signal))
        log.debug("sensitivity of %s: %.3g", la.node, noise / signal)
    return out


def _with_low_bit(model: onnx.ModelProto, la: LayerError, bias: np.ndarray | None, run) -> float:
    """``run(model)`` with ``la``'s weight (and its float ``bias`` shifted by the measured
    mean output change, when there is one) replaced by the low-bit ones, then the float
    values put back."""
    corrected = la.mean_e is not None and bias is not None and bias.shape == la.mean_e.shape
    set_constant(model, la.weight, la.w_hat)
    if corrected:
        set_constant(model, la.bias, bias + la.mean_e)
    try:
        return run(model)
    finally:
        set_constant(model, la.weight, la.w)
        if corrected:
            set_constant(model, la.bias, bias)


def choose_int8(costs: list[LayerCost], budget: float) -> list[LayerCost]:
    """Mark (``int8=True``) the layers to keep at 8 bits: most sensitivity per extra byte
    first, while their extra bytes fit in ``budget`` × the extra bytes of all layers. Returns
    ``costs`` ranked that way (most sensitive per byte first)."""
    if isinstance(budget, bool) or not isinstance(budget, int | float) or not 0 <= budget <= 1:
        raise ValueError(f"w4_int8_budget={budget!r} is not allowed: use a number in [0, 1] "
                         "(the fraction of the bytes from all-low-bit to all-int8 weights)")
    allowed = budget * sum(c.extra_bytes for c in costs)
    ranked = sorted(costs, key=lambda c: (-c.sensitivity / max(c.extra_bytes, 1), c.node))
    spent = 0
    for c in ranked:
        c.int8 = spent + c.extra_bytes <= allowed
        spent += c.extra_bytes if c.int8 else 0
    return ranked


def sensitive_layers(model: onnx.ModelProto, plan: QuantPlan, recipe: Recipe, calibration, *,
                     batch_size: int = 32, batch_axes: dict[str, int] | None = None
                     ) -> tuple[list[str], dict[str, Any], Any]:
    """The layers ``w4_keep_int8="sensitivity"`` keeps at 8 bits (graph order), the report
    entries (budget, samples, seconds, every layer's cost ranked) and the calibration data
    (re-iterable)."""
    budget = option(recipe, "w4_int8_budget")
    if not low_bit_layers(model, plan):  # e.g. w8a8: nothing to measure
        return [], {"budget": budget, "metric": METRIC, "samples": 0, "seconds": 0.0,
                    "ranked": []}, calibration
    if calibration is None:
        raise CalibrationError("w4_keep_int8='sensitivity' measures each layer on calibration "
                               "data: give calibration samples (or use first_last_depthwise)")
    calibration = reusable(calibration)
    t0 = time.perf_counter()
    n = option(recipe, "w4_sensitivity_samples")
    batches, seen = calibration_batches(model, calibration, batch_size, batch_axes, limit=n)
    if not seen:
        raise CalibrationError("w4_keep_int8='sensitivity': the calibration set is empty")
    costs = measure_sensitivity(model, plan, recipe, batches)
    ranked = choose_int8(costs, budget)
    order = {c.node: i for i, c in enumerate(costs)}
    nodes = sorted((c.node for c in ranked if c.int8), key=order.__getitem__)
    seconds = time.perf_counter() - t0
    log.info("w4_keep_int8=sensitivity: %d of %d layer(s) int8 within budget %.3f (%d samples, "
             "%.1f s)", len(nodes), len(costs), budget, seen, seconds)
    return nodes, {"budget": budget, "metric": METRIC, "samples": seen,
                   "seconds": round(seconds, 2),
                   "ranked": [c.to_dict() for c in ranked]}, calibration
