"""The one verified way to read a ``.tflite`` file: structure, then meaning, then use.

:func:`read_tflite` (a path) and :func:`parse_tflite` (bytes) run
:func:`~edgequant.export.tflite.flatbuffer_walk.walk_model` (every offset, vector length and
string inside the file), unpack the object API, and check what the readers index with:
subgraph count, opcode indices, tensor indices of operators / subgraph I/O / signatures,
buffer indices, tensor types, shapes (non-negative, bounded element and byte counts),
constant data length against the shape, quantization arrays (scale and zero point of equal
length, 1 or the quantized dimension's size, finite positive scales — zero allowed on
constants), control-flow subgraph indices and metadata buffers. Any problem is one
:class:`InvalidModelError` line, e.g. ``model.tflite: operator 3 of subgraph 0 reads tensor
97, but the subgraph has 12 tensors``. ``inspect``, ``verify``, LiteRT runners and the TFLite
reference all read through here.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np

from edgequant.export.tflite.flatbuffer_walk import InvalidModelError, walk_model
from edgequant.input_files import MAX_MODEL_BYTES, read_input_bytes

__all__ = ["MAX_TENSOR_BYTES", "InvalidModelError", "parse_tflite", "read_tflite"]

#: Largest tensor (declared shape × element size) a model may declare.
MAX_TENSOR_BYTES = 2**31 - 1
#: Most dims of a tensor, subgraphs of a model.
MAX_RANK = 32
MAX_SUBGRAPHS = 10_000
#: Bits per element of each TensorType; 0 = variable size (strings, resources, variants).
_TYPE_BITS = {"FLOAT16": 16, "FLOAT32": 32, "FLOAT64": 64, "INT4": 4, "INT8": 8, "UINT8": 8,
              "INT16": 16, "UINT16": 16, "INT32": 32, "UINT32": 32, "INT64": 64, "UINT64": 64,
              "BOOL": 8, "COMPLEX64": 64, "COMPLEX128": 128, "BFLOAT16": 16, "INT2": 2,
              "STRING": 0, "RESOURCE": 0, "VARIANT": 0}

#: Zero point range per integer tensor type.
_ZP_RANGE = {"INT8": (-128, 127), "UINT8": (0, 255), "INT16": (-32768, 32767),
             "INT4": (-8, 7)}


def _schema():
    try:
        import ai_edge_litert.schema_py_generated as schema
    except ImportError as e:
        raise ImportError("reading .tflite files needs the tflite extra: "
                          "pip install 'edgequant[tflite]'") from e
    return schema


def _names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def read_tflite(path: str | os.PathLike, *, max_tensor_bytes: int = MAX_TENSOR_BYTES):
    """The verified ``ModelT`` of a ``.tflite`` file (a regular file of at most 2 GiB)."""
    data = read_input_bytes(path, "model", max_bytes=MAX_MODEL_BYTES)
    return parse_tflite(data, Path(path).name, max_tensor_bytes=max_tensor_bytes)


def parse_tflite(data: bytes, name: str = "<tflite bytes>", *,
                 max_tensor_bytes: int = MAX_TENSOR_BYTES):
    """Verify ``data`` and return its ``ModelT``; :class:`InvalidModelError` naming the
    first problem. ``max_tensor_bytes`` bounds every tensor's declared size."""
    schema = _schema()
    walk_model(data, name)
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except (struct.error, IndexError, ValueError, TypeError, UnicodeDecodeError,
            OverflowError, AttributeError) as exc:  # inside a union table the walk skipped
        raise InvalidModelError(f"{name}: the flatbuffer cannot be unpacked "
                                f"({type(exc).__name__}: {exc})") from exc
    _Checker(model, name, len(data), max_tensor_bytes, schema).run()
    return model


def _ints(v) -> list[int]:
    return [] if v is None else [int(x) for x in v]


class _Checker:
    def __init__(self, model, name: str, file_bytes: int, max_tensor_bytes: int, schema) -> None:
        self.m, self.name, self.file_bytes = model, name, file_bytes
        self.max_tensor_bytes = max_tensor_bytes
        self.types = _names(schema.TensorType)
        self.ops = _names(schema.BuiltinOperator)
        self.schema = schema

    def fail(self, what: str) -> None:
        raise InvalidModelError(f"{self.name}: {what}")

    def run(self) -> None:
        m = self.m
        subs = m.subgraphs or []
        if not subs:
            self.fail("the model has no subgraph")
        if len(subs) > MAX_SUBGRAPHS:
            self.fail(f"{len(subs)} subgraphs; at most {MAX_SUBGRAPHS} are allowed")
        self.n_buffers = len(m.buffers or [])
        self._opcodes()
        self._buffers()
        for si, sg in enumerate(subs):
            self._subgraph(si, sg)
        for k, md in enumerate(m.metadata or []):
            if not 0 <= int(md.buffer) < self.n_buffers:
                self.fail(f"metadata {k} names buffer {md.buffer}, but the model has "
                          f"{self.n_buffers} buffers")
        for b in _ints(m.metadataBuffer):
            if not 0 <= b < self.n_buffers:
                self.fail(f"metadata_buffer lists buffer {b}, but the model has "
                          f"{self.n_buffers} buffers")
        for k, sig in enumerate(m.signatureDefs or []):
            si = int(sig.subgraphIndex)
            if not 0 <= si < len(subs):
                self.fail(f"signature {k} names subgraph {si}, but the model has {len(subs)}")
            n = len(subs[si].tensors or [])
            for tm in [*(sig.inputs or []), *(sig.outputs or [])]:
                if not 0 <= int(tm.tensorIndex) < n:
                    self.fail(f"signature {k} maps to tensor {tm.tensorIndex}, but subgraph "
                              f"{si} has {n} tensors")

    def _opcodes(self) -> None:
        self.op_names = []
        for k, code in enumerate(self.m.operatorCodes or []):
            builtin = max(int(code.builtinCode or 0), int(code.deprecatedBuiltinCode or 0))
            if builtin not in self.ops:
                self.fail(f"operator code {k} is builtin operator {builtin}, which this "
                          f"schema does not know (0..{max(self.ops)})")
            self.op_names.append(self.ops[builtin])

    def _buffers(self) -> None:
        for k, b in enumerate(self.m.buffers or []):
            off, size = int(b.offset or 0), int(b.size or 0)
            if off or size:
                if off <= 1 or off + size > self.file_bytes:
                    self.fail(f"buffer {k} lies at bytes {off}..{off + size}, outside the "
                              f"file")

    def _subgraph(self, si: int, sg) -> None:
        tensors = sg.tensors or []
        n = len(tensors)
        where = f"subgraph {si}"
        for role, idx in (("input", sg.inputs), ("output", sg.outputs)):
            for t in _ints(idx):
                if not 0 <= t < n:
                    self.fail(f"{where} {role} is tensor {t}, but the subgraph has {n} tensors")
        for ti, t in enumerate(tensors):
            self._tensor(si, ti, t, n)
        for oi, op in enumerate(sg.operators or []):
            code = int(op.opcodeIndex)
            if not 0 <= code < len(self.op_names):
                self.fail(f"operator {oi} of {where} uses operator code {code}, but the model "
                          f"has {len(self.op_names)}")
            for role, idx in (("reads", op.inputs), ("writes", op.outputs),
                              ("uses intermediate", op.intermediates)):
                for t in _ints(idx):
                    if not -1 <= t < n:
                        self.fail(f"operator {oi} ({self.op_names[code]}) of {where} {role} "
                                  f"tensor {t}, but the subgraph has {n} tensors")
            self._subgraph_refs(si, oi, op)

    def _subgraph_refs(self, si: int, oi: int, op) -> None:
        opts = op.builtinOptions
        n = len(self.m.subgraphs)
        for field in ("condSubgraphIndex", "bodySubgraphIndex", "thenSubgraphIndex",
                      "elseSubgraphIndex", "initSubgraphIndex", "subgraphIndex"):
            v = getattr(opts, field, None)
            if v is not None and not 0 <= int(v) < n:
                self.fail(f"operator {oi} of subgraph {si} calls subgraph {v}, but the model "
                          f"has {n}")

    def _tensor(self, si: int, ti: int, t, n_tensors: int) -> None:
        where = f"tensor {ti} of subgraph {si}"
        if isinstance(t.name, bytes | bytearray):
            try:
                t.name.decode("utf-8")
            except UnicodeDecodeError:
                self.fail(f"{where} has a name that is not UTF-8 text ({bytes(t.name)[:24]!r})")
        tname = self.types.get(int(t.type))
        if tname is None:
            self.fail(f"{where} has type {t.type}, which is not a TFLite tensor type")
        shape = _ints(t.shape)
        if len(shape) > MAX_RANK:
            self.fail(f"{where} has rank {len(shape)}; at most {MAX_RANK} is allowed")
        if any(d < 0 for d in shape):
            self.fail(f"{where} has shape {shape}: dimensions must be >= 0 "
                      "(-1 belongs in shape_signature)")
        sig = _ints(t.shapeSignature)
        if sig and (len(sig) != len(shape) or any(d < -1 for d in sig)):
            self.fail(f"{where} has shape_signature {sig} for shape {shape}: same rank and "
                      "dims >= -1 are required")
        count = math.prod(shape)
        bits = _TYPE_BITS.get(tname, 8)
        nbytes = (count * bits + 7) // 8
        if nbytes > self.max_tensor_bytes:
            self.fail(f"{where} declares shape {shape} ({nbytes:,} bytes); at most "
                      f"{self.max_tensor_bytes:,} bytes per tensor are allowed")
        b = int(t.buffer)
        if not 0 <= b < self.n_buffers:
            self.fail(f"{where} uses buffer {b}, but the model has {self.n_buffers} buffers")
        buf = self.m.buffers[b]
        have = len(buf.data) if buf.data is not None else int(buf.size or 0)
        if have and bits and have != nbytes and t.sparsity is None:
            self.fail(f"{where} ({tname} {shape}) needs {nbytes:,} bytes of data, but buffer "
                      f"{b} holds {have:,}")
        self._quantization(where, t, shape, n_tensors, constant=bool(have))

    def _quantization(self, where: str, t, shape: list[int], n_tensors: int,
                      constant: bool) -> None:
        q = t.quantization
        if q is None:
            return
        scale = q.scale if q.scale is not None else np.zeros(0, np.float32)
        zp = q.zeroPoint if q.zeroPoint is not None else np.zeros(0, np.int64)
        ns, nz = len(scale), len(zp)
        if ns or nz:
            if nz and nz != ns:
                self.fail(f"{where} has {ns} scale(s) but {nz} zero point(s); they must match")
            if ns > 1:
                axis = int(q.quantizedDimension)
                if not 0 <= axis < len(shape):
                    self.fail(f"{where} is quantized per channel on axis {axis}, but it has "
                              f"rank {len(shape)}")
                if shape[axis] != ns:
                    self.fail(f"{where} has {ns} scales for axis {axis} of size "
                              f"{shape[axis]}; give 1 or {shape[axis]}")
            rng = _ZP_RANGE.get(self.types.get(int(t.type)))
            z = np.asarray(zp, np.int64)
            if rng and z.size and (z.min() < rng[0] or z.max() > rng[1]):
                bad = int(z[(z < rng[0]) | (z > rng[1])][0])
                self.fail(f"{where} has zero point {bad}, outside its type's range "
                          f"[{rng[0]}, {rng[1]}]")
            s = np.asarray(scale, np.float64)
            # a zero scale divides by zero when a kernel quantizes into the tensor (LiteRT
            # crashes on it); constants may carry one (an all-zero channel)
            bad = ~np.isfinite(s) | (s < 0) | ((s == 0) & (not constant))
            if np.any(bad):
                self.fail(f"{where} has quantization scale {s[bad][0]}; scales must be finite "
                          f"and {'>= 0' if constant else '> 0'}")
        d = q.details
        if d is not None and hasattr(d, "scales") and d.scales is not None:
            if not 0 <= int(d.scales) < n_tensors:
                self.fail(f"{where}: blockwise scales are tensor {d.scales}, but the subgraph "
                          f"has {n_tensors} tensors")
