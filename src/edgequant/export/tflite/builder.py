"""Thin writer over the TFLite flatbuffer object API (``ai_edge_litert.schema_py_generated``).

``TFLiteBuilder`` collects tensors, constant buffers and operators of one subgraph and packs
them with ``flatbuffers.Builder`` into the bytes of a ``.tflite`` file (identifier ``TFL3``).
It knows nothing about ONNX: the op builders in :mod:`edgequant.export.tflite.ops_*` call it.
"""

from __future__ import annotations

from dataclasses import dataclass

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

#: numpy dtype → TFLite TensorType for every type the exporter writes.
TENSOR_TYPES: dict[np.dtype, int] = {
    np.dtype(np.float32): schema.TensorType.FLOAT32,
    np.dtype(np.float16): schema.TensorType.FLOAT16,
    np.dtype(np.int8): schema.TensorType.INT8,
    np.dtype(np.uint8): schema.TensorType.UINT8,
    np.dtype(np.int16): schema.TensorType.INT16,
    np.dtype(np.int32): schema.TensorType.INT32,
    np.dtype(np.int64): schema.TensorType.INT64,
    np.dtype(np.bool_): schema.TensorType.BOOL,
}
#: TensorType → numpy dtype (the inverse, used by the reference executor).
NUMPY_TYPES: dict[int, np.dtype] = {v: k for k, v in TENSOR_TYPES.items()}

#: Schema version written into ``Model.version`` (TFLite's current schema is 3).
SCHEMA_VERSION = 3


@dataclass(frozen=True)
class Quant:
    """TFLite quantization of one tensor: scale/zero point arrays and the channel axis."""

    scale: np.ndarray  # (1,) per tensor or (C,) per channel, float32
    zero_point: np.ndarray  # same length, int64
    axis: int = 0

    @staticmethod
    def of(scale, zero_point, axis: int = 0) -> Quant:
        """Build from scalars or arrays (scalars become length-1 arrays)."""
        s = np.atleast_1d(np.asarray(scale, dtype=np.float32))
        z = np.atleast_1d(np.asarray(zero_point, dtype=np.int64))
        if z.size == 1 and s.size > 1:
            z = np.full(s.shape, int(z[0]), np.int64)
        return Quant(s, z, axis)

    @property
    def per_tensor(self) -> bool:
        """True when one scale covers the whole tensor."""
        return self.scale.size == 1

    def same_as(self, other: Quant | None) -> bool:
        """Exact equality of scale, zero point and axis."""
        return (
            other is not None
            and np.array_equal(self.scale, other.scale)
            and np.array_equal(self.zero_point, other.zero_point)
            and (self.per_tensor or self.axis == other.axis)
        )


class TFLiteBuilder:
    """Accumulates one TFLite subgraph and serialises it.

    Buffer 0 is the mandatory empty sentinel; every constant gets its own buffer.
    """

    def __init__(self) -> None:
        self.tensors: list[schema.TensorT] = []
        self.buffers: list[schema.BufferT] = [schema.BufferT()]
        self.operators: list[schema.OperatorT] = []
        self.opcodes: list[schema.OperatorCodeT] = []
        self._opcode_index: dict[tuple[int, int], int] = {}
        self.names: set[str] = set()
        self.inputs: list[int] = []
        self.outputs: list[int] = []

    def unique_name(self, name: str) -> str:
        """``name`` or ``name_1``, ``name_2``… so tensor names stay unique (debuggability)."""
        cand, i = name, 0
        while cand in self.names:
            i += 1
            cand = f"{name}_{i}"
        self.names.add(cand)
        return cand

    def add_tensor(
        self,
        name: str,
        shape: tuple[int, ...],
        dtype: np.dtype | type,
        data: np.ndarray | None = None,
        quant: Quant | None = None,
    ) -> int:
        """Add a tensor (constant when ``data`` is given); returns its index."""
        dtype = np.dtype(dtype)
        t = schema.TensorT()
        t.name = self.unique_name(name)
        t.shape = np.asarray(shape, dtype=np.int32)
        t.type = TENSOR_TYPES[dtype]
        t.buffer = 0
        if data is not None:
            arr = np.ascontiguousarray(np.asarray(data, dtype=dtype).reshape(shape))
            buf = schema.BufferT()
            buf.data = np.frombuffer(arr.tobytes(), dtype=np.uint8)  # little-endian raw bytes
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        if quant is not None:
            q = schema.QuantizationParametersT()
            q.scale = np.asarray(quant.scale, dtype=np.float32)
            q.zeroPoint = np.asarray(quant.zero_point, dtype=np.int64)
            q.quantizedDimension = int(quant.axis) if not quant.per_tensor else 0
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def add_blockwise_int4(self, name: str, values: np.ndarray, scales: np.ndarray,
                           block: int) -> int:
        """An INT4 constant (values in int8, packed two per byte, low nibble first) with
        blockwise quantization: ``scales`` float16 ``(O, I / block)``; returns its index."""
        scale_idx = self.add_tensor(f"{name}_scales", scales.shape, np.float16, data=scales)
        idx = self.add_tensor(name, values.shape, np.int8, data=values)
        t = self.tensors[idx]
        t.type = schema.TensorType.INT4
        self.buffers[t.buffer].data = pack_int4(values)
        q = schema.QuantizationParametersT()
        q.detailsType = schema.QuantizationDetails.BlockwiseQuantization
        details = schema.BlockwiseQuantizationT()
        details.scales = scale_idx
        details.blockSize = int(block)
        q.details = details
        t.quantization = q
        return idx

    def add_op(
        self,
        opcode: int,
        inputs: list[int],
        outputs: list[int],
        options_type: int = 0,
        options: object | None = None,
        version: int = 1,
    ) -> None:
        """Append an operator (``-1`` in ``inputs`` marks an omitted optional input)."""
        key = (opcode, version)
        if key not in self._opcode_index:
            code = schema.OperatorCodeT()
            code.builtinCode = opcode
            # deprecated_builtin_code is an int8 field: codes > 127 store the placeholder 127
            code.deprecatedBuiltinCode = min(opcode, 127)
            code.version = version
            self._opcode_index[key] = len(self.opcodes)
            self.opcodes.append(code)
        op = schema.OperatorT()
        op.opcodeIndex = self._opcode_index[key]
        op.inputs = np.asarray(inputs, dtype=np.int32)
        op.outputs = np.asarray(outputs, dtype=np.int32)
        if options is not None:
            op.builtinOptionsType = options_type
            op.builtinOptions = options
        self.operators.append(op)

    def finish(self, description: str = "edgequant") -> bytes:
        """Pack the model into ``.tflite`` bytes."""
        sub = schema.SubGraphT()
        sub.tensors = self.tensors
        sub.inputs = np.asarray(self.inputs, dtype=np.int32)
        sub.outputs = np.asarray(self.outputs, dtype=np.int32)
        sub.operators = self.operators
        sub.name = "main"
        model = schema.ModelT()
        model.signatureDefs = [self._signature(sub)]
        model.version = SCHEMA_VERSION
        model.operatorCodes = self.opcodes
        model.subgraphs = [sub]
        model.description = description
        model.buffers = self.buffers
        fb = flatbuffers.Builder(1024)
        fb.Finish(model.Pack(fb), file_identifier=b"TFL3")
        return bytes(fb.Output())


    def _signature(self, sub: schema.SubGraphT) -> schema.SignatureDefT:
        """``serving_default`` signature (LiteRT's ``get_signature_runner`` needs one)."""

        def tmap(indices) -> list:
            maps = []
            for i in indices:
                m = schema.TensorMapT()
                m.name = self.tensors[int(i)].name
                m.tensorIndex = int(i)
                maps.append(m)
            return maps

        sig = schema.SignatureDefT()
        sig.signatureKey = "serving_default"
        sig.subgraphIndex = 0
        sig.inputs = tmap(sub.inputs)
        sig.outputs = tmap(sub.outputs)
        return sig


def pack_int4(values: np.ndarray) -> np.ndarray:
    """int4 values (any int dtype, row-major) → bytes, two per byte, low nibble first."""
    v = np.asarray(values).ravel().astype(np.uint8) & 0xF  # (n,) two's-complement nibbles
    if v.size % 2:
        v = np.append(v, np.uint8(0))
    return (v[0::2] | (v[1::2] << 4)).astype(np.uint8)


def unpack_int4(data: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`pack_int4`: signed int4 values as int8 of ``shape``."""
    b = np.asarray(data, np.uint8)
    nib = np.stack([b & 0xF, b >> 4], axis=1).ravel()[: int(np.prod(shape))]  # (n,)
    return (nib.astype(np.int8) - (nib >= 8).astype(np.int8) * 16).astype(np.int8).reshape(shape)


def load_model(data: bytes, name: str = "<tflite bytes>") -> schema.ModelT:
    """Parse ``.tflite`` bytes into the object API after verifying them
    (:func:`~edgequant.export.tflite.verify_buffer.parse_tflite`)."""
    from edgequant.export.tflite.verify_buffer import parse_tflite

    return parse_tflite(data, name)
