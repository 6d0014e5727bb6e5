"""Prove a written model loads and runs before it is reported as written.

ONNX: the full ``onnx.checker`` (with shape inference) and one onnxruntime run. ``.tflite``:
one LiteRT run. The sample is a calibration sample when one is at hand, else zeros of the
input shapes with symbolic dims set to 1. The quantizer builds it from the *float* model's
inputs, so an output that grew an input nobody feeds (a weight left as a graph input) fails.
A failure raises :class:`InvalidOutputError` naming the cause; callers leave no file behind.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx

from edgequant.errors import EdgequantError

log = logging.getLogger(__name__)


class InvalidOutputError(EdgequantError):
    """A model edgequant was about to write fails the checker or a runtime refuses it."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def zero_feeds(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Zeros for every model input (symbolic or unknown dims = 1)."""
    from edgequant.runtime.feeds import model_inputs, zero_sample

    return zero_sample(model_inputs(model))


def validate_onnx(model: onnx.ModelProto, sample: Mapping[str, np.ndarray] | None = None,
                  what: str = "the output model") -> None:
    """Full checker + one onnxruntime run on ``sample`` (or zeros); raises on failure."""
    from edgequant.runtime.sessions import ort_session

    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # ValidationError, InferenceError
        raise InvalidOutputError(f"{what} fails the ONNX checker: {_first_line(exc)}") from exc
    feeds = dict(sample) if sample else zero_feeds(model)
    try:
        sess = ort_session(model)
        wanted = {i.name: i.type for i in sess.get_inputs()}
        feeds = {k: _as_ort(v, wanted[k]) for k, v in feeds.items() if k in wanted}
        sess.run(None, feeds)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise InvalidOutputError(f"onnxruntime refuses {what}: {_first_line(exc)}") from exc


def _as_ort(arr: np.ndarray, ort_type: str) -> np.ndarray:
    """Cast a float sample to an integer input type (integer I/O models get zeros)."""
    names = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
             "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int64)": np.int64,
             "tensor(int32)": np.int32, "tensor(bool)": np.bool_}
    dtype = names.get(ort_type)
    if dtype is None or arr.dtype == dtype:
        return arr
    if np.issubdtype(dtype, np.integer) and np.issubdtype(arr.dtype, np.floating):
        return np.zeros(arr.shape, dtype)
    return arr.astype(dtype)


def validate_tflite(path: str | Path, sample: Mapping[str, np.ndarray] | None = None) -> None:
    """Load ``path`` in LiteRT and run it once on zeros of its input shapes."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - LiteRT is a test dependency
        log.warning("ai_edge_litert is not installed: %s not run before writing", path)
        return
    del sample  # the exporter fixes shapes (batch 1, NHWC inside): zeros of those shapes
    try:
        interp = Interpreter(model_path=str(path))
        interp.allocate_tensors()
        for d in interp.get_input_details():
            interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        interp.invoke()
    except Exception as exc:  # LiteRT raises RuntimeError / ValueError
        raise InvalidOutputError(f"LiteRT refuses the .tflite model: {_first_line(exc)}") from exc
