"""``export_tflite``: float or QDQ ONNX → ``.tflite`` flatbuffer, without TensorFlow.

Each node's TFLite form comes from the types of its tensors in the QDQ graph
(:func:`edgequant.graph.read_qdq.read_qdq`), never from the recipe name:

==========================  ===================================================================
int8 / uint8 activations    int8 kernels (uint8 qparams → int8, zero point − 128: exact), int8
                            narrow per-channel weights, int32 bias
int16 activations (zp 0)    16x8 kernels: int8 weights, int64 bias
float activations,          hybrid (dynamic-range) CONV_2D / DEPTHWISE_CONV_2D /
int8 (or int4) weights      FULLY_CONNECTED: LiteRT quantizes the input on the fly
float activations, int4     FULLY_CONNECTED with an INT4 blockwise weight (float16 block
blocked weights             scales): LiteRT 2.x runs it on its builtin and XNNPACK kernels
                            (measured: per-channel INT4 hybrid FC is wrong on the builtin
                            path, so per-channel int4 weights are stored as int8 — exact).
                            Blocked weights that do not fit (zero points, Conv, NHWC-flatten
                            input) are stored dequantized (float32), with a note.
float16 constants           float16 buffers + DEQUANTIZE
float                       float32 ops
==========================  ===================================================================

At each seam between domains a QUANTIZE (float → int, or int8 ↔ int16 requantization) or
DEQUANTIZE is inserted. ``mode=`` overrides a *float* model only: fp32, fp16 (float16
weights) or dynamic (int8 weights, hybrid kernels). ``ExportResult.mode`` sums the model up
(``mixed`` when nodes differ); ``kinds`` gives each node's arithmetic.

Layout: the public inputs/outputs keep the ONNX layout (NCHW); a single TRANSPOSE converts a
4-D input to NHWC and a 4-D output back; weights are permuted at export time. 1-D Conv /
ConvTranspose / pooling keep their 3-D activations channels-last, (N, L, C), and run as
height-1 2-D ops between RESHAPEs (``docs/tflite_ops.md``). A symbolic
leading (batch) dim (and the same symbol on another axis) is fixed to 1, named dims to
``fixed_dims``; any other dynamic dim is an error naming that option.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from edgequant.export.tflite import (
    ops_compute,
    ops_conv_transpose,
    ops_data,
    ops_elementwise,
    ops_gather,
    ops_layout,
    ops_math,
    ops_reduce,
    ops_refused,
    ops_resize,
    ops_split,
    ops_transformer,
)
from edgequant.export.tflite.convert import FLOAT_MODES, Converter
from edgequant.export.tflite.ingest import read_graph
from edgequant.outputs import write_bytes

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
    **{op: getattr(ops_math, op) for op in (
        "Div", "HardSigmoid", "BatchNormalization", "Sum", "LRN")},
    "Resize": ops_resize.Resize,
    "Split": ops_split.Split,
    "ConvTranspose": ops_conv_transpose.ConvTranspose,
    # transformer graphs (mask plumbing, embeddings, LayerNorm, GELU, reductions)
    **{op: getattr(ops_data, op) for op in (
        "Cast", "Where", "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "And",
        "Or", "Not", "IsNaN", "Expand", "Slice")},
    **{op: getattr(ops_gather, op) for op in ("Gather", "GatherND")},
    **{op: getattr(ops_transformer, op) for op in (
        "LayerNormalization", "Gelu", "Erf", "Sqrt", "Neg", "Pow", "Max", "Min", "Clip")},
    **{op: getattr(ops_reduce, op) for op in ("ReduceSum", "ReduceMax", "ReduceMin", "ReduceL2")},
    **{op: ops_refused.refuse for op in ops_refused.REFUSED},
}
IO_TYPES = ("float", "int8", "uint8")


@dataclass
class ExportResult:
    """What was written: path, mode (summary), size, the TFLite op histogram, the nodes kept
    float in a quantized graph, each node's arithmetic and notes on lossy storage choices."""

    path: Path
    mode: str
    io: str
    size_bytes: int
    ops: dict[str, int] = field(default_factory=dict)
    float_nodes: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-able summary (the quantizer's report embeds it)."""
        return {"path": str(self.path), "mode": self.mode, "io": self.io,
                "size_bytes": self.size_bytes, "ops": dict(self.ops),
                "float_nodes": list(self.float_nodes), "kinds": dict(self.kinds),
                "notes": list(self.notes)}


INTEGER_MODES = ("int8", "int16x8")


def _check_mode(graph, mode: str | None) -> str | None:
    """The float-model override (or None); ``int8`` / ``int16x8`` only assert the result."""
    if mode is None:
        return None
    if mode in INTEGER_MODES:
        if not graph.quantized:
            raise ValueError(f"mode {mode!r} needs a QDQ model (activation qparams); this model "
                             "has no QuantizeLinear/DequantizeLinear nodes")
        return None
    if mode not in FLOAT_MODES:
        raise ValueError(f"mode {mode!r} is not allowed: use one of {FLOAT_MODES} (float "
                         f"models) or {INTEGER_MODES} (QDQ models; checked, not forced)")
    if graph.quantized:
        raise ValueError(f"mode {mode!r} overrides float models only: a QDQ model's arithmetic "
                         "comes from its Q/DQ nodes (drop mode=)")
    return mode


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder + rename."""
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"output folder {str(folder)!r} does not exist (create it first)")
    write_bytes(path, data)


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
    fixed_dims: dict[str, int] | None = None,
) -> ExportResult:
    """Export a float or QDQ ONNX model to a ``.tflite`` file at ``path`` (atomically).

    Each node's arithmetic comes from the graph's Q/DQ nodes (module docstring). ``mode``:
    for a float model fp32 (default) | fp16 | dynamic; for a QDQ model int8 | int16x8 asserts
    the summary (a ValueError when the graph says otherwise). ``io`` (quantized I/O tensors):
    float | int8 | uint8; default from the graph (integer I/O) or ``edgequant.io`` metadata.
    ``strict``: a node that would stay float in a graph with activation qparams is an error
    naming it (unsupported ops are an error in every mode). ``fixed_dims`` sizes named
    dynamic input dims (``{"time": 12}``); batch dims (the leading dim's symbol, on any axis)
    are fixed to 1.
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output folder {str(path.parent)!r} does not exist")
    if io is not None and io not in IO_TYPES:
        raise ValueError(f"io {io!r} is not allowed: use one of {IO_TYPES}")
    graph = read_graph(model, fixed_dims)
    override = _check_mode(graph, mode)
    if io is None:
        io = "auto" if graph.io_dtype else "float"
    cv = Converter(graph, override, io, strict)
    data = cv.convert(HANDLERS)
    summary = cv.summary()
    if mode in INTEGER_MODES and summary != mode:
        raise ValueError(f"mode {mode!r}: the QDQ graph exports as {summary!r} (node "
                         f"arithmetic: {sorted(set(cv.kinds.values()))}); drop mode=")
    write_atomic(path, data)
    hist = op_histogram(data)
    log.info("wrote %s (%d bytes, %s): %s", path, len(data), summary, hist)
    return ExportResult(path, summary, io, len(data), hist, cv.float_nodes, dict(cv.kinds),
                        list(cv.notes))
