"""``export_tflite``: float or QDQ ONNX → ``.tflite`` flatbuffer, without TensorFlow.

Mode comes from ``mode=`` or the model's ``edgequant.recipe`` metadata (a QDQ model without
it is exported full-integer, a float model as fp32):

==========  ===============================================================================
fp32        float32 everywhere
fp16        float16 constants + DEQUANTIZE ops (weights half the size)
dynamic     int8 symmetric per-channel weights on CONV_2D / DEPTHWISE / FULLY_CONNECTED,
            float activations: LiteRT runs its hybrid kernels
int8        w8a8: int8 activations (uint8 ONNX qparams → zp − 128), int8 narrow weights,
            int32 bias; ``io`` float (QUANTIZE / DEQUANTIZE at the boundary), int8 or uint8
int16x8     int16 activations (zero point 0), int8 weights, int64 bias
==========  ===============================================================================

Layout: the public inputs/outputs keep the ONNX layout (NCHW); a single TRANSPOSE converts a
4-D input to NHWC and a 4-D output back; weights are permuted at export time. A symbolic
leading (batch) dim is fixed to 1; any other dynamic dim is an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from edgequant.export.tflite import ops_compute, ops_elementwise, ops_layout
from edgequant.export.tflite.convert import MODES, Converter
from edgequant.export.tflite.ingest import RECIPE_MODES, read_graph
from edgequant.graph.io import atomic_write

log = logging.getLogger(__name__)

#: ONNX op type → op builder.
HANDLERS = {
    **{op: getattr(ops_compute, op) for op in ("Conv", "Gemm", "MatMul")},
    **{op: getattr(ops_elementwise, op) for op in (
        "Add", "Sub", "Mul", "Relu", "Clip", "Sigmoid", "Tanh", "HardSwish", "Softmax")},
    **{op: getattr(ops_layout, op) for op in (
        "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Transpose",
        "Concat", "Pad", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
        "ReduceMean")},
}
IO_TYPES = ("float", "int8", "uint8")


@dataclass
class ExportResult:
    """What was written: path, mode, size, the TFLite op histogram and float-kept nodes."""

    path: Path
    mode: str
    io: str
    size_bytes: int
    ops: dict[str, int] = field(default_factory=dict)
    float_nodes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-able summary (the quantizer's report embeds it)."""
        return {"path": str(self.path), "mode": self.mode, "io": self.io,
                "size_bytes": self.size_bytes, "ops": dict(self.ops),
                "float_nodes": list(self.float_nodes)}


def _resolve_mode(graph, mode: str | None) -> str:
    if mode is not None:
        mode = RECIPE_MODES.get(mode, mode)
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not allowed: use one of {MODES} or a recipe name "
                             f"({', '.join(RECIPE_MODES)})")
        if mode in ("int8", "int16x8") and not graph.quantized:
            raise ValueError(f"mode {mode!r} needs a QDQ model (activation qparams); this model "
                             "has no QuantizeLinear/DequantizeLinear nodes")
        return mode
    if graph.recipe is not None:
        if graph.recipe not in RECIPE_MODES:
            raise ValueError(f"recipe {graph.recipe!r} (model metadata) has no TFLite export: "
                             f"use one of {', '.join(RECIPE_MODES)}")
        return RECIPE_MODES[graph.recipe]
    if not graph.quantized:
        return "fp32"
    wide = any(q.dtype.itemsize == 2 for q in graph.act_q.values())
    return "int16x8" if wide else "int8"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder + rename."""
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"output folder {str(folder)!r} does not exist (create it first)")
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def op_histogram(data: bytes) -> dict[str, int]:
    """TFLite builtin op name → count, read back from the flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    from edgequant.export.tflite.builder import load_model

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    m = load_model(data)
    hist: dict[str, int] = {}
    for op in m.subgraphs[0].operators:
        name = names[m.operatorCodes[op.opcodeIndex].builtinCode]
        hist[name] = hist.get(name, 0) + 1
    return hist


def export_tflite(
    model: onnx.ModelProto | str | Path,
    path: str | Path,
    *,
    strict: bool = False,
    mode: str | None = None,
    io: str | None = None,
) -> ExportResult:
    """Export a float or QDQ ONNX model to a ``.tflite`` file at ``path`` (atomically).

    ``mode``: fp32 | fp16 | dynamic | int8 | int16x8 (or a recipe name); default from the
    ``edgequant.recipe`` metadata. ``io`` (integer modes): float | int8 | uint8; default from
    ``edgequant.io`` metadata, else float. ``strict``: a node that would stay float in an
    integer graph is an error naming it (unsupported ops are an error in every mode).
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output folder {str(path.parent)!r} does not exist")
    if io is not None and io not in IO_TYPES:
        raise ValueError(f"io {io!r} is not allowed: use one of {IO_TYPES}")
    graph = read_graph(model)
    mode = _resolve_mode(graph, mode)
    if io is None:
        io = "auto" if graph.io_dtype else "float"
    cv = Converter(graph, mode, io, strict)
    data = cv.convert(HANDLERS)
    write_atomic(path, data)
    hist = op_histogram(data)
    log.info("wrote %s (%d bytes, mode %s): %s", path, len(data), mode, hist)
    return ExportResult(path, mode, io, len(data), hist, cv.float_nodes)
