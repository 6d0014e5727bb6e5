"""Exception types. Every message names the offending node, tensor or value and what is allowed."""


class EdgequantError(Exception):
    """Base class for edgequant's own errors (caught by the CLI and printed as one line)."""


class ModelLoadError(EdgequantError, ValueError):
    """A model file cannot be read, is not ONNX, or points outside its folder."""


class CalibrationError(EdgequantError, ValueError):
    """Calibration data is missing, empty, or does not match the model's inputs."""


class RecipeError(EdgequantError, ValueError):
    """A recipe is malformed, unknown, or names things the model does not have."""


class UnsupportedOpError(EdgequantError, ValueError):
    """A node cannot be handled (quantized, exported or interpreted)."""
