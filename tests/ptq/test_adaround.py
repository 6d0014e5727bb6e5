"""AdaRound: learned rounding lowers the output error against the float model (onnxruntime
runs of the exported QDQ models), keeps every integer on the round-to-nearest grid, verifies
at 0 LSB in onnxruntime and LiteRT, and is reproducible from its seed."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

import edgequant as eq
from edgequant.errors import EdgequantError, RecipeError
from edgequant.ptq.quantizer import quantize
from edgequant.ptq.recovery.layer_rows import gather_rows, layer_output, pick_rows, weighted_layers
from edgequant.recipes import get_recipe

pytest.importorskip("torch")

FAST = {"adaround": True, "adaround_iters": 300, "adaround_seconds_per_layer": 0,
        "adaround_rows": 1024}


def _run(path_or_proto, x: np.ndarray) -> np.ndarray:
    src = path_or_proto.SerializeToString() if isinstance(path_or_proto, onnx.ModelProto) \
        else str(path_or_proto)
    return ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def _weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: nh.to_array(t) for t in model.graph.initializer
            if t.name.endswith("_quantized")}


@pytest.fixture(scope="module")
def w4(effnet_head, photos):
    cal, _ = photos
    # round-to-nearest without bias correction: what AdaRound replaces (bias correction,
    # on by default below 8 bits, is switched off when AdaRound runs; docs/adaround.md)
    rtn = quantize(str(effnet_head), get_recipe("w4a8").with_options(bias_correction="none"),
                   {"input": cal})
    ada = quantize(str(effnet_head), get_recipe("w4a8").with_options(**FAST), {"input": cal})
    return rtn, ada


@pytest.fixture(scope="module")
def w8(effnet_head, photos):
    return quantize(str(effnet_head), get_recipe("w8a8").with_options(**FAST),
                    {"input": photos[0]})


def test_adaround_lowers_output_error_vs_round_to_nearest(effnet_head, photos, w4):
    _, ev = photos  # photos disjoint from the calibration ones
    ref = _run(effnet_head, ev)
    rtn, ada = w4
    err_rtn = np.mean((_run(rtn.model, ev) - ref) ** 2)
    err_ada = np.mean((_run(ada.model, ev) - ref) ** 2)
    assert err_ada < 0.8 * err_rtn, (err_ada, err_rtn)
    layers = ada.report["adaround"]["layers"]
    assert len(layers) == 10  # stem, 2 + 3 + 3 block convs (depthwise included), head Gemm
    assert all(la["mse_adaround"] <= la["mse_rtn"] or la["kept_rtn"] for la in layers)
    assert sum(la["mse_adaround"] < la["mse_rtn"] for la in layers) >= 8


def test_integers_stay_on_the_round_to_nearest_grid(w4):
    rtn, ada = w4
    a, b = _weights(rtn.model), _weights(ada.model)
    assert a.keys() == b.keys()
    scales = {t.name: nh.to_array(t) for t in rtn.model.graph.initializer}
    for t in ada.model.graph.initializer:  # same scales and zero points as RTN
        if t.name.endswith(("_scale", "_zero_point")):
            np.testing.assert_array_equal(nh.to_array(t), scales[t.name])
    changed = 0
    for name, q in b.items():
        if name.startswith(("input", "logits")) or q.dtype.itemsize > 1:
            continue  # activations / int32 biases
        diff = q.astype(np.int32) - a[name].astype(np.int32)
        assert np.abs(diff).max() <= 1, name
        assert q.min() >= -7 and q.max() <= 7, name  # int4 narrow range
        changed += int(np.count_nonzero(diff))
    assert changed > 0


def test_exported_w8a8_verifies_at_zero_lsb_in_onnxruntime_and_litert(w8, photos, tmp_path):
    pytest.importorskip("ai_edge_litert")
    from edgequant.runtime.verify_tflite import verify_tflite

    _, ev = photos
    qdq = w8.save(tmp_path / "ada.onnx")
    report = eq.verify(str(qdq), {"input": ev}, isolate_integer=True)
    assert report.max_lsb == 0, report.to_dict()
    tfl = w8.save(tmp_path / "ada.tflite")
    lite = verify_tflite(tfl, {"input": ev[:4]})
    assert lite.ok(0), lite.to_dict()


def test_w4a8_exports_tflite_with_the_learned_integers(w4, photos, tmp_path):
    pytest.importorskip("ai_edge_litert")
    from edgequant.runtime.litert import LiteRTRunner

    _, ada = w4
    _, ev = photos
    path = ada.save(tmp_path / "ada4.tflite")
    got = LiteRTRunner(path).run({"input": ev[:4]})[0]
    want = _run(ada.model, ev[:4])
    # LiteRT's integer kernels vs onnxruntime on the same integers: close, not bit-exact
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.99


def test_same_seed_gives_byte_identical_model(effnet_head, photos, w8):
    again = quantize(str(effnet_head), get_recipe("w8a8").with_options(**FAST),
                     {"input": photos[0]})
    assert again.model.SerializeToString() == w8.model.SerializeToString()


@pytest.mark.parametrize("name, value", [("adaround", "yes"), ("adaround_iters", 0),
                                         ("adaround_seconds_per_layer", -1.0),
                                         ("adaround_samples", 2.5), ("seed", -3)])
def test_bad_option_values_are_refused(name, value):
    with pytest.raises(RecipeError, match=name):
        get_recipe("w8a8").with_options(**{name: value})


def test_missing_torch_names_the_extra(effnet_head, photos, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(EdgequantError, match=r"edgequant\[torch\]"):
        quantize(str(effnet_head), get_recipe("w8a8").with_options(adaround=True),
                 {"input": photos[0][:4]})


def _zoo_model() -> onnx.ModelProto:
    """Grouped / strided / dilated / 1-D convolutions, a transposed Gemm and a 3-D MatMul."""
    rng = np.random.default_rng(0)
    inits = {"wg": rng.normal(size=(6, 2, 3, 3)), "wd": rng.normal(size=(4, 1, 3, 3)),
             "w1": rng.normal(size=(5, 4, 3)), "wgem": rng.normal(size=(7, 12)),
             "wm": rng.normal(size=(18, 3)), "bg": rng.normal(size=6)}
    nodes = [
        h.make_node("Conv", ["x", "wg", "bg"], ["a"], group=2, strides=[2, 1], pads=[1, 0, 2, 1],
                    dilations=[1, 2], name="grouped"),
        h.make_node("Conv", ["x", "wd"], ["b"], group=4, strides=[2, 2], auto_pad="SAME_UPPER",
                    name="depthwise"),
        h.make_node("Reshape", ["x", "shape1d"], ["x1"]),
        h.make_node("Conv", ["x1", "w1"], ["c"], pads=[1, 1], strides=[2], name="conv1d"),
        h.make_node("Reshape", ["x", "shape2d"], ["x2"]),
        h.make_node("Gemm", ["x2", "wgem"], ["d"], transB=1, name="gemm"),
        h.make_node("MatMul", ["c", "wm"], ["e"], name="matmul"),
    ]
    inits["shape1d"] = np.array([2, 4, 36])
    inits["shape2d"] = np.array([-1, 12])
    g = h.make_graph(nodes, "zoo", [h.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 6, 6])],
                     [h.make_tensor_value_info(o, TensorProto.FLOAT, None)
                      for o in ("a", "b", "c", "d", "e", "x1", "x2")],
                     [nh.from_array(v.astype(np.int64 if k.startswith("shape") else np.float32), k)
                      for k, v in inits.items()])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 21)])
    m.ir_version = 10
    return m


def test_sampled_rows_reproduce_onnxruntime_outputs():
    model = _zoo_model()
    x = np.random.default_rng(1).normal(size=(2, 4, 6, 6)).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"x": x}), strict=True))
    got["x"] = x
    outs = {"grouped": "a", "depthwise": "b", "conv1d": "c", "gemm": "d", "matmul": "e"}
    bias = {"grouped": nh.to_array(model.graph.initializer[5])}
    layers = weighted_layers(model)
    assert [la.node for la in layers] == list(outs)
    rng = np.random.default_rng(2)
    for la in layers:
        xin, y = got[la.input], got[outs[la.node]]
        pick = pick_rows(la, xin.shape, 40, rng)
        w = next(nh.to_array(t) for t in model.graph.initializer if t.name == la.weight)
        rows = layer_output(gather_rows(la, xin, pick), la.to_gok(w)) + bias.get(la.node, 0)
        if la.layout == "conv":
            y4 = y[:, :, None, :] if y.ndim == 3 else y
            want = y4[pick.n, :, pick.pos[0], pick.pos[1]]
        else:
            want = y.reshape(-1, y.shape[-1])[pick.pos[0]]
        np.testing.assert_allclose(rows, want, rtol=1e-5, atol=1e-5, err_msg=la.node)
