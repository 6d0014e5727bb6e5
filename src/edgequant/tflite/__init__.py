"""TFLite (LiteRT) export without TensorFlow: writer, op builders, reference executor, runner.

Public API:

* :func:`export_tflite` (``export.py``): float or QDQ ONNX → ``.tflite`` in mode fp32 / fp16 /
  dynamic / int8 / int16x8, returns :class:`ExportResult`.
* :class:`ReferenceInterpreter` (``reference.py``): numpy executor of the written file; its
  integer kernels reproduce LiteRT's builtin kernels (``kernels="builtin"``) or XNNPACK's
  (``kernels="xnnpack"``) bit for bit.
* :class:`LiteRTRunner` and :func:`verify_tflite` (``runner.py``): run in LiteRT, compare with
  the reference in LSB on both kernel paths.
"""

from edgequant.tflite.export import ExportResult, export_tflite
from edgequant.tflite.reference import ReferenceInterpreter
from edgequant.tflite.runner import LiteRTRunner, verify_tflite

__all__ = ["ExportResult", "LiteRTRunner", "ReferenceInterpreter", "export_tflite",
           "verify_tflite"]
