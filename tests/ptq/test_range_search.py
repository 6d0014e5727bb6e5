"""Range search: each activation's observer chosen by its consumers' output error; with a few
huge outliers in the data a clipping observer wins and the quantized model (onnxruntime) is
measurably closer to the float one."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh
from typer.testing import CliRunner

from edgequant.cli import app
from edgequant.ptq.quantizer import quantize
from edgequant.ptq.recovery.range_search import CANDIDATES
from edgequant.recipes import get_recipe
from edgequant.recipes.options import OPTIONS


def _mlp() -> onnx.ModelProto:
    """x (N, 16) → MatMul (16, 32) → Relu → Gemm (32 → 8): two weighted consumers."""
    rng = np.random.default_rng(0)
    inits = [nh.from_array(rng.normal(0, 0.3, (16, 32)).astype(np.float32), "w1"),
             nh.from_array(rng.normal(0, 0.3, (8, 32)).astype(np.float32), "w2"),
             nh.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "b2")]
    nodes = [h.make_node("MatMul", ["x", "w1"], ["m"], name="mm"),
             h.make_node("Relu", ["m"], ["r"], name="relu"),
             h.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1, name="gemm")]
    g = h.make_graph(nodes, "mlp", [h.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                     [h.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 21)])
    m.ir_version = 10
    return m


def _data(n: int, seed: int, outliers: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, 16)).astype(np.float32)  # (n, 16)
    x.reshape(-1)[:outliers] = 40.0  # a few huge (40 σ) values, as stray readings give
    return x


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_outliers_make_a_clipping_observer_win_and_it_lowers_the_error():
    # 3 outliers in 4 M values: clipping them costs less squared error (3 · 36²) than the
    # coarser min/max step costs all the other values (4 M · (44/255)² / 12)
    model, cal = _mlp(), _data(2**18, 0, outliers=3)
    plain = quantize(model, "w8a8", {"x": cal}, batch_size=2**15)
    searched = quantize(model, get_recipe("w8a8").with_options(range_search=True), {"x": cal},
                        batch_size=2**15)
    chosen = searched.report["range_search"]["x"]
    assert chosen["observer"] != "minmax"
    assert chosen["measured_on"] == "consumers"
    errors = chosen["errors"]
    assert set(errors) == {c[0] for c in CANDIDATES}
    assert errors[chosen["observer"]] == min(errors.values()) < errors["minmax"]
    # independent check: onnxruntime runs of both models on fresh data vs the float model
    test = _data(256, 1, outliers=0)
    ref = _run(model, test)
    err_plain = np.mean((_run(plain.model, test) - ref) ** 2)
    err_search = np.mean((_run(searched.model, test) - ref) ** 2)
    assert err_search < 0.5 * err_plain, (err_search, err_plain)


def test_without_outliers_every_tensor_gets_a_measured_choice():
    model, cal = _mlp(), _data(256, 0, outliers=0)
    qm = quantize(model, get_recipe("w8a8").with_options(range_search=True), {"x": cal})
    found = qm.report["range_search"]
    assert set(found) == {"x", "r", "y"}  # input, Relu output (read by the Gemm), output
    assert found["y"]["measured_on"] == "tensor"  # no weighted consumer: its own error
    for entry in found.values():
        assert entry["errors"][entry["observer"]] == min(entry["errors"].values())


def test_bad_range_search_value_is_refused():
    with pytest.raises(Exception, match="range_search"):
        get_recipe("w8a8").with_options(range_search=1)
    assert OPTIONS["range_search"].default is False


def test_cli_switches_reach_the_report(tmp_path):
    pytest.importorskip("torch")
    src, data, out, rep = (tmp_path / n for n in ("m.onnx", "cal.npz", "q.onnx", "r.json"))
    onnx.save(_mlp(), src)
    np.savez(data, x=_data(64, 0, outliers=2))
    res = CliRunner().invoke(app, ["quantize", str(src), "-o", str(out), "--calibration",
                                   str(data), "--adaround", "--adaround-iters", "30",
                                   "--range-search", "--no-speed-check", "--report", str(rep)])
    assert res.exit_code == 0, res.output
    report = json.loads(rep.read_text())
    assert [la["node"] for la in report["adaround"]["layers"]] == ["mm", "gemm"]
    assert all(la["iterations"] <= 30 for la in report["adaround"]["layers"])
    assert set(report["range_search"]) == {"x", "r", "y"}
    bad = CliRunner().invoke(app, ["quantize", str(src), "-o", str(out), "--calibration",
                                   str(data), "--adaround", "--adaround-iters", "0"])
    assert bad.exit_code != 0 and "adaround_iters" in bad.output
