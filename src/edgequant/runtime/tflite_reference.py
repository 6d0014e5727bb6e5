"""edgequant's TFLite reference executor (:mod:`edgequant.interp.tflite.reference`) behind
the :class:`~edgequant.runtime.runner.Runner` protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgequant.runtime.litert import check_tflite_file, litert_missing
from edgequant.runtime.runner import IORunner, io_quant_of_tensor


class TFLiteReferenceRunner(IORunner):
    """numpy reference of a ``.tflite`` file; ``kernels``: ``"builtin"`` or ``"xnnpack"``
    (whose integer arithmetic LiteRT's kernel path of that name reproduces)."""

    engine = "reference"

    def __init__(self, path: str | Path, kernels: str = "builtin") -> None:
        self.path = check_tflite_file(path)
        try:
            from edgequant.interp.tflite.reference import ReferenceInterpreter
        except ImportError as e:  # the schema comes from ai_edge_litert
            raise litert_missing(path, e) from e

        self.reference = ReferenceInterpreter(self.path, kernels)
        tensors, sub = self.reference.tensors, self.reference.sub
        self.input_names = list(self.reference.input_names)
        self.output_names = list(self.reference.output_names)
        self.input_dtypes = {tensors[i].name: np.dtype(tensors[i].dtype) for i in sub.inputs}
        self.input_shapes = {tensors[i].name: tuple(tensors[i].shape) for i in sub.inputs}
        self.io = {}
        for i in [*sub.inputs, *sub.outputs]:
            t = tensors[int(i)]
            io = io_quant_of_tensor(t.dtype, t.scale, t.zero_point)
            if io is not None:
                self.io[t.name] = io

    @property
    def kernels(self) -> str:
        """The kernel path whose arithmetic this reference reproduces."""
        return self.reference.kernels

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(y) for y in self.reference.run(feeds)]
