"""The :class:`Runner` protocol every engine implements, and the float ↔ integer I/O mapping
they share.

Every runner takes *float* feeds and returns *float* outputs, whatever the model's I/O types,
so one calibration / evaluation array fits every model in a comparison: a model with integer
inputs/outputs (``quantize(..., io="int8"|"uint8")``) records each I/O tensor's qparams in the
ONNX metadata ``edgequant.io`` (``{name: {"dtype", "scale", "zero_point"}}``; a ``.tflite``
carries them on the tensors themselves), and the runner quantizes float feeds and dequantizes
integer outputs with them. ``run(feeds, raw=True)`` skips that and exchanges the model's own
types (feeds are only cast to the declared dtypes).

``run`` takes one batch. A model whose batch dimension is fixed (say at 1) fed another number
of samples runs through :func:`edgequant.runtime.batching.run_batched` (sample by sample).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from edgequant.graph.contract import META_IO
from edgequant.primitives import dequantize, quantize
from edgequant.qparams import QParams
from edgequant.runtime.batching import needs_batching, run_batched
from edgequant.spec import PerTensor, QType

log = logging.getLogger(__name__)

#: Integer I/O types mapped float ↔ integer (others, e.g. int32 / int64 token ids, are
#: genuinely integer inputs and pass through).
QUANTIZED_IO_TYPES = ("int8", "uint8", "int16")


@runtime_checkable
class Runner(Protocol):
    """A loaded model that maps named float feeds to its outputs (in ``output_names`` order).

    ``input_shapes`` holds each input's declared shape with ``None`` for a dynamic dimension,
    so callers can tell whether the batch dimension is fixed (e.g. at 1). ``engine`` names
    the backend (``"onnxruntime"``, ``"reference"``, ``"litert"``, ...).
    """

    engine: str
    input_names: list[str]
    output_names: list[str]
    input_dtypes: dict[str, np.dtype]
    input_shapes: dict[str, tuple[int | None, ...]]

    def run(self, feeds: Mapping[str, np.ndarray], raw: bool = False) -> list[np.ndarray]:
        """Run one batch; ``raw=True`` exchanges the model's own (integer) I/O types."""
        ...

    def prepare_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Float feeds → the model's own input types (what ``run(..., raw=True)`` takes)."""
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


def match_feeds(runner: Runner, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The feeds ``runner`` needs: by name, or by position when the names differ but the
    counts match (exporters such as TFLite rename inputs; a one-input model takes its array
    under any name)."""
    if all(n in feeds for n in runner.input_names):
        return {n: feeds[n] for n in runner.input_names}
    if len(feeds) == len(runner.input_names):
        log.info("matching feeds %s to inputs %s by position", list(feeds), runner.input_names)
        return dict(zip(runner.input_names, feeds.values(), strict=True))
    raise ValueError(
        f"feeds {sorted(feeds)} do not match the model inputs {runner.input_names}"
    )


def io_quant_of_tensor(dtype: np.dtype | str, scales, zero_points) -> IOQuant | None:
    """:class:`IOQuant` of a tensor stored as ``dtype`` with these (per-tensor) qparams, or
    None when it is not a quantized integer tensor (float, int32 ids, per-channel)."""
    name = np.dtype(dtype).name
    scales = np.asarray(scales if scales is not None else [], np.float64).reshape(-1)
    if name not in QUANTIZED_IO_TYPES or scales.size != 1:
        return None
    zps = np.asarray(zero_points if zero_points is not None else [], np.int64).reshape(-1)
    return IOQuant(name, float(scales[0]), int(zps[0]) if zps.size else 0)


class IORunner:
    """Shared float ↔ integer I/O handling; subclasses set the attributes of :class:`Runner`
    plus ``io`` and implement ``_run(feeds) -> list`` (feeds already in the model's types)."""

    engine: str
    input_names: list[str]
    output_names: list[str]
    input_dtypes: dict[str, np.dtype]
    input_shapes: dict[str, tuple[int | None, ...]]
    io: dict[str, IOQuant]

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def _check_names(self, feeds: Mapping[str, np.ndarray]) -> None:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise ValueError(
                f"feeds lack model input(s) {missing}; the model's inputs are {self.input_names}, "
                f"got {sorted(feeds)}"
            )

    def cast_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Feeds cast to the declared input dtypes, no quantization (``raw=True`` feeds)."""
        self._check_names(feeds)
        return {n: np.asarray(feeds[n]).astype(self.input_dtypes[n], copy=False)
                for n in self.input_names}

    def prepare_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Float feeds → the model's own input types (quantized for integer I/O inputs)."""
        self._check_names(feeds)
        prepared = {}
        for name in self.input_names:
            x = np.asarray(feeds[name])
            want = self.input_dtypes[name]
            if name in self.io and np.issubdtype(x.dtype, np.floating):
                prepared[name] = quantize(x, self.io[name].qparams).astype(want)  # same shape
            else:
                prepared[name] = x.astype(want, copy=False)
        return prepared

    def dequantize_outputs(self, outs: list[np.ndarray]) -> list[np.ndarray]:
        """Integer I/O outputs → float (others unchanged), in ``output_names`` order."""
        return [
            dequantize(y, self.io[n].qparams)
            if n in self.io and np.issubdtype(y.dtype, np.integer)
            else y
            for n, y in zip(self.output_names, outs, strict=True)
        ]

    def run(self, feeds: Mapping[str, np.ndarray], raw: bool = False) -> list[np.ndarray]:
        """Run one batch. Float feeds are quantized for integer inputs, integer outputs
        dequantized (``raw=True``: feeds and outputs in the model's own types). A fixed-batch
        model given another number of samples runs in batches of its size."""
        if needs_batching(self.input_shapes, feeds):
            return run_batched(self, feeds, raw=raw)
        prepared = self.cast_feeds(feeds) if raw else self.prepare_feeds(feeds)
        outs = self._run(prepared)
        return outs if raw else self.dequantize_outputs(outs)
