"""Exporters: one registry keyed by format name.

| format   | writes                                          | runs on                    |
|----------|-------------------------------------------------|----------------------------|
| ``qdq``    | ONNX with QuantizeLinear/DequantizeLinear pairs | onnxruntime, the interpreter |
| ``qop``    | integer-only ONNX (QLinearConv, QLinearMatMul…) | onnxruntime, the interpreter |
| ``tflite`` | a ``.tflite`` flatbuffer (no TensorFlow)        | LiteRT, edgequant's TFLite reference |
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edgequant.export.validate import validate_onnx, validate_tflite
from edgequant.graph.io import save_model

FORMATS = ("qdq", "qop", "tflite")


def format_for(path: str | os.PathLike, fmt: str | None = None, to: str | None = None) -> str:
    """Pick the export format from ``--to`` / ``--format`` / the file suffix."""
    if to == "tflite" or Path(path).suffix == ".tflite":
        return "tflite"
    if to not in (None, "onnx"):
        raise ValueError(f"--to {to!r} is not allowed: use onnx or tflite")
    fmt = fmt or "qdq"
    if fmt not in ("qdq", "qop"):
        raise ValueError(f"--format {fmt!r} is not allowed: use qdq or qop")
    return fmt


def lower_model(qm, requantization: str = "float", strict: bool = False):
    """The QuantizedModel's QDQ graph lowered to integer-only QOperator form."""
    from edgequant.export.qop.lower import lower

    result = lower(qm.model, requantization, strict=strict)
    qm.report.setdefault("lowering", {})["float_nodes"] = [
        {"node": n, "op_type": o, "reason": r} for n, o, r in result.float_nodes]
    return result.model


def export(qm, path: str | os.PathLike, fmt: str, *, strict: bool = False,
           inputs: tuple = (), sample=None, fixed_dims=None) -> Path:
    """Write ``qm`` in format ``fmt`` atomically; never onto one of ``inputs``.

    The model is validated before it lands at ``path`` (``edgequant.export.validate``):
    ONNX passes the full checker and runs in onnxruntime, ``.tflite`` runs in LiteRT, on
    ``sample`` (one batch, input name → array) or zeros. A failure raises
    ``InvalidOutputError`` naming the cause and leaves no file behind. ``fixed_dims``
    (``.tflite`` only) sizes named dynamic dims.
    """
    out = Path(path)
    for src in inputs:
        if src and Path(src).exists() and out.exists() and out.resolve() == Path(src).resolve():
            raise ValueError(f"output path {str(out)!r} is the input model; choose another path")
    if fmt == "tflite":
        from edgequant.export.tflite.export import export_tflite

        if not out.parent.is_dir():
            raise FileNotFoundError(f"output folder {str(out.parent)!r} does not exist")
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tflite", dir=out.parent)
        os.close(fd)
        try:
            result = export_tflite(qm.model, tmp, strict=strict, fixed_dims=fixed_dims)
            validate_tflite(tmp, sample)
            os.replace(tmp, out)
        finally:
            Path(tmp).unlink(missing_ok=True)
        if hasattr(result, "path"):
            result.path = out
        qm.report["tflite"] = getattr(result, "to_dict", lambda: {})()
        return out
    if fixed_dims:
        raise ValueError("fixed_dims applies to .tflite output only (ONNX keeps dynamic dims)")
    model = lower_model(qm, strict=strict) if fmt == "qop" else qm.model
    validate_onnx(model, sample, what=f"the model for {str(out)!r}")
    return save_model(model, out, inputs)
