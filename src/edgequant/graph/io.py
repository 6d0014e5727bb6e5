"""Safe model loading and atomic saving.

Loading checks what users most often get wrong before anything else touches the model: a
missing or truncated file, a file that is not ONNX, external-data paths escaping the model's
folder (``graph.external_data``), and NaN/Inf in weights. Saving goes through
``edgequant.outputs.atomic_write`` (temp file + rename, the user's umask), so a failure never
leaves a half-written model and an input is never overwritten.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from edgequant.errors import EdgequantError, ModelLoadError
from edgequant.graph.external_data import check_external_data, load_external_data
from edgequant.input_files import check_input_file
from edgequant.outputs import atomic_write

__all__ = ["as_model_proto", "atomic_write", "check_external_data", "check_finite_weights",
           "load_model", "save_model"]


def load_model(path: str | os.PathLike) -> onnx.ModelProto:
    """Read an ONNX model, refusing anything unsafe or malformed with a one-line reason."""
    p = check_input_file(path, "model file")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError, RuntimeWarning-ish subclasses...
        raise ModelLoadError(
            f"{str(p)!r} is not a readable ONNX model (truncated or not ONNX): "
            f"{type(exc).__name__}"
        ) from exc
    if not model.HasField("graph") or len(model.graph.node) == 0:
        raise ModelLoadError(f"{str(p)!r} is not an ONNX model: it has no graph nodes")
    load_external_data(model, p.parent)  # checks every reference before reading any
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid"
        raise ModelLoadError(f"{str(p)!r} fails onnx.checker: {first}") from exc
    _check_elem_types(model, p)
    return model


def _check_elem_types(model: onnx.ModelProto, p: Path) -> None:
    """Graph inputs / outputs must have ONNX element types (the checker does not look)."""
    known = set(onnx.TensorProto.DataType.values()) - {onnx.TensorProto.UNDEFINED}
    for vi in [*model.graph.input, *model.graph.output]:
        tt = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and tt.elem_type not in known:
            raise ModelLoadError(f"{str(p)!r}: graph input/output {vi.name!r} has element type "
                                 f"{tt.elem_type}, which is not an ONNX tensor type")


def as_model_proto(model) -> onnx.ModelProto:
    """Accept a path, an ``onnx.ModelProto`` or an ``onnx_ir.Model``; return a ModelProto copy."""
    if isinstance(model, str | os.PathLike):
        return load_model(model)
    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy
    try:
        import onnx_ir as ir

        if isinstance(model, ir.Model):
            return ir.to_proto(model)
    except ImportError:  # pragma: no cover - onnx_ir is a core dependency
        pass
    raise TypeError(
        f"model of type {type(model).__name__} is not allowed: "
        "use a path, onnx.ModelProto or onnx_ir.Model"
    )


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """A deep copy of ``model`` (passes that edit in place work on it; the input stays)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def check_finite_weights(model: onnx.ModelProto) -> None:
    """Refuse NaN/Inf in float initializers, naming the first offending tensor."""
    for t in model.graph.initializer:
        if t.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16,
                               onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16):
            continue
        arr = numpy_helper.to_array(t)
        if not np.all(np.isfinite(arr)):
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise EdgequantError(
                f"initializer {t.name!r} holds {bad} NaN/Inf value(s); weights must be finite"
            )


def save_model(model: onnx.ModelProto, path: str | os.PathLike,
               inputs: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Write ``model`` atomically as a single .onnx file (models here stay under 2 GB), never
    onto one of ``inputs``. Exporters validate the model first (``export.validate``)."""
    return atomic_write(path, lambda tmp: onnx.save_model(model, tmp), inputs)
