"""``edgequant inspect``: what a model file holds and how each of its tensors is quantized.

For ONNX, quantized tensors come from QuantizeLinear / DequantizeLinear (scale, zero point,
``axis``, ``block_size``), QLinear* ops (their ``(tensor, scale, zero_point)`` input triples)
and *Integer ops (zero points only: their scales live elsewhere or are dynamic). For
``.tflite``, every tensor's own ``quantization`` table (scale(s), zero point(s),
``quantized_dimension``) is read from the flatbuffer with ``ai_edge_litert``'s schema.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgequant.input_files import check_input_file
from edgequant.inspect.onnx_model import inspect_onnx
from edgequant.inspect.tflite_model import inspect_tflite

#: Values shown in text before eliding a per-channel array (JSON always has all of them).
PREVIEW_VALUES = 3


@dataclass
class TensorInfo:
    """A model input or output: name, element type, shape (``None`` = dynamic dimension)."""

    name: str
    dtype: str
    shape: list[int | str | None]


@dataclass
class QuantizedTensor:
    """One quantized tensor: its integer type and qparams.

    ``scale`` / ``zero_point`` are 0-d (per tensor), 1-d (per channel along ``axis``) or
    blocked (``block_size`` along ``axis``); ``None`` when dynamic (computed at run time).
    """

    name: str
    dtype: str
    scale: np.ndarray | None
    zero_point: np.ndarray | None
    axis: int | None = None
    block_size: int | None = None
    constant: bool = False  # a weight / bias stored in the file (vs an activation)
    ops: list[str] = field(default_factory=list)  # op types that read or write it

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict with the full scale / zero-point arrays."""
        return {
            "name": self.name,
            "dtype": self.dtype,
            "scale": None if self.scale is None else np.asarray(self.scale).tolist(),
            "zero_point": None if self.zero_point is None else np.asarray(self.zero_point).tolist(),
            "axis": self.axis,
            "block_size": self.block_size,
            "constant": self.constant,
            "ops": list(self.ops),
        }


@dataclass
class ModelSummary:
    """What :func:`inspect_model` found in one file."""

    path: str
    format: str  # "onnx" | "tflite"
    file_bytes: int
    parameter_bytes: int
    op_counts: dict[str, int]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    opset: dict[str, int]
    metadata: dict[str, str]
    quantized: list[QuantizedTensor]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (full per-channel arrays)."""
        return {
            "path": self.path,
            "format": self.format,
            "file_bytes": self.file_bytes,
            "parameter_bytes": self.parameter_bytes,
            "op_counts": dict(self.op_counts),
            "inputs": [vars(t).copy() for t in self.inputs],
            "outputs": [vars(t).copy() for t in self.outputs],
            "opset": dict(self.opset),
            "metadata": dict(self.metadata),
            "quantized": [q.to_dict() for q in self.quantized],
        }

    def to_json(self) -> str:
        """``to_dict`` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)

    def to_rich(self) -> list[Any]:
        """Rich tables for the CLI: overview, I/O, op counts, quantized tensors."""
        from rich.table import Table

        over = Table(title=f"{Path(self.path).name} ({self.format})", show_header=False)
        over.add_column("field", style="bold")
        over.add_column("value")
        over.add_row("file bytes", f"{self.file_bytes:,}")
        over.add_row("parameter bytes", f"{self.parameter_bytes:,}")
        over.add_row("opset", ", ".join(f"{d}:{v}" for d, v in self.opset.items()))
        for k, v in self.metadata.items():
            v = str(v)
            over.add_row(str(k), v if len(v) <= 200 else v[:200] + "…")

        io = Table(title="inputs / outputs")
        for col in ("kind", "name", "dtype", "shape"):
            io.add_column(col)
        for kind, items in (("input", self.inputs), ("output", self.outputs)):
            for t in items:
                io.add_row(kind, str(t.name), str(t.dtype), str(t.shape))

        ops = Table(title="ops")
        ops.add_column("op")
        ops.add_column("count", justify="right")
        for op, n in sorted(self.op_counts.items(), key=lambda kv: (-kv[1], kv[0])):
            ops.add_row(op, str(n))

        q = Table(title=f"quantized tensors ({len(self.quantized)})")
        q.add_column("name", overflow="fold", max_width=48)
        for col in ("dtype", "scale", "zero point", "axis", "block", "ops"):
            q.add_column(col, overflow="fold")
        for t in self.quantized:
            q.add_row(  # str(): a corrupted file can hold bytes where names belong
                str(t.name),
                str(t.dtype),
                describe_values(t.scale),
                describe_values(t.zero_point),
                "" if t.axis is None else str(t.axis),
                "" if t.block_size is None else str(t.block_size),
                ",".join(sorted({_SHORT_OPS.get(o, o) for o in t.ops})),
            )
        return [over, io, ops, q]


_SHORT_OPS = {"QuantizeLinear": "Q", "DequantizeLinear": "DQ"}


def describe_values(v: np.ndarray | None, preview: int = PREVIEW_VALUES) -> str:
    """Short text for a scale / zero point: the value; for arrays the count, the first few
    values and the range (``6× [0.0051, 0.0092, 0.0054, …] 0.004..0.0092``), or ``0 (all 6)``
    when every value is the same."""
    if v is None:
        return "dynamic"
    flat = np.asarray(v).reshape(-1)
    if flat.size == 1:
        return f"{flat[0]:.6g}"
    if flat.size and np.all(flat == flat[0]):
        return f"{flat[0]:.4g} (all {flat.size})"
    head = ", ".join(f"{x:.2g}" for x in flat[:preview])
    more = ", …" if flat.size > preview else ""
    return f"{flat.size}× [{head}{more}] {flat.min():.2g}..{flat.max():.2g}"


def model_file_bytes(path: str | Path) -> int:
    """Size on disk: the file plus every external-data file an ONNX model references."""
    p = Path(path)
    total = p.stat().st_size
    if p.suffix.lower() != ".onnx":
        return total
    import onnx

    model = onnx.load(str(p), load_external_data=False)
    locations = set()
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            entry = {e.key: e.value for e in t.external_data}
            locations.add(entry.get("location", ""))
    for loc in sorted(locations):
        f = p.parent / loc
        if f.is_file():
            total += f.stat().st_size
    return total


def inspect_model(path: str | Path) -> ModelSummary:
    """Summarize an ``.onnx`` or ``.tflite`` file (see :class:`ModelSummary`)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".onnx", ".tflite"):
        raise ValueError(
            f"model {str(p)!r}: suffix {suffix!r} is not allowed; use .onnx or .tflite"
        )
    check_input_file(p, "model")
    parts = inspect_onnx(p) if suffix == ".onnx" else inspect_tflite(p)
    return ModelSummary(
        path=str(p),
        format=suffix[1:],
        file_bytes=model_file_bytes(p),
        parameter_bytes=parts["parameter_bytes"],
        op_counts=dict(Counter(parts["op_counts"])),
        inputs=[TensorInfo(**t) for t in parts["inputs"]],
        outputs=[TensorInfo(**t) for t in parts["outputs"]],
        opset=parts["opset"],
        metadata=parts["metadata"],
        quantized=[QuantizedTensor(**q) for q in parts["quantized"]],
    )

