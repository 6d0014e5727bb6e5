"""Bias correction after AdaRound: fold the mean output shift of the learned integer weights.

AdaRound minimises each layer's output squared error on a few thousand sampled rows; what
is left is mostly noise, but part of it is a per-channel mean shift ``E[x]·(W − Ŵ)`` the
regulariser's hard 0/1 choices bring back at the end of the run (at 4 bits one step is a
large part of each depthwise weight). As for round-to-nearest (:mod:`.bias_correction`),
the shift is measured on the float model's activations over all calibration samples, with
``Ŵ`` the dequantized AdaRound integers, and added to each layer's float bias before Q/DQ
insertion quantizes it (the integers themselves are not touched).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx

from edgequant.primitives import dequantize
from edgequant.ptq.recovery.bias_correction import correct_biases
from edgequant.ptq.recovery.error_stats import measure, static_layers
from edgequant.qparams import QParams
from edgequant.recipes.decisions import QuantPlan
from edgequant.recipes.recipe import Recipe

#: ``adaround_bias_correction="auto"`` corrects weights with fewer bits than this.
AUTO_BELOW_BITS = 8


def adaround_bias_method(recipe: Recipe) -> str:
    """``empirical``, ``sequential`` or ``none``: the recipe's ``adaround_bias_correction``
    option decided. ``sequential``: the correction runs inside sequential AdaRound (each
    layer's shift measured on its deployed inputs, :mod:`.adaround_sequential`), so the
    float-input correction after AdaRound (:func:`correct_adaround_biases`) does not."""
    from edgequant.ptq.recovery.adaround_modes import adaround_mode
    from edgequant.recipes.options import option

    value = option(recipe, "adaround_bias_correction")
    if value == "auto":
        bits = recipe.weights.qtype.bits if recipe.weights is not None else 32
        value = "empirical" if bits < AUTO_BELOW_BITS else "none"
    if value == "empirical" and adaround_mode(recipe) == "sequential":
        return "sequential"
    return value


def correct_adaround_biases(float_model: onnx.ModelProto, qm: onnx.ModelProto, plan: QuantPlan,
                            ints: Mapping[str, tuple[QParams, np.ndarray]], calibration,
                            batch_size: int, batch_axes=None) -> tuple[onnx.ModelProto, dict]:
    """Measure each AdaRounded layer's per-channel mean output shift on ``float_model`` and add
    it to the same-named bias of ``qm`` (the float model about to get its Q/DQ; edited in
    place). Returns ``qm`` and a report: layers corrected, skipped, mean |shift| before."""
    from edgequant.ptq.recovery import calibration_batches

    layers = [la for la in static_layers(float_model, plan) if la.weight in ints]
    for la in layers:
        qp, q = ints[la.weight]
        la.w_hat = dequantize(q, qp).astype(np.float32)  # the weights the model will hold
    batches, _ = calibration_batches(float_model, calibration, batch_size, batch_axes)
    measured = measure(float_model, layers, batches)
    shift = [float(np.mean(np.abs(la.mean_e))) for la in measured]
    qm, skipped = correct_biases(qm, measured)
    return qm, {"layers": len(measured) - len(skipped), "skipped": skipped,
                "mean_abs_shift": float(np.mean(shift)) if shift else 0.0}
