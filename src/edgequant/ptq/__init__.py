"""Post-training quantization: calibration and ``quantize()`` → :class:`QuantizedModel`."""

from edgequant.ptq.quantizer import QuantizedModel, quantize

__all__ = ["QuantizedModel", "quantize"]
