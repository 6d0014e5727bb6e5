"""Exporters: one registry keyed by format name.

| format   | writes                                          | runs on                    |
|----------|-------------------------------------------------|----------------------------|
| ``qdq``    | ONNX with QuantizeLinear/DequantizeLinear pairs | onnxruntime, the interpreter |
| ``qop``    | integer-only ONNX (QLinearConv, QLinearMatMul…) | onnxruntime, the interpreter |
| ``tflite`` | a ``.tflite`` flatbuffer (no TensorFlow)        | LiteRT, edgequant's TFLite reference |
"""

from __future__ import annotations

import os
from pathlib import Path

from edgequant.export.validate import validate_onnx, validate_tflite
from edgequant.extras import require_tflite
from edgequant.graph.io import save_model
from edgequant.outputs import atomic_write, plan_outputs

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
    sources = [s for s in inputs if s]
    named = {"input model" + (f" {i + 1}" if i else ""): s for i, s in enumerate(sources)}
    out = plan_outputs(named, {"output": path})["output"]
    if fmt == "tflite":
        require_tflite("writing .tflite")
        from edgequant.export.tflite.export import export_tflite

        results = []

        def _write(tmp: str) -> None:
            results.append(export_tflite(qm.model, tmp, strict=strict, fixed_dims=fixed_dims))
            validate_tflite(tmp, sample)

        atomic_write(out, _write)
        result = results[0]
        if hasattr(result, "path"):
            result.path = out
        qm.report["tflite"] = getattr(result, "to_dict", lambda: {})()
        return out
    if fixed_dims:
        raise ValueError("fixed_dims applies to .tflite output only (ONNX keeps dynamic dims)")
    model = lower_model(qm, strict=strict) if fmt == "qop" else qm.model
    validate_onnx(model, sample, what=f"the model for {str(out)!r}")
    return save_model(model, out, inputs)
