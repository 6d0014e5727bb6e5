"""Reading ONNX and TFLite models for people: ``inspect_model(path)`` → ``ModelSummary``."""

from edgequant.inspect.model import ModelSummary, inspect_model

__all__ = ["ModelSummary", "inspect_model"]
