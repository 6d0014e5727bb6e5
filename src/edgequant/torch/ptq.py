"""PTQ of an ``nn.Module``: export to ONNX, then :func:`edgequant.quantize`."""

from __future__ import annotations

import torch
from torch import nn

from edgequant.ptq.quantizer import QuantizedModel
from edgequant.ptq.quantizer import quantize as quantize_onnx
from edgequant.runtime.feeds import model_inputs
from edgequant.torch.calibration import calibration_feeds
from edgequant.torch.export import as_tuple, export_onnx


def quantize(module: nn.Module, example_inputs, recipe="w8a8", calibration=None,
             **options) -> QuantizedModel:
    """Export ``module`` (:func:`export_onnx`) and quantize the ONNX with ``edgequant.quantize``.

    ``calibration``: a DataLoader / iterable of batches (tensors, numpy arrays or ``(x, y)``
    tuples) or a dict input name → array; ``options`` go to :func:`edgequant.quantize`
    (``io``, ``strict``, ``qparams``, ...). The result is what ``edgequant.quantize`` returns
    for the exported model.
    """
    args = as_tuple(example_inputs)
    model = export_onnx(module, args)
    feeds = None
    if calibration is not None:
        names = [i.name for i in model_inputs(model)]
        shapes = [tuple(a.shape[1:]) for a in args if isinstance(a, torch.Tensor)]
        feeds = calibration_feeds(calibration, names, shapes)
    return quantize_onnx(model, recipe, calibration=feeds, **options)
