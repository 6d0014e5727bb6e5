"""The four runners behind one protocol: onnxruntime, the ONNX reference interpreter, LiteRT
and the TFLite reference.

Oracles: a plain onnxruntime session, LiteRT's own interpreter driven by hand (its I/O
qparams from ``get_input_details``), and numpy formulas for the float ↔ int8 mapping.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgequant.runtime.ort import OrtRunner
from edgequant.runtime.reference import ReferenceRunner
from edgequant.runtime.runner import Runner
from edgequant.runtime.runners import open_runner


@pytest.mark.parametrize(("kind", "engine", "cls"), [
    ("onnx", None, "OrtRunner"), ("onnx", "reference", "ReferenceRunner"),
    ("tflite", None, "LiteRTRunner"), ("tflite", "reference", "TFLiteReferenceRunner")])
def test_open_runner_picks_the_engine(models, kind, engine, cls):
    path = models.qdq_path if kind == "onnx" else models.tflite_path
    r = open_runner(path, engine=engine)
    assert type(r).__name__ == cls and isinstance(r, Runner)
    assert r.engine == (engine or {"onnx": "onnxruntime", "tflite": "litert"}[kind])
    (y,) = r.run({"x": models.x})
    assert y.shape == (len(models.x), 5) and y.dtype == np.float32


def test_open_runner_takes_a_model_proto(models):
    proto = onnx.load(models.float_path)
    want = ort.InferenceSession(str(models.float_path), providers=["CPUExecutionProvider"]
                                ).run(None, {"x": models.x})[0]
    np.testing.assert_array_equal(open_runner(proto).run({"x": models.x})[0], want)
    assert isinstance(open_runner(proto, engine="reference"), ReferenceRunner)
    with pytest.raises(ValueError, match="litert"):
        open_runner(proto, engine="litert")
    with pytest.raises(TypeError, match="ModelProto"):
        open_runner(b"bytes")


def test_tflite_reference_equals_litert_builtin_bit_for_bit(models):
    """Same float feeds → same int8 feeds → LiteRT's builtin kernels and the reference agree
    exactly, raw and dequantized, sample by sample on the batch-1 model."""
    from edgequant.runtime.litert import LiteRTRunner

    lite = LiteRTRunner(models.tflite_int8_path, xnnpack=False)
    ref = open_runner(models.tflite_int8_path, engine="reference")
    assert lite.input_shapes == ref.input_shapes == {"x": (1, 1, 6, 6)}
    xq = lite.prepare_feeds({"x": models.x})
    np.testing.assert_array_equal(xq["x"], ref.prepare_feeds({"x": models.x})["x"])
    raw_lite, raw_ref = lite.run(xq, raw=True)[0], ref.run(xq, raw=True)[0]
    assert raw_lite.dtype == np.int8 and raw_lite.shape == (len(models.x), 5)
    np.testing.assert_array_equal(raw_lite, raw_ref)
    np.testing.assert_array_equal(lite.run({"x": models.x})[0], ref.run({"x": models.x})[0])


def test_litert_runner_maps_float_io_like_litert_qparams(models):
    """The oracle drives LiteRT by hand: quantize with the input's reported qparams (round
    half to even, as ONNX QuantizeLinear), invoke, dequantize with the output's."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(models.tflite_int8_path))
    it.allocate_tensors()
    (din,), (dout,) = it.get_input_details(), it.get_output_details()
    (s_in, z_in), (s_out, z_out) = din["quantization"], dout["quantization"]
    want = []
    for i in range(len(models.x)):
        xi = np.float32(models.x[i:i + 1]) / np.float32(s_in)
        it.set_tensor(din["index"], np.clip(np.rint(xi) + z_in, -128, 127).astype(np.int8))
        it.invoke()
        y = it.get_tensor(dout["index"]).astype(np.int32)  # (1, 5) int8 widened
        want.append((y - z_out).astype(np.float32) * np.float32(s_out))
    got = open_runner(models.tflite_int8_path).run({"x": models.x})[0]
    np.testing.assert_array_equal(got, np.concatenate(want))


def test_onnx_engines_agree_on_the_qdq_model(models):
    """onnxruntime fuses the QDQ model into the integer kernels of its QOperator lowering; the
    interpreter runs that lowering: all three agree bit for bit on this conv net."""
    from edgequant.export.qop.lower import lower_to_qop

    lowered = lower_to_qop(onnx.load(models.qdq_path))
    shipped = open_runner(models.qdq_path).run({"x": models.x})[0]
    a = OrtRunner(lowered).run({"x": models.x}, raw=True)[0]
    b = ReferenceRunner(lowered).run({"x": models.x}, raw=True)[0]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(shipped, a)


def test_extra_outputs_on_both_onnx_engines(models):
    a = OrtRunner(models.float_path, extra_outputs=["r"])
    b = ReferenceRunner(models.float_path, extra_outputs=["r"])
    assert a.output_names == b.output_names == ["y", "r"]
    ra, rb = a.run({"x": models.x})[1], b.run({"x": models.x})[1]
    assert ra.shape == (len(models.x), 4, 6, 6) and (ra >= 0).all()
    np.testing.assert_allclose(ra, rb, rtol=1e-5, atol=1e-5)


def test_missing_feeds_name_the_inputs(models):
    for r in (open_runner(models.qdq_path), open_runner(models.tflite_path, engine="reference")):
        with pytest.raises(ValueError, match="'x'"):
            r.run({"image": models.x})


def _dynamic_batch_relu(tmp_path):
    """A one-op float ``.tflite`` whose batch dimension is dynamic (``shape_signature`` -1):
    the exporter's Relu model with the signature rewritten in the flatbuffer."""
    import flatbuffers
    from onnx import TensorProto
    from onnx import helper as h

    from edgequant.export.tflite.builder import load_model
    from edgequant.export.tflite.export import export_tflite

    g = h.make_graph([h.make_node("Relu", ["x"], ["y"])], "g",
                     [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                     [h.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    res = export_tflite(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]),
                        tmp_path / "relu.tflite")
    m = load_model(res.path.read_bytes())
    for t in m.subgraphs[0].tensors:
        t.shapeSignature = np.array([-1, 4], np.int32)
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    out = tmp_path / "relu_dynamic.tflite"
    out.write_bytes(bytes(b.Output()))
    return out


def test_litert_runner_resizes_a_dynamic_batch(tmp_path):
    from edgequant.runtime.litert import LiteRTRunner

    r = LiteRTRunner(_dynamic_batch_relu(tmp_path))
    assert r.input_shapes == {"x": (None, 4)}
    x = np.linspace(-2, 2, 20, dtype=np.float32).reshape(5, 4)
    np.testing.assert_array_equal(r.run({"x": x})[0], np.maximum(x, 0))  # one call, 5 rows
    np.testing.assert_array_equal(r.run({"x": x[:2]})[0], np.maximum(x[:2], 0))
    with pytest.raises(ValueError, match=r"'x'.*\(\?, 4\)"):
        r.run({"x": np.zeros((5, 3), np.float32)})
