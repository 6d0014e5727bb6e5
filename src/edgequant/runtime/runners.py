"""One way to run any model edgequant makes: ``open_runner(path_or_model).run(feeds)``.

| model                    | ``engine``                  | runner                              |
|--------------------------|-----------------------------|-------------------------------------|
| ``.onnx`` / ModelProto   | ``"onnxruntime"`` (default) | ``ort.OrtRunner`` (CPU EP)          |
| ``.onnx`` / ModelProto   | ``"reference"``             | ``reference.ReferenceRunner`` (exact) |
| ``.tflite``              | ``"litert"`` (default)      | ``litert.LiteRTRunner`` (XNNPACK)   |
| ``.tflite``              | ``"reference"``             | ``tflite_reference.TFLiteReferenceRunner`` |

(runner classes in ``edgequant.runtime.<module>``, imported on use.)

Every runner follows :class:`~edgequant.runtime.runner.Runner`: float feeds in, float outputs
out (``raw=True`` for the model's own integer types); many samples go through
:func:`edgequant.runtime.batching.run_batched`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import onnx

from edgequant.runtime.runner import Runner

log = logging.getLogger(__name__)

#: Engines ``open_runner`` accepts (``None`` picks the default for the model kind).
ENGINES = ("onnxruntime", "litert", "reference")
#: Model suffixes ``open_runner`` accepts.
SUFFIXES = (".onnx", ".tflite")
#: Engines allowed per model kind, the default first.
ALLOWED = {".onnx": ("onnxruntime", "reference"), ".tflite": ("litert", "reference")}


def _kind(model: onnx.ModelProto | str | os.PathLike) -> str:
    if isinstance(model, onnx.ModelProto):
        return ".onnx"
    if not isinstance(model, str | os.PathLike):
        raise TypeError(
            f"model of type {type(model).__name__} is not allowed: use a path or onnx.ModelProto"
        )
    p = Path(model)
    suffix = p.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"model {str(p)!r}: suffix {suffix!r} is not allowed; use {SUFFIXES}")
    if not p.is_file():
        raise FileNotFoundError(f"model {str(p)!r} does not exist")
    return suffix


def open_runner(model: onnx.ModelProto | str | os.PathLike, engine: str | None = None,
                threads: int | None = None) -> Runner:
    """Open ``model`` for inference with ``engine`` (default: by model kind, see the module
    table). ``threads``: intra-op threads for onnxruntime / LiteRT."""
    if engine is not None and engine not in ENGINES:
        raise ValueError(f"engine {engine!r} is not allowed: use one of {list(ENGINES)} or None")
    kind = _kind(model)
    allowed = ALLOWED[kind]
    engine = engine or allowed[0]
    if engine not in allowed:
        name = "ModelProto" if isinstance(model, onnx.ModelProto) else Path(model).name
        raise ValueError(
            f"engine {engine!r} cannot run {kind} model {name!r}; allowed: {list(allowed)}"
        )
    log.debug("opening %s model with %s (threads=%s)", kind, engine, threads)
    if kind == ".onnx":
        if engine == "reference":
            from edgequant.runtime.reference import ReferenceRunner

            return ReferenceRunner(model)
        from edgequant.runtime.ort import OrtRunner

        return OrtRunner(model, threads=threads)
    from edgequant.extras import require_tflite

    require_tflite(f"running {Path(model).name}")
    if engine == "reference":
        from edgequant.runtime.tflite_reference import TFLiteReferenceRunner

        return TFLiteReferenceRunner(model)
    from edgequant.runtime.litert import LiteRTRunner

    return LiteRTRunner(model, threads=threads)
