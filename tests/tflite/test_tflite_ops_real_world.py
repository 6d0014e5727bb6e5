"""TFLite export of the ops real models use (Div, HardSigmoid, BatchNormalization, Sum, LRN,
Resize, Pad variants), float and int8: LiteRT (both kernel paths) vs onnxruntime, and the
int8 files vs the reference executor at 0 LSB; refusals name node and attribute."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from real_world_ops import CASES, C, H, W, op_model

import edgequant
from edgequant.errors import UnsupportedOpError
from edgequant.export.tflite import export_tflite
from edgequant.export.tflite.builder import load_model
from edgequant.runtime.litert import LiteRTRunner
from edgequant.runtime.verify_tflite import verify_tflite
from edgequant_zoo import realworld

#: LiteRT float32 kernels vs onnxruntime (different summation orders, LRN's pow).
FLOAT_ATOL = 1e-4
#: LiteRT int8 vs onnxruntime's QDQ graph, in output LSB: ORT requantizes in float, LiteRT in
#: fixed point, and the decompositions (HardSigmoid, BatchNormalization, Sum) add one
#: intermediate rounding each.
MAX_LSB_VS_ORT = 3
#: The same for 16x8 (measured ≤ 2: an intermediate's rounding is a few int16 LSB).
MAX_LSB16_VS_ORT = 3
SAMPLES = 8


def _x(n: int = SAMPLES) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 1, C, H, W)).astype(np.float32)


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _out_scale(path) -> float | None:
    """Scale of the integer tensor DEQUANTIZEd into the float output (None: float output op)."""
    m = load_model(path.read_bytes())
    sub = m.subgraphs[0]
    out = int(sub.outputs[0])
    op = next(o for o in sub.operators if int(o.outputs[0]) == out)
    q = sub.tensors[int(op.inputs[0])].quantization
    return None if q is None or q.scale is None else float(q.scale[0])


@pytest.mark.parametrize("name", sorted(CASES))
def test_float_export_matches_onnxruntime(name, tmp_path):
    build, want_ops = CASES[name]
    model = build()
    res = export_tflite(model, tmp_path / f"{name}.tflite")
    assert res.mode == "fp32" and want_ops & set(res.ops), res.ops
    for xnnpack in (False, True):
        lite = LiteRTRunner(res.path, xnnpack=xnnpack)
        for x in _x(3):
            np.testing.assert_allclose(lite.run({"x": x})[0], _ort(model, x), atol=FLOAT_ATOL,
                                       rtol=1e-4, err_msg=f"{name} xnnpack={xnnpack}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_int8_export_matches_reference_and_onnxruntime(name, tmp_path):
    build, want_ops = CASES[name]
    x = _x()
    qm = edgequant.quantize(build(), "w8a8", calibration={"x": x[:, 0]})
    res = export_tflite(qm.model, tmp_path / f"{name}.tflite")
    assert want_ops & set(res.ops), res.ops
    report = verify_tflite(res.path, {"x": x[:, 0]})
    assert report.ok() and report.max_lsb == 0, report
    scale = _out_scale(res.path)
    assert scale is not None, f"{name}: output is not an integer tensor"
    for xnnpack in (False, True):
        lite = LiteRTRunner(res.path, xnnpack=xnnpack)
        worst = max(float(np.abs(lite.run({"x": xi})[0] - _ort(qm.model, xi)).max())
                    for xi in x)
        assert round(worst / scale) <= MAX_LSB_VS_ORT, (name, xnnpack, worst / scale)


def test_int8_lrn_runs_float_between_dequantize_and_quantize(tmp_path):
    qm = edgequant.quantize(CASES["lrn"][0](), "w8a8", calibration={"x": _x()[:, 0]})
    res = export_tflite(qm.model, tmp_path / "lrn.tflite")
    assert res.ops["DEQUANTIZE"] >= 1 and res.ops["QUANTIZE"] >= 2
    assert res.float_nodes == ["the_lrn"] and res.kinds["the_lrn"] == "float"
    with pytest.raises(UnsupportedOpError, match="the_lrn"):
        export_tflite(qm.model, tmp_path / "strict.tflite", strict=True)


@pytest.mark.parametrize("model, match", [
    (lambda: op_model("Resize", {"roi": np.array([], np.float32),
                                 "scales": np.array([1, 1, 2, 2], np.float32)}, mode="cubic"),
     r"the_resize.*mode='cubic'"),
    (lambda: op_model("Resize", {"roi": np.array([], np.float32),
                                 "scales": np.array([1, 1, 2, 2], np.float32)}, mode="nearest",
                      coordinate_transformation_mode="tf_crop_and_resize"),
     r"the_resize.*coordinate_transformation_mode='tf_crop_and_resize'"),
    (lambda: op_model("Resize", {"roi": np.array([], np.float32),
                                 "scales": np.array([1, 1, 2, 2], np.float32)},
                      mode="nearest", coordinate_transformation_mode="asymmetric",
                      nearest_mode="ceil"),
     r"the_resize.*coordinate_transformation_mode='asymmetric', nearest_mode='ceil'"),
    (lambda: op_model("LRN", size=4), r"the_lrn.*size=4"),
    (lambda: op_model("Pad", {"pads": np.array([0, 0, 2, 2, 0, 0, 2, 2], np.int64)},
                      mode="edge"), r"the_pad.*mode='edge'"),
])
def test_unsupported_attribute_names_node_and_attribute(model, match, tmp_path):
    with pytest.raises(UnsupportedOpError, match=match):
        export_tflite(model(), tmp_path / "bad.tflite")


def test_control_flow_and_gru_refused_naming_the_node(tmp_path):
    with pytest.raises(UnsupportedOpError, match=r"node 'lstm': op LSTM"):
        export_tflite(realworld.vad_lstm().model, tmp_path / "v.tflite")
    with pytest.raises(UnsupportedOpError, match=r"fixed_dims=\{'time': N\}.*--fix-dim time=N"):
        export_tflite(realworld.gru_loop().model, tmp_path / "g.tflite")
    with pytest.raises(UnsupportedOpError, match=r"node 'gru': op GRU"):
        export_tflite(realworld.gru_loop().model, tmp_path / "g.tflite", fixed_dims={"time": 12})


def _seq_model() -> onnx.ModelProto:
    """x (batch, time, 8) and a state (1, batch, 8): Relu(x) and Tanh(state)."""
    from onnx import TensorProto, helper
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu"),
         helper.make_node("Tanh", ["h"], ["hy"], name="tanh")], "seq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "time", 8]),
         helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, "batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "time", 8]),
         helper.make_tensor_value_info("hy", TensorProto.FLOAT, [1, "batch", 8])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_fixed_dims_and_batch_on_axis_1(tmp_path):
    model = _seq_model()
    with pytest.raises(UnsupportedOpError, match=r"dynamic dim 1 \(time\).*fixed_dims"):
        export_tflite(model, tmp_path / "s.tflite")
    with pytest.raises(ValueError, match="frames"):
        export_tflite(model, tmp_path / "s.tflite", fixed_dims={"frames": 3})
    res = export_tflite(model, tmp_path / "s.tflite", fixed_dims={"time": 5})
    lite = LiteRTRunner(res.path)
    assert [tuple(s) for s in lite.input_shapes.values()] == [(1, 5, 8), (1, 1, 8)]
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((1, 5, 8)).astype(np.float32),
             "h": rng.standard_normal((1, 1, 8)).astype(np.float32)}
    y, hy = lite.run(feeds)
    np.testing.assert_array_equal(y, np.maximum(feeds["x"], 0))
    np.testing.assert_allclose(hy, np.tanh(feeds["h"]), atol=1e-6)


def test_paddle_and_zoo_models_export_int8(tmp_path):
    for case in (realworld.paddle_ocr(), realworld.zoo_ir3()):
        feeds = {k: v[:8] for k, v in case.feeds.items()}
        qm = edgequant.quantize(case.model, "w8a8", calibration=feeds)
        path = tmp_path / f"{case.name}.tflite"
        qm.save(path)
        report = verify_tflite(path, {k: v[:2] for k, v in feeds.items()})
        assert report.ok() and report.max_lsb == 0, (case.name, report)


#: 16x8 cases (LiteRT's int16 HARD_SWISH uses LUTs the reference does not model).
CASES_16X8 = sorted(set(CASES) - {"hard_swish"})


@pytest.mark.parametrize("name", CASES_16X8)
def test_16x8_export_matches_reference_and_onnxruntime(name, tmp_path):
    build, want_ops = CASES[name]
    x = _x()
    qm = edgequant.quantize(build(), "w8a16", calibration={"x": x[:, 0]})
    res = export_tflite(qm.model, tmp_path / f"{name}.tflite", mode="int16x8")
    assert (want_ops | {"MAXIMUM"}) & set(res.ops), res.ops
    report = verify_tflite(res.path, {"x": x[:, 0]})
    assert report.ok() and report.max_lsb == 0, report
    scale = _out_scale(res.path)
    lite = LiteRTRunner(res.path, xnnpack=False)
    worst = max(float(np.abs(lite.run({"x": xi})[0] - _ort(qm.model, xi)).max()) for xi in x)
    assert round(worst / scale) <= MAX_LSB16_VS_ORT, (name, worst / scale)


def test_fixed_dims_through_save_and_cli(tmp_path):
    from typer.testing import CliRunner

    from edgequant.cli import app

    src = tmp_path / "seq.onnx"
    onnx.save(_seq_model(), src)
    qm = edgequant.quantize(_seq_model(), "fp16")
    with pytest.raises(UnsupportedOpError, match="fixed_dims"):
        qm.save(tmp_path / "a.tflite")
    out = qm.save(tmp_path / "a.tflite", fixed_dims={"time": 7})
    assert [tuple(s) for s in LiteRTRunner(out).input_shapes.values()] == [(1, 7, 8), (1, 1, 8)]
    with pytest.raises(ValueError, match=r"\.tflite output only"):
        qm.save(tmp_path / "a.onnx", fixed_dims={"time": 7})
    cli_out = tmp_path / "b.tflite"
    res = CliRunner().invoke(app, ["quantize", str(src), "-o", str(cli_out), "--recipe", "fp16",
                                   "--fix-dim", "time=4"])
    assert res.exit_code == 0, res.output
    assert [tuple(s) for s in LiteRTRunner(cli_out).input_shapes.values()] == [(1, 4, 8),
                                                                                (1, 1, 8)]
    bad = CliRunner().invoke(app, ["quantize", str(src), "-o", str(tmp_path / "c.tflite"),
                                   "--recipe", "fp16", "--fix-dim", "time"])
    assert bad.exit_code != 0 and "NAME=SIZE" in bad.output
