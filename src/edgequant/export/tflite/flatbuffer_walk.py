"""Bounds-checked walk over the raw bytes of a ``.tflite`` flatbuffer (structure only).

The generated Python reader (``schema_py_generated``) trusts every offset: a corrupted file
ends in ``struct.error`` / ``IndexError`` deep inside it, or in a vector "length" of four
billion. :func:`walk_model` visits every table, vector and string the reader will touch —
Model, SubGraph, Tensor, Operator, OperatorCode, Buffer, QuantizationParameters, Metadata,
SignatureDef, TensorMap, SparsityParameters — checking that each vtable, inline table, offset,
vector length and string lies inside the file, and that the total bytes visited stay within a
budget proportional to the file (no "zip bomb" of tables sharing one huge vector). Union
tables (builtin options, quantization details) get the generic table check.

Table layouts follow ``tensorflow/compiler/mlir/lite/schema/schema.fbs``: the vtable slot of
field ``i`` is ``4 + 2 i``.
"""

from __future__ import annotations

import struct

from edgequant.errors import ModelLoadError


class InvalidModelError(ModelLoadError):
    """A model file is malformed: one line naming the file, the part and what is wrong."""


#: scalar kind → byte size
_SIZES = {"u8": 1, "i8": 1, "bool": 1, "i32": 4, "u32": 4, "i64": 8, "u64": 8, "f32": 4}

# table name → {vtable slot: (field, kind, argument)}; kinds: a scalar kind, "str",
# ("vec", scalar kind), ("tvec", table), ("table", table), ("union", None)
_SCHEMA: dict[str, dict[int, tuple]] = {
    "Model": {4: ("version", "u32"), 6: ("operator_codes", ("tvec", "OperatorCode")),
              8: ("subgraphs", ("tvec", "SubGraph")), 10: ("description", "str"),
              12: ("buffers", ("tvec", "Buffer")), 14: ("metadata_buffer", ("vec", "i32")),
              16: ("metadata", ("tvec", "Metadata")),
              18: ("signature_defs", ("tvec", "SignatureDef")),
              20: ("external_buffer_groups", ("tvec", None)),
              22: ("external_buffers", ("tvec", None))},
    "OperatorCode": {4: ("deprecated_builtin_code", "i8"), 6: ("custom_code", "str"),
                     8: ("version", "i32"), 10: ("builtin_code", "i32")},
    "SubGraph": {4: ("tensors", ("tvec", "Tensor")), 6: ("inputs", ("vec", "i32")),
                 8: ("outputs", ("vec", "i32")), 10: ("operators", ("tvec", "Operator")),
                 12: ("name", "str"), 14: ("debug_metadata_index", "i32")},
    "Tensor": {4: ("shape", ("vec", "i32")), 6: ("type", "i8"), 8: ("buffer", "u32"),
               10: ("name", "str"), 12: ("quantization", ("table", "QuantizationParameters")),
               14: ("is_variable", "bool"), 16: ("sparsity", ("table", "SparsityParameters")),
               18: ("shape_signature", ("vec", "i32")), 20: ("has_rank", "bool"),
               22: ("variant_tensors", ("tvec", "VariantSubType")),
               24: ("external_buffer", "u32")},
    "Operator": {4: ("opcode_index", "u32"), 6: ("inputs", ("vec", "i32")),
                 8: ("outputs", ("vec", "i32")), 10: ("builtin_options_type", "u8"),
                 12: ("builtin_options", ("union", None)), 14: ("custom_options", ("vec", "u8")),
                 16: ("custom_options_format", "i8"),
                 18: ("mutating_variable_inputs", ("vec", "bool")),
                 20: ("intermediates", ("vec", "i32")), 22: ("large_custom_options_offset", "u64"),
                 24: ("large_custom_options_size", "u64"), 26: ("builtin_options_2_type", "u8"),
                 28: ("builtin_options_2", ("union", None)), 30: ("debug_metadata_index", "i32")},
    "Buffer": {4: ("data", ("vec", "u8")), 6: ("offset", "u64"), 8: ("size", "u64")},
    "QuantizationParameters": {4: ("min", ("vec", "f32")), 6: ("max", ("vec", "f32")),
                               8: ("scale", ("vec", "f32")), 10: ("zero_point", ("vec", "i64")),
                               12: ("details_type", "u8"), 14: ("details", ("union", None)),
                               16: ("quantized_dimension", "i32")},
    "Metadata": {4: ("name", "str"), 6: ("buffer", "u32")},
    "SignatureDef": {4: ("inputs", ("tvec", "TensorMap")), 6: ("outputs", ("tvec", "TensorMap")),
                     8: ("signature_key", "str"), 12: ("subgraph_index", "u32")},
    "TensorMap": {4: ("name", "str"), 6: ("tensor_index", "u32")},
    "SparsityParameters": {4: ("traversal_order", ("vec", "i32")),
                           6: ("block_map", ("vec", "i32")),
                           8: ("dim_metadata", ("tvec", None))},
    "VariantSubType": {4: ("shape", ("vec", "i32")), 6: ("type", "i8"), 8: ("has_rank", "bool")},
}


class _Walker:
    """One pass over a buffer; raises :class:`InvalidModelError` at the first problem."""

    def __init__(self, buf: bytes, name: str) -> None:
        self.buf, self.n, self.name = buf, len(buf), name
        # a valid file visits each byte about once; allow sharing up to twice the file
        self.budget = 2 * len(buf) + 65536

    def fail(self, where: str, what: str) -> None:
        raise InvalidModelError(f"{self.name}: {where}: {what} (file is {self.n:,} bytes)")

    def spend(self, where: str, nbytes: int) -> None:
        self.budget -= nbytes
        if self.budget < 0:
            self.fail(where, "tables and vectors overlap far beyond the file size "
                             "(malformed or hostile offsets)")

    def u32(self, pos: int, where: str) -> int:
        if pos < 0 or pos + 4 > self.n:
            self.fail(where, f"offset {pos} is outside the file")
        return struct.unpack_from("<I", self.buf, pos)[0]

    def offset(self, pos: int, where: str) -> int:
        """Follow the uoffset stored at ``pos``."""
        target = pos + self.u32(pos, where)
        if target >= self.n:
            self.fail(where, f"points to byte {target}, past the end of the file")
        return target

    def table(self, pos: int, where: str) -> tuple[dict[int, int], int]:
        """Check the table at ``pos``; return ({vtable slot: field position} of present
        fields, end of the table's inline bytes)."""
        self.spend(where, 4)
        soff = struct.unpack_from("<i", self.buf, pos)[0] if pos + 4 <= self.n else None
        if soff is None:
            self.fail(where, f"table at byte {pos} runs past the end of the file")
        vt = pos - soff
        if vt < 0 or vt + 4 > self.n:
            self.fail(where, f"table at byte {pos} has its vtable at byte {vt}, outside the file")
        vt_size, tbl_size = struct.unpack_from("<HH", self.buf, vt)
        if vt_size < 4 or vt_size % 2 or vt + vt_size > self.n:
            self.fail(where, f"vtable at byte {vt} has size {vt_size}; it must be even, at "
                             "least 4 and inside the file")
        if tbl_size < 4 or pos + tbl_size > self.n:
            self.fail(where, f"table at byte {pos} of {tbl_size} bytes runs past the end of "
                             "the file")
        fields = {}
        for slot in range(4, vt_size, 2):
            fo = struct.unpack_from("<H", self.buf, vt + slot)[0]
            if fo:
                if fo < 4 or fo >= tbl_size:
                    self.fail(where, f"field slot {slot} at table offset {fo} lies outside "
                                     f"the table's {tbl_size} bytes")
                fields[slot] = pos + fo
        return fields, pos + tbl_size

    def vector(self, pos: int, elem: int, where: str, extra: int = 0) -> tuple[int, int]:
        """(start of elements, length) of the vector at ``pos`` after a bounds check."""
        length = self.u32(pos, where)
        end = pos + 4 + length * elem + extra
        if end > self.n:
            self.fail(where, f"vector of {length:,} elements ({elem} bytes each) runs past the "
                             "end of the file")
        self.spend(where, length * elem + 4)
        return pos + 4, length

    def walk(self, kind: str | None, pos: int, where: str) -> None:
        fields, end = self.table(pos, where)
        layout = _SCHEMA.get(kind, {}) if kind else {}
        for slot, fpos in fields.items():
            spec = layout.get(slot)
            if spec is None:
                continue  # a field this reader never touches: checked inside the table only
            field, ftype = spec
            at = f"{where}.{field}"
            if isinstance(ftype, str) and ftype in _SIZES:
                if fpos + _SIZES[ftype] > end:
                    self.fail(at, "scalar field runs past the end of its table")
                continue
            if fpos + 4 > end:
                self.fail(at, "offset field runs past the end of its table")
            target = self.offset(fpos, at)
            if ftype == "str":
                start, length = self.vector(target, 1, at, extra=1)
                if self.buf[start + length] != 0:
                    self.fail(at, "string is not NUL-terminated")
                continue
            what, arg = ftype
            if what == "vec":
                self.vector(target, _SIZES[arg], at)
            elif what in ("table", "union"):
                self.walk(arg, target, at)
            elif what == "tvec":
                start, length = self.vector(target, 4, at)
                for i in range(length):
                    self.walk(arg, self.offset(start + 4 * i, f"{at}[{i}]"), f"{at}[{i}]")


def walk_model(buf: bytes, name: str) -> None:
    """Check the structure of a ``.tflite`` flatbuffer; :class:`InvalidModelError` on the
    first out-of-bounds offset, length, vtable or string, naming where it is."""
    if len(buf) < 12:
        raise InvalidModelError(f"{name}: is not a TFLite flatbuffer ({len(buf)} bytes is too "
                                "short)")
    if buf[4:8] != b"TFL3":
        raise InvalidModelError(f"{name}: is not a TFLite flatbuffer (no 'TFL3' file identifier)")
    w = _Walker(buf, name)
    w.walk("Model", w.offset(0, "root offset"), "model")
