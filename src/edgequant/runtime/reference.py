"""edgequant's ONNX reference interpreter (:class:`edgequant.interp.Interpreter`) behind the
:class:`~edgequant.runtime.runner.Runner` protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from onnx import helper

from edgequant.graph.contract import META_IO
from edgequant.interp import Interpreter
from edgequant.runtime.runner import IORunner, parse_io_metadata


class ReferenceRunner(IORunner):
    """The integer-exact interpreter on ``model`` (path, ``ModelProto`` or ``onnx_ir.Model``).

    ``requantization``: ``"float"`` / ``"fixedpoint"`` / ``None`` (the model's metadata).
    ``extra_outputs``: intermediate tensors returned after the declared outputs.
    """

    engine = "reference"

    def __init__(self, model: Any, requantization: str | None = None,
                 extra_outputs: Sequence[str] = ()) -> None:
        self.interpreter = Interpreter(model, requantization=requantization)
        proto = self.interpreter.model  # loaded (safely) by the interpreter
        ins = [i for i in proto.graph.input if i.name not in self.interpreter.initializers]
        self.input_names = [i.name for i in ins]
        declared = list(self.interpreter.output_names)
        self.output_names = declared + [n for n in dict.fromkeys(extra_outputs) if n not in declared]
        self.input_dtypes = {
            i.name: np.dtype(helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type))
            for i in ins
        }
        self.input_shapes = {
            i.name: tuple(
                d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in i.type.tensor_type.shape.dim
            )
            for i in ins
        }
        meta = {p.key: p.value for p in proto.metadata_props}
        self.io = parse_io_metadata(meta.get(META_IO))

    @property
    def requantization(self) -> str:
        """The interpreter's requantization mode (``float`` or ``fixedpoint``)."""
        return self.interpreter.requantization

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        out = self.interpreter.run(feeds, self.output_names)  # {name: array}
        return [np.asarray(out[n]) for n in self.output_names]
