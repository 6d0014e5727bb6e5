"""The one place edgequant opens onnxruntime sessions.

Every caller (runners, verify, calibration, speed checks, the TFLite ingest's shape probe, the
weight-only pass asking which DequantizeLinear nodes survive optimization) goes through
:func:`ort_session`, so session options (CPU execution provider, quiet logging, thread
counts, optimization level) are decided once.

| ``optimization`` | onnxruntime level          | used for                                   |
|------------------|----------------------------|--------------------------------------------|
| ``"all"``        | ``ORT_ENABLE_ALL`` (default) | running models as deployed                  |
| ``"extended"``   | ``ORT_ENABLE_EXTENDED``    | inspecting the optimized graph ORT writes  |
| ``"basic"``      | ``ORT_ENABLE_BASIC``       | constant folding only                      |
| ``"disable"``    | ``ORT_DISABLE_ALL``        | the graph exactly as written (verify)      |
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from typing import Any

import onnx
import onnxruntime as ort

from edgequant.errors import ModelLoadError

log = logging.getLogger(__name__)

#: ``optimization`` names → onnxruntime graph optimization levels.
OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
#: onnxruntime log level: errors only (warnings about unused initializers are noise here).
LOG_SEVERITY_ERROR = 3


def with_outputs(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """Copy of ``model`` whose graph also outputs the tensors ``names`` (untyped value infos:
    onnxruntime infers their types). ``model`` itself is never modified."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    m.graph.output.extend(onnx.ValueInfoProto(name=n) for n in dict.fromkeys(names) if n not in have)
    return m


def _model_bytes_or_path(model: Any, extra_outputs: Sequence[str]) -> bytes | str:
    if isinstance(model, bytes):
        model = onnx.ModelProto.FromString(model) if extra_outputs else model
    elif isinstance(model, str | os.PathLike):
        if not extra_outputs:
            return os.fspath(model)
        from edgequant.graph.io import load_model  # the safe loader (external data checks)

        model = load_model(model)
    if isinstance(model, bytes):
        return model
    if not isinstance(model, onnx.ModelProto):
        raise TypeError(
            f"model of type {type(model).__name__} is not allowed: use onnx.ModelProto, "
            "serialized bytes or a path"
        )
    return (with_outputs(model, extra_outputs) if extra_outputs else model).SerializeToString()


def ort_session(
    model: onnx.ModelProto | bytes | str | os.PathLike,
    *,
    optimization: str = "all",
    threads: int | None = None,
    extra_outputs: Sequence[str] = (),
    optimized_model_path: str | os.PathLike | None = None,
    profile_prefix: str | os.PathLike | None = None,
) -> ort.InferenceSession:
    """An onnxruntime CPU session of ``model``.

    ``optimization``: a key of :data:`OPTIMIZATION_LEVELS`. ``threads``: intra-op threads
    (inter-op fixed at 1); ``None`` leaves onnxruntime's default. ``extra_outputs``:
    intermediate tensors to expose as graph outputs too (after the declared ones; note that
    exposing a tensor keeps onnxruntime from fusing it away). ``optimized_model_path``: where
    onnxruntime writes the graph it optimized. ``profile_prefix``: turn on onnxruntime's
    profiler, writing ``<prefix>_<date>.json`` when ``session.end_profiling()`` is called
    (per-node kernel times, read by ``ptq.speed_guard.profile_nodes``).
    """
    if optimization not in OPTIMIZATION_LEVELS:
        raise ValueError(
            f"optimization {optimization!r} is not allowed: use one of {list(OPTIMIZATION_LEVELS)}"
        )
    if threads is not None and int(threads) < 1:
        raise ValueError(f"threads={threads} is not allowed: use an integer >= 1 or None")
    so = ort.SessionOptions()
    so.log_severity_level = LOG_SEVERITY_ERROR
    so.graph_optimization_level = OPTIMIZATION_LEVELS[optimization]
    if threads is not None:
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    if optimized_model_path is not None:
        so.optimized_model_filepath = os.fspath(optimized_model_path)
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = os.fspath(profile_prefix)
    source = _model_bytes_or_path(model, list(extra_outputs))
    log.debug("onnxruntime session: optimization=%s threads=%s extra outputs=%d",
              optimization, threads, len(extra_outputs))
    try:
        return ort.InferenceSession(source, sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as exc:
        if not is_ort_error(exc):
            raise
        raise ModelLoadError(f"onnxruntime cannot load the model: {ort_message(exc)}") from exc


def is_ort_error(exc: BaseException) -> bool:
    """True for onnxruntime's own exception types (they derive from ``Exception`` only)."""
    return type(exc).__module__.startswith("onnxruntime")


def ort_message(exc: BaseException) -> str:
    """onnxruntime's error text on one line, without its ``[ONNXRuntimeError] : 2 : …`` prefix
    or C++ source locations."""
    text = " ".join(str(exc).split())
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : [A-Z_]+ : ", "", text)
    text = re.sub(r"^/\S+:\d+ .*?\) ", "", text)  # "/onnxruntime_src/…cc:256 Model::Model(…) "
    return text[:300] or type(exc).__name__
