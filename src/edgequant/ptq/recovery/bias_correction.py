"""Empirical bias correction (Nagel et al., 2019, §4.2): remove the expected output shift
that weight rounding causes, per output channel, by folding it into the layer's bias.

Rounding ``W`` to ``Ŵ`` changes a layer's output by ``e = layer(x, W − Ŵ)``, whose mean per
output channel is rarely zero (depthwise kernels have 9 weights per channel; at 4 bits one
rounding step is a large part of each). ``b' = b + E[e]`` over the calibration data makes the
weight-quantized layer's mean output match the float one, channel by channel. ``E[e]`` is
measured on the float model's own activations (:mod:`error_stats`), all layers in one pass.

Analytic correction from BatchNorm statistics is not offered: ``quantize`` folds BN into the
convolutions (``prepare_float``) before any recovery runs, and static recipes always have
calibration data, which measures the shift directly instead of assuming Gaussian inputs.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx

from edgequant.graph.info import GraphInfo
from edgequant.ptq.recovery.cle import set_constant
from edgequant.ptq.recovery.error_stats import LayerError

log = logging.getLogger(__name__)


def correct_biases(model: onnx.ModelProto, layers: list[LayerError]) -> tuple[onnx.ModelProto, list[str]]:
    """Fold each measured layer's per-channel ``E[e]`` into its bias (in place).

    Layers without a constant, single-use bias of shape (C_out,) are skipped (returned).
    """
    info = GraphInfo.build(model)
    skipped = []
    for layer in layers:
        b = layer.bias
        if (b is None or len(info.consumers.get(b, [])) != 1 or layer.mean_e is None
                or info.const_array(b).shape != layer.mean_e.shape):
            skipped.append(layer.node)
            continue
        bias = info.const_array(b).astype(np.float64)  # (C,)
        set_constant(model, b, bias + layer.mean_e)
    log.info("bias correction: %d layer(s) corrected, %d skipped (no usable bias)",
             len(layers) - len(skipped), len(skipped))
    return model, skipped
