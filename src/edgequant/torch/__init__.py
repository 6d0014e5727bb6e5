# ruff: noqa: E402  (the extra check must run before the modules that import torch)
"""PyTorch front end: export an ``nn.Module`` to ONNX, PTQ it, or train it with QAT.

| function                     | does                                                        |
|------------------------------|-------------------------------------------------------------|
| ``export_onnx``              | module → opset-21 ONNX (dynamo exporter, dynamic batch)     |
| ``quantize``                 | export, then :func:`edgequant.quantize` (PTQ)               |
| ``prepare_qat``              | copy with fake-quant Conv/Linear (+BN, +ReLU) modules       |
| ``calibrate``                | update QAT observers without training (PTQ through QAT)     |
| ``convert``                  | QAT model → QDQ ONNX carrying exactly the trained qparams    |
| ``fit_qat``                  | a small training loop (optional distillation), rich progress|
| ``distillation_loss``        | Hinton KL(student ‖ teacher) at temperature T, times T²     |
"""

from edgequant.extras import require

require("torch", "torch", "edgequant.torch")  # one line naming the extra, not a traceback

from edgequant.torch.calibration import calibration_feeds
from edgequant.torch.convert import convert
from edgequant.torch.distill import distillation_loss, fit_qat
from edgequant.torch.export import TorchExportError, export_onnx
from edgequant.torch.fake_quant import fake_quantize, fake_quantize_lsq, fake_quantize_qparams
from edgequant.torch.prepare import (
    FloatRegion,
    QATModel,
    calibrate,
    float_region,
    freeze_bn,
    freeze_observers,
    prepare_qat,
)
from edgequant.torch.ptq import quantize

__all__ = [
    "FloatRegion",
    "QATModel",
    "TorchExportError",
    "calibrate",
    "calibration_feeds",
    "convert",
    "distillation_loss",
    "export_onnx",
    "fake_quantize",
    "fake_quantize_lsq",
    "fake_quantize_qparams",
    "fit_qat",
    "float_region",
    "freeze_bn",
    "freeze_observers",
    "prepare_qat",
    "quantize",
]
