"""LayoutNet (explicit Pad, squeeze-excite with ReduceMean → MEAN, HardSwish, Transpose +
Reshape + activation MatMul → BATCH_MATMUL, channel Softmax of a 4-D output) in every mode."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tflite_models as M

from edgequant.export.tflite import export_tflite
from edgequant.runtime.litert import LiteRTRunner
from edgequant.runtime.verify_tflite import verify_tflite

#: Float modes vs onnxruntime, fraction of the output range (see test_tflite_export_float).
TOLERANCE = {"fp32": 1e-5, "fp16": 3e-3, "dynamic": 5e-2}
#: int8 vs onnxruntime's QDQ model: 1/255 softmax LSB, up to 2 (see test_tflite_export_int8).
MAX_ABS_VS_ORT = 2 / 255
#: XNNPACK takes over some int8 BATCH_MATMULs (depending on qparams) and requantizes them in
#: fp32; the reference models LiteRT's builtin BATCH_MATMUL, so that path may differ by 1.
XNNPACK_BATCH_MATMUL_LSB = 1


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("layout")
    f = M.export_onnx(M.LayoutNet(), (1, 3, 8, 8), root / "lay.onnx")
    x = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32)
    return f, M.quantize_qdq(f, root / "lay_qdq.onnx", x), x, root


@pytest.mark.parametrize("mode", sorted(TOLERANCE))
def test_layout_float_modes(layout, mode):
    f, _, x, root = layout
    res = export_tflite(onnx.load(f), root / f"lay_{mode}.tflite", mode=mode)
    for op in ("PAD", "MEAN", "HARD_SWISH", "BATCH_MATMUL", "SOFTMAX"):
        assert op in res.ops
    sess = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
    for xnnpack in (True, False):
        got = LiteRTRunner(res.path, xnnpack=xnnpack).run({"x": x[:1]})[0]
        want = sess.run(None, {"x": x[:1]})[0]
        assert got.shape == want.shape == (1, 4, 7, 7)
        assert np.abs(got - want).max() <= TOLERANCE[mode] * float(want.max() - want.min())


def test_layout_int8(layout):
    _, q, x, root = layout
    res = export_tflite(onnx.load(q), root / "lay_int8.tflite")
    sess = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"])
    lite = LiteRTRunner(res.path)
    for i in range(len(x)):
        diff = np.abs(lite.run({"x": x[i:i + 1]})[0] - sess.run(None, {"x": x[i:i + 1]})[0])
        assert diff.max() <= MAX_ABS_VS_ORT + 1e-7
    report = verify_tflite(res.path, {"x": x})
    assert report.output("y", "litert/builtin").max_diff == 0
    assert report.output("y", "litert/xnnpack").max_diff <= XNNPACK_BATCH_MATMUL_LSB


def test_last_axis_ops_read_nchw(tmp_path):
    """Linear / broadcast / ReduceMean over W of an NHWC-stored tensor see the ONNX axes."""
    f = M.export_onnx(M.LastAxisNet(), (1, 3, 6, 8), tmp_path / "last.onnx")
    x = np.random.default_rng(1).standard_normal((1, 3, 6, 8)).astype(np.float32)
    res = export_tflite(onnx.load(f), tmp_path / "last.tflite")
    want = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = LiteRTRunner(res.path).run({"x": x})[0]
    assert np.abs(got - want).max() <= TOLERANCE["fp32"] * float(want.max() - want.min())
