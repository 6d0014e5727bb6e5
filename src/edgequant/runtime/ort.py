"""onnxruntime (CPU) behind the :class:`~edgequant.runtime.runner.Runner` protocol."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import onnx

from edgequant.graph.contract import META_IO
from edgequant.runtime.runner import IORunner, parse_io_metadata
from edgequant.runtime.sessions import is_ort_error, ort_message, ort_session

#: onnxruntime type strings → numpy dtypes (unknown types are fed as float32).
ORT_TYPES = {
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


class OrtRunner(IORunner):
    """An onnxruntime CPU session of ``model`` (path, ``ModelProto`` or bytes).

    ``optimization`` and ``threads`` go to :func:`edgequant.runtime.sessions.ort_session`;
    ``extra_outputs`` are intermediate tensors returned after the declared outputs (their
    names appended to ``output_names``).
    """

    engine = "onnxruntime"

    def __init__(self, model: onnx.ModelProto | bytes | str | os.PathLike, threads: int | None = None,
                 optimization: str = "all", extra_outputs: Sequence[str] = ()) -> None:
        self.session = ort_session(model, optimization=optimization, threads=threads,
                                   extra_outputs=extra_outputs)
        ins = self.session.get_inputs()
        self.input_names = [i.name for i in ins]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_dtypes = {i.name: np.dtype(ORT_TYPES.get(i.type, np.float32)) for i in ins}
        self.input_shapes = {
            i.name: tuple(d if isinstance(d, int) and d > 0 else None for d in i.shape) for i in ins
        }
        meta = self.session.get_modelmeta().custom_metadata_map
        self.io = parse_io_metadata(meta.get(META_IO))

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return list(self.session.run(self.output_names, feeds))
        except Exception as exc:
            if not is_ort_error(exc):
                raise
            raise ValueError(f"onnxruntime cannot run the model: {ort_message(exc)}") from exc
