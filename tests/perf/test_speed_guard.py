"""The never-slower-than-float guard: region grouping and attribution on synthetic profiles
(fake timings, deterministic), and the whole loop on a tiny model with injected timings."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import edgequant as eq
from edgequant.ptq import speed_guard
from edgequant.ptq.speed_regions import (
    Region,
    RegionTiming,
    attribute,
    compare_regions,
    regions,
    regions_to_drop,
)


def cnn():
    """input → Conv → Relu → MaxPool → Reshape → Gemm → logits (the demo CNN's shape)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, .3, (4, 1, 3, 3)).astype(np.float32), "cw"),
             numpy_helper.from_array(rng.normal(0, .1, 4).astype(np.float32), "cb"),
             numpy_helper.from_array(rng.normal(0, .1, (10, 64)).astype(np.float32), "fw"),
             numpy_helper.from_array(rng.normal(0, .1, 10).astype(np.float32), "fb"),
             numpy_helper.from_array(np.array([-1, 64], np.int64), "shape")]
    nodes = [helper.make_node("Conv", ["input", "cw", "cb"], ["conv"], name="conv", pads=[1] * 4),
             helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
             helper.make_node("MaxPool", ["relu"], ["pool"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Reshape", ["pool", "shape"], ["flat"], name="flat"),
             helper.make_node("Gemm", ["flat", "fw", "fb"], ["logits"], name="fc", transB=1)]
    g = helper.make_graph(nodes, "cnn",
                          [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT,
                                                         ["N", 1, 8, 8])],
                          [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT,
                                                         ["N", 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


ALL = {"conv", "relu", "pool", "flat", "fc"}


def test_pass_through_ops_join_their_producers_region():
    regs = regions(cnn(), ALL)
    assert regs == [Region("conv", ("conv", "relu", "pool", "flat")), Region("fc", ("fc",))]
    # a float producer breaks the chain: the pool starts its own region
    assert [r.nodes for r in regions(cnn(), ALL - {"relu"})] == \
        [("conv",), ("pool", "flat"), ("fc",)]


def test_onnxruntime_names_are_attributed_to_regions():
    """Fused / renamed nodes, Q/DQ at the boundary, layout nodes nobody owns."""
    qm = eq.quantize(cnn(), "w8a8", {"input": np.random.default_rng(1).normal(
        size=(8, 1, 8, 8)).astype(np.float32)})
    owner = {n: r.name for r in regions(cnn(), ALL) for n in r.nodes}
    profile = {"input_QuantizeLinear": 1.0,  # entry Q: consumed by the conv
               "conv_token_1": 10.0,  # QLinearConv after the NHWC transformer
               "pool_token_3": 2.0, "flat": 0.5,
               "fc": 3.0, "logits_DequantizeLinear": 0.25,  # exit DQ: produced by the fc
               "Transpose": 7.0, "ReorderOutput": 9.0}
    got = attribute(profile, qm.model, owner)
    assert got == {"conv": 13.5, "fc": 3.25, None: 16.0}
    fprofile = {"relu_nchwc": 4.0, "pool": 1.0, "fc": 2.0}  # NCHWc conv named by its output
    assert attribute(fprofile, cnn(), owner) == {"conv": 5.0, "fc": 2.0}


def test_only_clearly_slower_regions_are_dropped_worst_first():
    a, b, c = Region("a", ("a",)), Region("b", ("b",)), Region("c", ("c",))
    timings = [RegionTiming(a, 1.05, 1.0),  # within the 10 % margin: kept quantized
               RegionTiming(b, 2.0, 1.0), RegionTiming(c, 9.0, 1.0)]
    assert regions_to_drop(timings, whole_model_slower=True) == [c, b]
    assert regions_to_drop(timings[:1], whole_model_slower=False) == []
    # nothing clearly slower but the whole model is: the worst positive excess goes
    assert regions_to_drop(timings[:1], whole_model_slower=True) == [a]
    assert regions_to_drop([RegionTiming(a, 0.5, 1.0)], whole_model_slower=True) == []


def test_compare_regions_sums_both_sides():
    regs = regions(cnn(), ALL)
    t = compare_regions(regs, {"conv": 3.0, "fc": 1.0}, cnn(), {"conv": 1.0, "fc": 1.0}, cnn())
    assert [(x.region.name, x.quant_ms, x.float_ms, x.clearly_slower) for x in t] == \
        [("conv", 3.0, 1.0, True), ("fc", 1.0, 1.0, False)]


@pytest.fixture
def fake_timings(monkeypatch):
    """Injected timings: the quantized conv region is 3x slower than float, the fc faster;
    whole-model times follow from the regions still quantized."""
    def whole(float_model, quant_model, sample=None, repeats=0):
        ops = {n.op_type for n in quant_model.graph.node}
        conv_q = any(n.op_type == "Conv" and n.input[0].endswith("_dequantized")
                     for n in quant_model.graph.node)
        return 10.0, (13.0 if conv_q else 8.0) if "QuantizeLinear" in ops else 10.0

    def prof(model, feeds, **_):
        names = {n.name for n in model.graph.node}
        if any(n.op_type == "QuantizeLinear" for n in model.graph.node):
            return {"conv": 6.0, "input_QuantizeLinear": 0.5, "fc": 1.0}
        assert "conv" in names
        return {"conv": 2.0, "pool": 0.5, "fc": 2.0}

    monkeypatch.setattr(speed_guard, "whole_model_speed", whole)
    monkeypatch.setattr(speed_guard, "profile_nodes", prof)


def test_guard_keeps_the_slower_region_float_and_the_result_verifies(fake_timings):
    x = np.random.default_rng(2).normal(size=(16, 1, 8, 8)).astype(np.float32)
    qm = eq.quantize(cnn(), "w8a8", {"input": x}, check_speed=True)
    speed = qm.report["speed"]
    assert [k["region"] for k in speed["kept_float"]] == ["conv"]
    assert speed["kept_float"][0]["nodes"] == ["conv", "relu", "pool", "flat"]
    assert speed["speedup"] == pytest.approx(10 / 8)
    assert len(speed["rounds"]) == 2 and speed["rounds"][0]["quantized_ms"] == 13.0
    modes = {d.node: d.mode for d in qm.plan.nodes if d.action == "quantize"}
    assert modes["conv"] == "weight_only" and modes["fc"] == "static"  # int8 weights kept
    ops = [n.op_type for n in qm.model.graph.node]
    assert ops.count("QuantizeLinear") == 2  # fc input and output only
    assert eq.verify(qm.model, {"input": x[:4]}).max_lsb <= 1


def test_guard_is_off_by_default_in_the_api_and_an_option(fake_timings):
    x = np.random.default_rng(3).normal(size=(8, 1, 8, 8)).astype(np.float32)
    assert "speed" not in eq.quantize(cnn(), "w8a8", {"input": x}).report
    rec = eq.get_recipe("w8a8").with_options(speed_guard=True)
    assert eq.quantize(cnn(), rec, {"input": x}).report["speed"]["kept_float"]


def test_real_profile_names_cover_the_model():
    """onnxruntime's profiler on a real session: every quantized kernel is attributed."""
    x = np.random.default_rng(4).normal(size=(8, 1, 8, 8)).astype(np.float32)
    qm = eq.quantize(cnn(), "w8a8", {"input": x})
    prof = speed_guard.profile_nodes(qm.model, {"input": x[:1]}, runs=3, warmup=1)
    assert prof and all(v >= 0 for v in prof.values())
    owner = {n: r.name for r in regions(cnn(), ALL) for n in r.nodes}
    got = attribute(prof, qm.model, owner)
    assert got.get("conv", 0) > 0 and got.get("fc", 0) > 0


def test_cli_runs_the_guard_by_default_and_not_with_the_flag(fake_timings, tmp_path):
    import json

    from typer.testing import CliRunner

    from edgequant.cli import app

    onnx.save(cnn(), tmp_path / "m.onnx")
    np.savez(tmp_path / "cal.npz", input=np.random.default_rng(7).normal(
        size=(8, 1, 8, 8)).astype(np.float32))
    for flag, expect in (([], ["conv"]), (["--no-speed-guard"], None)):
        res = CliRunner().invoke(app, ["quantize", str(tmp_path / "m.onnx"), "-o",
                                       str(tmp_path / "q.onnx"), "--calibration",
                                       str(tmp_path / "cal.npz"), "--report",
                                       str(tmp_path / "r.json"), *flag])
        assert res.exit_code == 0, res.output
        report = json.loads((tmp_path / "r.json").read_text())
        got = [k["region"] for k in report["speed"]["kept_float"]] if "speed" in report else None
        assert got == expect
