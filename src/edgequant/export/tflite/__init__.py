"""TFLite (LiteRT) export without TensorFlow: the QDQ graph → ``.tflite`` flatbuffer.

* :func:`export_tflite` (``export.py``): float or QDQ ONNX → ``.tflite``; each tensor's
  arithmetic comes from the Q/DQ nodes it carries. Returns :class:`ExportResult`.
* ``ingest.py`` reads the QDQ graph, ``convert.py`` holds the conversion state, ``ops_*.py``
  one builder per ONNX op, ``builder.py`` writes the flatbuffer.

The TFLite reference executor lives in :mod:`edgequant.interp.tflite`, the LiteRT runner in
:mod:`edgequant.runtime.litert`.
"""

from edgequant.export.tflite.export import ExportResult, export_tflite

__all__ = ["ExportResult", "export_tflite"]
