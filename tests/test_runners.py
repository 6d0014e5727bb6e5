"""open_runner: backend choice, errors, and float ↔ integer I/O through ``edgequant.io``.

Oracle: a plain onnxruntime session on the raw integer model, with inputs quantized and
outputs dequantized here by the ONNX formulas written out in numpy.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

from edgequant.analysis.compare import compare
from edgequant.runtime.runner import parse_io_metadata
from edgequant.runtime.runners import open_runner

IN_SCALE, IN_ZP = 1 / 255, 0
OUT_SCALE, OUT_ZP = 0.05, -3
#: The integer-I/O model quantizes inputs to 1/255 and outputs to 0.05, so it must still
#: track the float model closely on [0, 1] inputs.
MIN_INT_IO_COSINE = 0.99
#: Reference interpreter vs onnxruntime on a QDQ MatMul: the float matmul may round one
#: value across a quantization boundary, one output step at most.
MAX_REFERENCE_LSB = 1
#: float64 feeds cast to float32 vs numpy's float32 matmul: only summation order differs.
FLOAT32_RTOL, FLOAT32_ATOL = 1e-5, 1e-6


def _w():
    return np.random.default_rng(0).normal(0, 1, (4, 3)).astype(np.float32)


def _save(graph, path, io=None):
    m = h.make_model(graph, opset_imports=[h.make_opsetid("", 21)])
    m.ir_version = 10
    if io is not None:
        h.set_model_props(m, {"edgequant.io": json.dumps(io)})
    onnx.checker.check_model(m)
    onnx.save(m, path)
    return path


@pytest.fixture
def float_model(tmp_path):
    g = h.make_graph(
        [h.make_node("MatMul", ["x", "w"], ["y"])], "f",
        [h.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [h.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [nh.from_array(_w(), "w")],
    )
    return _save(g, tmp_path / "float.onnx")


@pytest.fixture
def int_io_model(tmp_path):
    """uint8 input, int8 output, qparams in the ``edgequant.io`` metadata."""
    g = h.make_graph(
        [
            h.make_node("DequantizeLinear", ["x", "xs", "xz"], ["xf"]),
            h.make_node("MatMul", ["xf", "w"], ["yf"]),
            h.make_node("QuantizeLinear", ["yf", "ys", "yz"], ["y"]),
        ],
        "q",
        [h.make_tensor_value_info("x", TensorProto.UINT8, ["N", 4])],
        [h.make_tensor_value_info("y", TensorProto.INT8, ["N", 3])],
        [
            nh.from_array(_w(), "w"),
            nh.from_array(np.array(IN_SCALE, np.float32), "xs"),
            nh.from_array(np.array(IN_ZP, np.uint8), "xz"),
            nh.from_array(np.array(OUT_SCALE, np.float32), "ys"),
            nh.from_array(np.array(OUT_ZP, np.int8), "yz"),
        ],
    )
    io = {"x": {"dtype": "uint8", "scale": IN_SCALE, "zero_point": IN_ZP},
          "y": {"dtype": "int8", "scale": OUT_SCALE, "zero_point": OUT_ZP}}
    return _save(g, tmp_path / "int_io.onnx", io)


def _x(n=16):
    return np.random.default_rng(1).uniform(0, 1, (n, 4))  # float64 on purpose


def test_float_feeds_are_quantized_and_outputs_dequantized(int_io_model):
    r = open_runner(int_io_model)
    assert r.input_dtypes["x"] == np.uint8
    x = _x()
    (got,) = r.run({"x": x})
    xq = np.clip(np.rint(x.astype(np.float32) / np.float32(IN_SCALE)) + IN_ZP, 0, 255)
    xq = xq.astype(np.uint8)
    (yq,) = ort.InferenceSession(str(int_io_model)).run(None, {"x": xq})
    assert yq.dtype == np.int8
    want = (yq.astype(np.int32) - OUT_ZP).astype(np.float32) * np.float32(OUT_SCALE)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    (raw,) = r.run({"x": xq}, raw=True)
    np.testing.assert_array_equal(raw, yq)


def test_int_io_model_compares_with_float_model(float_model, int_io_model):
    rows = compare(float_model, [int_io_model], {"x": _x(64)}, latency_repeats=0)
    assert rows[1].cosine > MIN_INT_IO_COSINE
    assert rows[1].sqnr_db < np.inf  # quantization changed something, so it is measured


def test_float_model_takes_float64_feeds(float_model):
    x = _x()
    (got,) = open_runner(float_model, threads=1).run({"x": x})
    np.testing.assert_allclose(got, x.astype(np.float32) @ _w(), rtol=FLOAT32_RTOL, atol=FLOAT32_ATOL)


def test_threads_option_reaches_session(float_model):
    r = open_runner(float_model, threads=1)
    assert r.session.get_session_options().intra_op_num_threads == 1


def test_reference_engine_matches_onnxruntime(int_io_model):
    xq = np.random.default_rng(2).integers(0, 256, (32, 4), dtype=np.uint8)
    (ref,) = open_runner(int_io_model, engine="reference").run({"x": xq}, raw=True)
    (want,) = open_runner(int_io_model).run({"x": xq}, raw=True)
    assert ref.dtype == want.dtype == np.int8
    diff = np.abs(ref.astype(np.int32) - want.astype(np.int32))
    assert diff.max() <= MAX_REFERENCE_LSB


def test_errors_name_what_is_allowed(float_model, tmp_path):
    bad = tmp_path / "m.pb"
    bad.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"\.onnx"):
        open_runner(bad)
    with pytest.raises(ValueError, match="reference"):
        open_runner(float_model, engine="tensorrt")
    tfl = tmp_path / "m.tflite"
    tfl.write_bytes(b"x")
    with pytest.raises(ValueError, match="litert"):
        open_runner(tfl, engine="onnxruntime")
    for engine in ("litert", "reference"):
        with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
            open_runner(tfl, engine=engine)
    with pytest.raises(ValueError, match="'x'"):
        open_runner(float_model).run({"input": _x()})
    with pytest.raises(ValueError, match=r"edgequant\.io"):
        parse_io_metadata('{"x": {"dtype": "uint8"}}')


def _two_output_model(path, w):
    g = h.make_graph(
        [h.make_node("MatMul", ["x", "w"], ["a"]), h.make_node("Relu", ["a"], ["b"])], "two",
        [h.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [h.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3]),
         h.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 3])],
        [nh.from_array(w, "w")],
    )
    return _save(g, path)


def test_compare_reports_every_output_of_multi_output_models(tmp_path):
    w = _w()
    ref = _two_output_model(tmp_path / "ref.onnx", w)
    noisy = _two_output_model(tmp_path / "noisy.onnx", w + np.float32(0.01))
    x = _x(32) - 0.5
    rows = compare(ref, [noisy], {"x": x}, latency_repeats=0)
    xr = x.astype(np.float32)
    a_ref, a_t = (xr @ w).astype(np.float64), (xr @ (w + np.float32(0.01))).astype(np.float64)
    b_ref, b_t = np.maximum(a_ref, 0), np.maximum(a_t, 0)

    def sqnr(r, t):
        return 10 * np.log10((r**2).sum() / ((r - t) ** 2).sum())

    row = rows[1]
    assert set(row.outputs) == {"a", "b"}
    # first output is the row's headline number; every output is in ``outputs``
    assert row.sqnr_db == pytest.approx(sqnr(a_ref, a_t), rel=FLOAT32_RTOL)
    assert row.outputs["a"]["sqnr_db"] == row.sqnr_db
    assert row.outputs["b"]["sqnr_db"] == pytest.approx(sqnr(b_ref, b_t), rel=FLOAT32_RTOL)
