"""One way to run any model edgequant makes: ``open_runner(path).run(feeds)``.

| model / engine            | backend                                         |
|---------------------------|-------------------------------------------------|
| ``.onnx``                 | onnxruntime ``InferenceSession`` (CPU EP)       |
| ``.tflite``               | ``edgequant.runtime.litert.LiteRTRunner``        |
| ``engine="reference"``    | ``edgequant.interp.Interpreter`` (integer-exact)|

Every runner takes *float* feeds and returns *float* outputs, whatever the model's I/O types,
so one calibration / evaluation array fits every model in a comparison: a model with integer
inputs/outputs (``quantize(..., io="int8"|"uint8")``) records each I/O tensor's qparams in the
metadata ``edgequant.io`` (``{name: {"dtype", "scale", "zero_point"}}``; for ``.tflite`` the
tensors' own quantization), and the runner quantizes float feeds and dequantizes integer
outputs with them. ``run(feeds, raw=True)`` skips that and exchanges the model's own types.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edgequant.graph.contract import META_IO
from edgequant.primitives import dequantize, quantize
from edgequant.qparams import QParams
from edgequant.spec import PerTensor, QType

log = logging.getLogger(__name__)

#: Engines ``open_runner`` accepts (``None`` picks the backend from the file suffix).
ENGINES = ("onnxruntime", "litert", "reference")
#: Model suffixes ``open_runner`` accepts.
SUFFIXES = (".onnx", ".tflite")


_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(int16)": np.int16,
    "tensor(uint16)": np.uint16,
    "tensor(int32)": np.int32,
    "tensor(uint32)": np.uint32,
    "tensor(int64)": np.int64,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}


@runtime_checkable
class Runner(Protocol):
    """A loaded model that maps named float feeds to its outputs (in ``output_names`` order).

    ``input_shapes`` holds each input's declared shape with ``None`` for a dynamic dimension,
    so callers can tell whether the batch dimension is fixed (e.g. at 1).
    """

    input_names: list[str]
    output_names: list[str]
    input_dtypes: dict[str, np.dtype]
    input_shapes: dict[str, tuple[int | None, ...]]

    def run(self, feeds: Mapping[str, np.ndarray], raw: bool = False) -> list[np.ndarray]:
        """Run one batch; ``raw=True`` exchanges the model's own (integer) I/O types."""
        ...


@dataclass(frozen=True)
class IOQuant:
    """Quantization of one integer model input/output (per tensor)."""

    dtype: str
    scale: float
    zero_point: int

    @property
    def qparams(self) -> QParams:
        """As :class:`QParams` for :func:`edgequant.primitives.quantize`."""
        qtype = QType.parse(self.dtype)
        return QParams(
            scale=np.asarray(self.scale, dtype=np.float32),
            zero_point=np.asarray(self.zero_point, dtype=qtype.numpy_dtype),
            qtype=qtype,
            granularity=PerTensor(),
        )


def parse_io_metadata(text: str | None) -> dict[str, IOQuant]:
    """Parse the ``edgequant.io`` metadata JSON (``None`` or empty → no integer I/O)."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"metadata {META_IO!r} is not valid JSON: {e}") from e
    if not isinstance(raw, dict):
        raise ValueError(f"metadata {META_IO!r} must be a JSON object name → qparams")
    out = {}
    for name, v in raw.items():
        if not isinstance(v, dict) or not {"dtype", "scale", "zero_point"} <= set(v):
            raise ValueError(
                f"metadata {META_IO!r} entry {name!r} = {v!r}: "
                "expected {'dtype', 'scale', 'zero_point'}"
            )
        out[name] = IOQuant(str(v["dtype"]), float(v["scale"]), int(v["zero_point"]))
    return out


class _IORunner:
    """Shared float ↔ integer I/O handling; subclasses implement ``_run(feeds) -> list``."""

    input_names: list[str]
    output_names: list[str]
    input_dtypes: dict[str, np.dtype]
    input_shapes: dict[str, tuple[int | None, ...]]
    io: dict[str, IOQuant]

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def prepare_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Float feeds → the model's own input types (quantized for integer I/O inputs)."""
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise ValueError(
                f"feeds lack model input(s) {missing}; the model's inputs are {self.input_names}, "
                f"got {sorted(feeds)}"
            )
        prepared = {}
        for name in self.input_names:
            x = np.asarray(feeds[name])
            want = self.input_dtypes[name]
            if name in self.io and np.issubdtype(x.dtype, np.floating):
                prepared[name] = quantize(x, self.io[name].qparams).astype(want)
            else:
                prepared[name] = x.astype(want, copy=False)
        return prepared

    def run(self, feeds: Mapping[str, np.ndarray], raw: bool = False) -> list[np.ndarray]:
        """Run one batch. Float feeds are quantized for integer inputs, integer outputs
        dequantized (``raw=True``: feeds and outputs in the model's own types)."""
        if raw:
            missing = [n for n in self.input_names if n not in feeds]
            if missing:
                raise ValueError(f"feeds lack model input(s) {missing}; inputs: {self.input_names}")
            prepared = {n: np.asarray(feeds[n]) for n in self.input_names}
        else:
            prepared = self.prepare_feeds(feeds)
        outs = self._run(prepared)
        if raw:
            return outs
        return [
            dequantize(y, self.io[n].qparams)
            if n in self.io and np.issubdtype(y.dtype, np.integer)
            else y
            for n, y in zip(self.output_names, outs, strict=True)
        ]


class OrtRunner(_IORunner):
    """onnxruntime CPU session; graph optimizations on, intra-op threads configurable."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # ORT warnings about unused initializers are noise here
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        ins = self.session.get_inputs()
        self.input_names = [i.name for i in ins]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_dtypes = {i.name: np.dtype(_ORT_TYPES.get(i.type, np.float32)) for i in ins}
        self.input_shapes = {
            i.name: tuple(d if isinstance(d, int) else None for d in i.shape) for i in ins
        }
        meta = self.session.get_modelmeta().custom_metadata_map
        self.io = parse_io_metadata(meta.get(META_IO))

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return list(self.session.run(None, feeds))


class ReferenceRunner(_IORunner):
    """edgequant's integer reference interpreter behind the :class:`Runner` interface."""

    def __init__(self, path: str | Path) -> None:
        import onnx

        from edgequant.interp import Interpreter  # lazy: the interpreter is optional here

        self.interpreter = Interpreter(str(path))
        model = self.interpreter.model  # loaded (safely) by the interpreter
        init = {t.name for t in model.graph.initializer}
        ins = [i for i in model.graph.input if i.name not in init]
        self.input_names = [i.name for i in ins]
        self.output_names = [o.name for o in model.graph.output]
        self.input_dtypes = {
            i.name: onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type) for i in ins
        }
        self.input_shapes = {
            i.name: tuple(
                d.dim_value if d.HasField("dim_value") else None
                for d in i.type.tensor_type.shape.dim
            )
            for i in ins
        }
        meta = {p.key: p.value for p in model.metadata_props}
        self.io = parse_io_metadata(meta.get(META_IO))

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        out: Any = self.interpreter.run(feeds)
        if isinstance(out, Mapping):
            return [np.asarray(out[n]) for n in self.output_names]
        return [np.asarray(y) for y in out]


class TFLiteRunner(_IORunner):
    """LiteRT behind the :class:`Runner` interface; I/O qparams from the tensors themselves."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        try:
            from edgequant.runtime.litert import LiteRTRunner
        except ImportError as e:
            raise _litert_missing(path, e) from e
        from edgequant.inspect.tflite_model import inspect_tflite, tflite_io_quant

        inner = LiteRTRunner(str(path), threads=threads)
        self.inner = inner
        self.input_names = list(inner.input_names)
        self.output_names = list(inner.output_names)
        self.input_dtypes = {n: np.dtype(d) for n, d in inner.input_dtypes.items()}
        # declared shapes straight from the flatbuffer (-1 in shape_signature = dynamic)
        declared = {t["name"]: tuple(t["shape"]) for t in inspect_tflite(path)["inputs"]}
        self.input_shapes = {n: declared.get(n, ()) for n in self.input_names}
        self.io = tflite_io_quant(path)

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        # raw tensors in and out: the base class maps float ↔ integer I/O
        out: Any = self.inner.run(feeds, raw=True)
        if isinstance(out, Mapping):
            return [np.asarray(out[n]) for n in self.output_names]
        return [np.asarray(y) for y in out]


def _litert_missing(path: str | Path, e: Exception) -> ImportError:
    return ImportError(
        f"running {Path(path).name} needs LiteRT: install the tflite extra "
        f"(pip install 'edgequant[tflite]'); import failed with: {e}"
    )


def open_runner(
    path: str | Path, engine: str | None = None, threads: int | None = None
) -> Runner:
    """Open ``path`` for inference with ``engine`` (default: by suffix, see module table)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if engine is not None and engine not in ENGINES:
        raise ValueError(f"engine {engine!r} is not allowed: use one of {list(ENGINES)} or None")
    if suffix not in SUFFIXES:
        raise ValueError(f"model {str(p)!r}: suffix {suffix!r} is not allowed; use {SUFFIXES}")
    if not p.is_file():
        raise FileNotFoundError(f"model {str(p)!r} does not exist")
    if engine is None:
        engine = "onnxruntime" if suffix == ".onnx" else "litert"
    allowed = {".onnx": ("onnxruntime", "reference"), ".tflite": ("litert",)}[suffix]
    if engine not in allowed:
        raise ValueError(
            f"engine {engine!r} cannot run {suffix} model {p.name!r}; allowed: {list(allowed)}"
        )
    log.debug("opening %s with %s (threads=%s)", p, engine, threads)
    if engine == "onnxruntime":
        return OrtRunner(p, threads=threads)
    if engine == "reference":
        return ReferenceRunner(p)
    return TFLiteRunner(p, threads=threads)
