"""TFLite (LiteRT) export without TensorFlow: writer, op builders, reference executor, runner."""

from edgequant.tflite.export import ExportResult, export_tflite

__all__ = ["ExportResult", "export_tflite"]
