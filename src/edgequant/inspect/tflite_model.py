"""Read a ``.tflite`` flatbuffer's ops, I/O, parameters and per-tensor quantization.

Uses the generated schema in ``ai_edge_litert.schema_py_generated`` (the tflite extra), so no
interpreter is built: inspecting never allocates tensors or runs delegates.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np


def _schema():
    from edgequant.extras import require

    return require("ai_edge_litert.schema_py_generated", "tflite", "reading .tflite files")


def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def _text(b) -> str:
    if b is None:
        return ""
    return b.decode("utf-8", errors="replace") if isinstance(b, bytes | bytearray) else str(b)


def load_tflite(path: str | Path):
    """The whole flatbuffer as the schema's object API (``ModelT``), verified first
    (:func:`~edgequant.export.tflite.verify_buffer.read_tflite`)."""
    _schema()
    from edgequant.export.tflite.verify_buffer import read_tflite

    return read_tflite(path)


def _tensor_dtype(t, type_names: dict[int, str]) -> str:
    return type_names.get(t.type, str(t.type)).lower()


def _shape(t) -> list[int | None]:
    sig = t.shapeSignature if t.shapeSignature is not None and len(t.shapeSignature) else None
    dims = sig if sig is not None else (t.shape if t.shape is not None else [])
    return [None if int(d) < 0 else int(d) for d in dims]


def _buffer_bytes(buffer) -> int:
    if buffer is None:
        return 0
    if buffer.data is not None and len(buffer.data):
        return len(buffer.data)
    return int(buffer.size or 0)  # buffers past 2 GB live after the flatbuffer (offset, size)


def _quant(t, dtype: str) -> dict[str, Any] | None:
    q = t.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    scale = np.asarray(q.scale, dtype=np.float32)
    zp = np.asarray(q.zeroPoint if q.zeroPoint is not None else np.zeros_like(scale), np.int64)
    per_tensor = scale.size == 1
    return {
        "name": _text(t.name),
        "dtype": dtype,
        "scale": scale.reshape(()) if per_tensor else scale,
        "zero_point": zp.reshape(()) if per_tensor and zp.size == 1 else zp,
        "axis": None if per_tensor else int(q.quantizedDimension),
        "block_size": None,
        "constant": False,
        "ops": [],
    }


def inspect_tflite(path: str | Path) -> dict[str, Any]:
    """Parts of a ``ModelSummary`` for a ``.tflite`` file (plain dicts)."""
    schema = _schema()
    m = load_tflite(path)
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    buffers = m.buffers or []
    ops: Counter[str] = Counter()
    quantized: dict[tuple[int, int], dict[str, Any]] = {}
    param_buffers: set[int] = set()
    inputs, outputs = [], []
    for si, sg in enumerate(m.subgraphs or []):
        tensors = sg.tensors or []
        for ti, t in enumerate(tensors):
            dtype = _tensor_dtype(t, type_names)
            if t.buffer and t.buffer < len(buffers) and _buffer_bytes(buffers[t.buffer]):
                param_buffers.add(t.buffer)
            q = _quant(t, dtype)
            if q is not None:
                q["constant"] = t.buffer in param_buffers
                quantized[(si, ti)] = q
        for op in sg.operators or []:
            code = m.operatorCodes[op.opcodeIndex]
            builtin = max(int(code.builtinCode or 0), int(code.deprecatedBuiltinCode or 0))
            name = op_names.get(builtin, str(builtin))
            if name == "CUSTOM":
                name = f"CUSTOM:{_text(code.customCode)}"
            ops[name] += 1
            outs = op.outputs if op.outputs is not None else []  # SPLIT: several
            for ti in [*(op.inputs if op.inputs is not None else []), *outs]:
                if (si, int(ti)) in quantized:
                    quantized[(si, int(ti))]["ops"].append(name)
        if si == 0:
            info = [
                {"name": _text(tensors[i].name), "dtype": _tensor_dtype(tensors[i], type_names),
                 "shape": _shape(tensors[i])}
                for i in (sg.inputs if sg.inputs is not None else [])
            ]
            inputs = info
            outputs = [
                {"name": _text(tensors[i].name), "dtype": _tensor_dtype(tensors[i], type_names),
                 "shape": _shape(tensors[i])}
                for i in (sg.outputs if sg.outputs is not None else [])
            ]
    metadata = {}
    for md in m.metadata or []:
        b = buffers[md.buffer] if md.buffer < len(buffers) else None
        raw = bytes(b.data) if b is not None and b.data is not None else b""
        try:
            metadata[_text(md.name)] = raw.decode("utf-8").rstrip("\x00")
        except UnicodeDecodeError:
            metadata[_text(md.name)] = f"<{len(raw)} bytes>"
    return {
        "parameter_bytes": int(sum(_buffer_bytes(buffers[b]) for b in param_buffers)),
        "op_counts": dict(ops),
        "inputs": inputs,
        "outputs": outputs,
        "opset": {"tflite_schema": int(m.version or 0)},
        "metadata": metadata,
        "quantized": list(quantized.values()),
    }

