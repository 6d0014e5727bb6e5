"""The verified TFLite reader: valid exports pass unchanged; each class of corruption gets one
line naming the part and the numbers; nothing reaches LiteRT or the reference unverified."""

from __future__ import annotations

import struct

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from onnx import TensorProto, helper, numpy_helper

import edgequant as eq
from edgequant.export.tflite.verify_buffer import InvalidModelError, parse_tflite, read_tflite
from edgequant.inspect.model import inspect_model
from edgequant.runtime.litert import LiteRTRunner
from edgequant.runtime.tflite_reference import TFLiteReferenceRunner


@pytest.fixture(scope="module")
def tflite_bytes(tmp_path_factory) -> bytes:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "b")]
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"]), helper.make_node("Relu", ["c"], ["y"])],
        "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    x = rng.uniform(0, 1, (8, 1, 6, 6)).astype(np.float32)
    path = tmp_path_factory.mktemp("tfl") / "m.tflite"
    eq.quantize(model, "w8a8", {"x": x}).save(path)
    return path.read_bytes()


def _repack(data: bytes, edit) -> bytes:
    m = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    edit(m)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_valid_export_passes_and_unpacks_identically(tflite_bytes):
    m = parse_tflite(tflite_bytes, "m.tflite")
    ref = schema.ModelT.InitFromPackedBuf(bytearray(tflite_bytes), 0)
    assert len(m.subgraphs[0].tensors) == len(ref.subgraphs[0].tensors)
    assert [op.inputs.tolist() for op in m.subgraphs[0].operators] == \
        [op.inputs.tolist() for op in ref.subgraphs[0].operators]


def _n_tensors(data: bytes) -> int:
    return len(schema.ModelT.InitFromPackedBuf(bytearray(data), 0).subgraphs[0].tensors)


def _set_op_input(m):
    m.subgraphs[0].operators[1].inputs[0] = 97


def _set_scales(m):
    t = next(t for t in m.subgraphs[0].tensors if t.quantization is not None
             and t.quantization.scale is not None and len(t.quantization.scale) == 1)
    t.quantization.scale = [0.1, 0.2, 0.3]
    t.quantization.zeroPoint = [0, 0, 0]


@pytest.mark.parametrize("edit,pattern", [
    (_set_op_input, r"operator 1 \(\w+\) of subgraph 0 reads tensor 97, but the subgraph has "
                    r"\d+ tensors"),
    (lambda m: setattr(m.subgraphs[0].operators[0], "opcodeIndex", 40),
     r"operator 0 of subgraph 0 uses operator code 40, but the model has \d+"),
    (lambda m: setattr(m.subgraphs[0].tensors[0], "buffer", 10_000),
     r"tensor 0 of subgraph 0 uses buffer 10000, but the model has \d+ buffers"),
    (_set_scales, r"has 3 scales for axis 0 of size 1; give 1 or 1|is quantized per channel"),
    (lambda m: m.subgraphs[0].tensors[0].shape.__setitem__(0, -4), r"dimensions must be >= 0"),
    (lambda m: m.subgraphs[0].tensors[0].shape.__setitem__(1, 2**30),
     r"declares shape .* bytes\); at most"),
    (lambda m: setattr(m, "subgraphs", []), "the model has no subgraph"),
    (lambda m: setattr(m.operatorCodes[0], "builtinCode", 5000), "builtin operator 5000"),
])
def test_semantic_corruption_named(tflite_bytes, edit, pattern):
    with pytest.raises(InvalidModelError, match=pattern):
        parse_tflite(_repack(tflite_bytes, edit), "m.tflite")


def test_structural_corruption_named(tflite_bytes):
    data = bytearray(tflite_bytes)
    with pytest.raises(InvalidModelError, match=r"m.tflite: .*(past the end|outside)"):
        parse_tflite(bytes(data[: len(data) // 2]), "m.tflite")
    root = struct.unpack_from("<I", data, 0)[0]
    struct.pack_into("<I", data, 0, root + 10_000_000)
    with pytest.raises(InvalidModelError, match="root offset: points to byte"):
        parse_tflite(bytes(data), "m.tflite")
    with pytest.raises(InvalidModelError, match="no 'TFL3' file identifier"):
        parse_tflite(b"\x00" * 64, "m.tflite")


def test_huge_vector_length_refused_before_unpacking(tflite_bytes):
    """A shape vector claiming 2**31 elements: refused by the walk, not allocated."""
    data = bytearray(tflite_bytes)
    m = schema.Model.GetRootAs(data, 0)
    t = m.Subgraphs(0).Tensors(0)
    o = t._tab.Offset(4)  # Tensor.shape
    vec = t._tab.Vector(o) - 4  # the length word
    struct.pack_into("<I", data, vec, 2**31)
    with pytest.raises(InvalidModelError, match=r"tensors\[0\]\.shape: vector of 2,147,483,648"):
        parse_tflite(bytes(data), "m.tflite")


def test_every_reader_verifies(tmp_path, tflite_bytes):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(_repack(tflite_bytes, _set_op_input))
    for open_it in (read_tflite, inspect_model, LiteRTRunner, TFLiteReferenceRunner):
        with pytest.raises(InvalidModelError, match=r"bad\.tflite: operator 1"):
            open_it(bad)
