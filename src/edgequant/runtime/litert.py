"""LiteRT (``ai_edge_litert``) behind the :class:`~edgequant.runtime.runner.Runner` protocol.

``xnnpack=False`` selects LiteRT's plain builtin kernels (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``);
the default applies the XNNPACK delegate, which takes over the ops it supports. Integer I/O
qparams come from the I/O tensors' own quantization, as LiteRT reports it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from edgequant.export.tflite.flatbuffer_walk import InvalidModelError
from edgequant.runtime.runner import IORunner, io_quant_of_tensor

#: Kernel paths (name → XNNPACK on?) that ``verify`` compares against the TFLite reference.
KERNEL_PATHS = {"builtin": False, "xnnpack": True}


def litert_missing(path: str | Path, e: Exception) -> ImportError:
    """The error for running ``path`` without the tflite extra installed (one line, caught by
    the CLI like every ``EdgequantError``)."""
    from edgequant.extras import MissingExtraError

    return MissingExtraError(f"running {Path(path).name} needs the tflite extra: "
                             f"pip install 'edgequant[tflite]' ({e})")


def litert_message(exc: Exception) -> str:
    """LiteRT's error text on one line (it glues its messages together without breaks)."""
    text = re.sub(r"\s+", " ", str(exc)).strip()
    text = re.sub(r"(delegate)(?=[a-z])", r"\1; ", text)  # "…delegateunsupported…"
    text = re.sub(r"\.(?=[A-Z])", ". ", text)  # "…Was 99.Tensor 6…"
    return text[:300] or type(exc).__name__


def check_tflite_file(path: str | Path) -> Path:
    """``path`` as a Path once it is a regular file holding a verified TFLite flatbuffer
    (:func:`~edgequant.export.tflite.verify_buffer.read_tflite`: every offset, index and
    quantization array checked, so LiteRT never reads a malformed file)."""
    try:
        from edgequant.export.tflite.verify_buffer import read_tflite
    except ImportError as e:
        raise litert_missing(path, e) from e
    read_tflite(path)
    return Path(path)


class LiteRTRunner(IORunner):
    """LiteRT interpreter for one ``.tflite`` file."""

    engine = "litert"

    def __init__(self, path: str | Path, threads: int | None = 1, xnnpack: bool = True) -> None:
        check_tflite_file(path)
        try:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType
        except ImportError as e:
            raise litert_missing(path, e) from e

        kwargs = {}
        if not xnnpack:
            kwargs["experimental_op_resolver_type"] = (
                OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.path = Path(path)
        self.xnnpack = xnnpack
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads or 1,
                                           **kwargs)
            self.interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            raise InvalidModelError(f"{self.path.name}: LiteRT cannot prepare it"
                                    f"{' with XNNPACK' if xnnpack else ''}: "
                                    f"{litert_message(exc)}") from exc
        self._ins = self.interpreter.get_input_details()
        self._outs = self.interpreter.get_output_details()
        self.input_names = [d["name"] for d in self._ins]
        self.output_names = [d["name"] for d in self._outs]
        self.input_dtypes = {d["name"]: np.dtype(d["dtype"]) for d in self._ins}
        # shape_signature holds -1 for a dynamic dimension
        self.input_shapes = {
            d["name"]: tuple(int(s) if s > 0 else None for s in d.get("shape_signature", d["shape"]))
            for d in self._ins
        }
        self.io = {}
        for d in [*self._ins, *self._outs]:
            q = d["quantization_parameters"]
            io = io_quant_of_tensor(d["dtype"], q["scales"], q["zero_points"])
            if io is not None:
                self.io[d["name"]] = io

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        it = self.interpreter
        arrays = {d["name"]: np.ascontiguousarray(feeds[d["name"]]) for d in self._ins}
        resized = False
        for d in self._ins:
            x, declared = arrays[d["name"]], self.input_shapes[d["name"]]
            if tuple(x.shape) == tuple(d["shape"]):
                continue
            if len(x.shape) != len(declared) or any(
                    s is not None and s != g for s, g in zip(declared, x.shape, strict=True)):
                want = ", ".join("?" if s is None else str(s) for s in declared)
                raise ValueError(f"input {d['name']!r}: shape {x.shape} does not fit the model "
                                 f"shape ({want})")
            it.resize_tensor_input(d["index"], list(x.shape))  # a dynamic dim takes x's size
            resized = True
        try:
            if resized:
                it.allocate_tensors()
                self._ins = it.get_input_details()
                self._outs = it.get_output_details()
            for d in self._ins:
                it.set_tensor(d["index"], arrays[d["name"]])
            it.invoke()
        except (RuntimeError, ValueError) as exc:
            raise InvalidModelError(f"{self.path.name}: LiteRT cannot run it: "
                                    f"{litert_message(exc)}") from exc
        return [np.array(it.get_tensor(d["index"])) for d in self._outs]
