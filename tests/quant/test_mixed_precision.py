"""Mixed precision through one pipeline: per-rule modes and specs → one plan → one model.

``examples/mixed_recipe.json`` on ``mixed_cnn``: conv1 / conv5 / fc2 int8 (uint8
activations), conv2 with int16 activations, conv3 float16 weights, conv4 float, fc1 int4
weight-only in groups of 128. Oracles: onnxruntime (fidelity vs float, integer tensors),
numpy (the re-quantization at a precision seam), the reference interpreter (``verify``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from float_models import cnn_bn, images, mixed_cnn, rgb_images, two_branch
from onnx import TensorProto, numpy_helper

import edgequant as eq
from edgequant.analysis.metrics import sqnr_db
from edgequant.errors import RecipeError
from edgequant.graph.passes.insert_qdq import insert_qdq
from edgequant.qparams import QParams
from edgequant.recipes import Recipe, Rule, get_recipe, resolve
from edgequant.recipes.builtin import activation_spec, weight_spec
from edgequant.runtime.verify import verify
from edgequant.spec import PerGroup, PerTensor, QType

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mixed_recipe.json"

#: Output SQNR floor (dB) of the mixed model vs float on smooth random images. The int4
#: fc1 (groups of 128) dominates the error: all-int4 weight-only measures ~14 dB on this
#: model, all-w8a8 ~35 dB, the mix ~23 dB.
MIN_MIXED_SQNR_DB = 18.0
#: Two-branch model (int8 + int16 convs, int8 Add) and cnn_bn with a dynamic head: 8-bit
#: grids give ~34-36 dB on these.
MIN_SEAM_SQNR_DB = 28.0
#: Without ``isolate_integer``: a float layer's result rounds differently in the last ulp in
#: the two engines, so its quantized output (and what follows) may differ by 1 LSB.
FLOAT_LAYER_LSB = 1
#: Ops whose integer output onnxruntime and the interpreter must agree on exactly.
INTEGER_KERNELS = ("QLinearConv", "QGemm", "QLinearAdd", "QLinearMatMul", "MaxPool", "Reshape")


def ort_run(model, feeds: dict, outputs: list[str] | None = None) -> list[np.ndarray]:
    m = model if isinstance(model, onnx.ModelProto) else onnx.load(model)
    if outputs:
        m = onnx.ModelProto()
        m.CopyFrom(model)
        m.graph.output.extend(onnx.ValueInfoProto(name=n) for n in outputs)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(outputs, feeds)


def producer(model: onnx.ModelProto, tensor: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if tensor in n.output)


def node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.name == name)


def init(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(t for t in model.graph.initializer if t.name == name)


@pytest.fixture(scope="module")
def recipe() -> Recipe:
    return Recipe.from_json(EXAMPLE.read_text())


@pytest.fixture(scope="module")
def quantized(recipe):
    return eq.quantize(mixed_cnn(), recipe, calibration={"input": rgb_images(256, seed=3)})


# -- recipe data -----------------------------------------------------------------------
def test_example_recipe_round_trips_and_names_each_override(recipe):
    assert recipe.name not in ("w8a8", "w8a16", "w4a16_g128", "fp16")  # a new name
    assert Recipe.from_json(recipe.to_json()) == recipe
    by_name = {r.name: r for r in recipe.rules}
    assert by_name["conv3 float16 weights"].mode == "fp16"
    assert by_name["conv4 float"].action == "float"
    fc1 = by_name["fc1 int4 weight-only"]
    assert fc1.mode == "weight_only" and fc1.weights.qtype == QType(4, True, True)
    assert fc1.weights.granularity == PerGroup(1, 128)
    assert by_name["conv2 int16 activations"].activations.qtype == QType(16, True)


def test_rule_fields_are_checked():
    d = json.loads(EXAMPLE.read_text())
    d["rules"][0]["precision"] = "int16"
    with pytest.raises(RecipeError, match=r"rules\[0\] has unknown key\(s\) \['precision'\]"):
        Recipe.from_json(json.dumps(d))
    with pytest.raises(RecipeError, match="mode 'int4' is not allowed"):
        Rule(nodes=("fc1",), mode="int4")
    with pytest.raises(RecipeError, match="mode weight_only needs a weights spec"):
        get_recipe("fp16").with_rules(Rule(nodes=("fc1",), mode="weight_only"))
    with pytest.raises(RecipeError, match="mode static needs an activations spec"):
        get_recipe("fp32").with_rules(Rule(nodes=("c*",), mode="static", weights=weight_spec(8)))


# -- the plan --------------------------------------------------------------------------
def test_plan_records_mode_rule_and_spec_per_node_and_tensor(recipe):
    plan = resolve(recipe, mixed_cnn())
    nodes = {d.node: d for d in plan.nodes}
    assert (nodes["conv1"].action, nodes["conv1"].mode, nodes["conv1"].rule) == \
        ("quantize", "static", "recipe")
    assert (nodes["conv2"].mode, nodes["conv2"].rule) == ("static", "conv2 int16 activations")
    assert nodes["relu2"].rule == "conv2 int16 activations"  # the fused Relu follows its conv
    assert (nodes["conv3"].action, nodes["conv3"].mode) == ("quantize", "fp16")
    assert nodes["conv4"].action == "float" and "conv4 float" in nodes["conv4"].reason
    assert nodes["relu4"].action == "float"
    assert (nodes["fc1"].action, nodes["fc1"].mode) == ("quantize", "weight_only")
    assert (nodes["fc2"].mode, nodes["conv5"].mode) == ("static", "static")
    assert plan.unmatched_rules == ()
    t = plan.tensors
    assert t["conv1.w"].spec.qtype.name == "int8n" and t["conv1.w"].mode == "static"
    assert (t["conv3.w"].action, t["conv3.b"].action) == ("fp16", "fp16")
    assert "conv4.w" not in t
    assert t["fc1.w"].mode == "weight_only" and t["fc1.w"].spec.granularity == PerGroup(0, 128)
    assert t["r1"].spec.qtype.name == "uint8" and t["r2"].spec.qtype.name == "int16"
    assert t["p2"].action == "share" and t["p2"].spec.qtype.name == "int16"
    seam = t["r1@conv2"]  # int8 relu1 output re-quantized to int16 for conv2
    assert (seam.tensor, seam.consumers, seam.from_dequantized) == ("r1", ("conv2",), True)
    assert seam.spec.qtype.name == "int16" and seam.spec.symmetric
    assert t["conv2.b"].input_of == "r1@conv2"  # bias scale = int16 input scale · weight
    assert plan.modes() == {"static", "fp16", "weight_only"}


# -- the written QDQ model -------------------------------------------------------------
def test_qdq_model_holds_each_precision_where_the_rules_say(quantized):
    m = quantized.model
    onnx.checker.check_model(m, full_check=True)

    def weight_type(conv: str) -> int:
        w = node(m, conv).input[1]
        src = producer(m, w) if w not in {i.name for i in m.graph.initializer} else None
        name = w if src is None else src.input[0]
        return init(m, name).data_type

    def input_dq(conv: str) -> onnx.NodeProto:
        return producer(m, node(m, conv).input[0])

    for conv in ("conv1", "conv5", "fc2"):
        assert weight_type(conv) == TensorProto.INT8
        assert init(m, input_dq(conv).input[2]).data_type == TensorProto.UINT8
    # conv2: int16 activations with zero point 0 on both sides, int8 weights, int32 bias
    dq_in = input_dq("conv2")
    assert init(m, dq_in.input[2]).data_type == TensorProto.INT16
    assert not numpy_helper.to_array(init(m, dq_in.input[2])).any()
    q_out = next(n for n in m.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "r2")
    assert init(m, q_out.input[2]).data_type == TensorProto.INT16
    assert weight_type("conv2") == TensorProto.INT8
    bias = producer(m, node(m, "conv2").input[2])
    assert init(m, bias.input[0]).data_type == TensorProto.INT32
    # the seam: the int16 Q reads relu1's dequantized uint8 tensor
    seam_q = producer(m, dq_in.input[0])
    assert seam_q.op_type == "QuantizeLinear" and producer(m, seam_q.input[0]).input[0] == \
        "r1_quantized"
    # conv3: float16 storage cast to float32; conv4: float32 weights, float input
    assert weight_type("conv3") == TensorProto.FLOAT16
    assert node(m, "conv4").input[1] == "conv4.w"
    assert init(m, "conv4.w").data_type == TensorProto.FLOAT
    assert producer(m, node(m, "conv4").input[0]).op_type == "Relu"
    # fc1: int4 weights, one block of 128 along K per column, float compute on a dequantized
    # input; stored as (blocks, 128, N) with Cast/Mul decompression because onnxruntime does
    # not fuse DequantizeLinear(int4) → MatMul into MatMulNBits next to Q/DQ
    w4 = init(m, "fc1.w_quantized")
    assert w4.data_type == TensorProto.INT4 and list(w4.dims) == [1, 128, 64]
    assert list(init(m, "fc1.w_scale").dims) == [1, 1, 64]
    assert producer(m, node(m, "fc1").input[0]).op_type == "DequantizeLinear"
    r = quantized.report
    assert any("fc1.w" in n and "Cast/Mul" in n for n in r["notes"])
    assert r["plan"]["nodes_by_mode"] == {"fp16": 1, "static": 11, "weight_only": 1}
    assert "speedup_vs_float" not in r  # the library API does not time by default


def test_seam_requantization_matches_numpy(quantized):
    """The int16 tensor conv2 reads is Q16(DQ8(relu1's uint8 tensor)), bit for bit."""
    m = quantized.model
    x = rgb_images(8)
    q8, q16 = ort_run(m, {"input": x}, ["r1_quantized", "r1_for_conv2_quantized"])
    s8 = numpy_helper.to_array(init(m, "r1_scale"))
    z8 = numpy_helper.to_array(init(m, "r1_zero_point")).astype(np.int32)
    s16 = numpy_helper.to_array(init(m, "r1_for_conv2_scale"))
    real = (q8.astype(np.int32) - z8).astype(np.float32) * s8  # (8, 16, 16, 16) float32
    want = np.clip(np.rint(real / s16), -32768, 32767).astype(np.int16)
    assert q16.dtype == np.int16
    np.testing.assert_array_equal(q16, want)


def test_mixed_model_runs_in_onnxruntime_close_to_float(quantized):
    float_model = mixed_cnn()
    x = rgb_images(64)
    ref = ort_run(float_model, {"input": x})[0]
    got = ort_run(quantized.model, {"input": x})[0]
    mixed = sqnr_db(ref, got)
    assert mixed >= MIN_MIXED_SQNR_DB
    all_int4 = eq.quantize(float_model, "w4a16_g128")
    assert mixed > sqnr_db(ref, ort_run(all_int4.model, {"input": x})[0])


# -- lowering and verify ---------------------------------------------------------------
def test_qop_lowers_int8_parts_and_lists_the_rest(quantized, tmp_path):
    path = quantized.save(tmp_path / "mixed_qop.onnx", format="qop")
    m = onnx.load(path)
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("QLinearConv") == 2 and ops.count("QGemm") == 1  # conv1, conv5, fc2
    floats = {f["node"]: f["reason"] for f in quantized.report["lowering"]["float_nodes"]}
    assert "int16" in floats["conv2"]
    assert "conv4" in floats and "fc1" in floats
    assert "weight storage" in floats["conv3.w_Cast"]
    ref = ort_run(quantized.model, {"input": rgb_images(16)})[0]
    np.testing.assert_allclose(ort_run(m, {"input": rgb_images(16)})[0], ref, atol=1e-6)
    report = verify(path, {"input": rgb_images(64)}, per_node=True, isolate_integer=True)
    # the float layers' outputs are where onnxruntime's integers are taken
    assert set(report.boundaries) == {"r2_quantized", "p2_quantized", "r4_quantized",
                                      "h_quantized"}
    assert report.max_lsb == 0
    integer = [d for d in report.nodes if d.kind == "integer" and d.producer in INTEGER_KERNELS]
    assert len(integer) >= 5 and all(d.max_diff == 0 for d in integer)


def test_qdq_verify_is_zero_lsb_on_integer_parts(quantized):
    """Without isolation the float layers' last-ulp rounding (conv2 in int16, conv3, conv4)
    differs between the engines and can reach the output; with it the integer parts agree."""
    feeds = {"input": rgb_images(64)}
    plain = verify(quantized.model, feeds)
    assert plain.lowered and plain.max_lsb <= FLOAT_LAYER_LSB
    # the float layers are named in the report, so a difference can be told from a fault
    assert set(plain.float_layers) == {"r2_quantized", "p2_quantized", "r4_quantized",
                                       "h_quantized"} and plain.boundaries == ()
    isolated = verify(quantized.model, feeds, isolate_integer=True)
    assert isolated.max_lsb == 0 and isolated.float_layers == ()


def test_seams_both_ways_and_from_float(tmp_path):
    """A float graph input read in uint8 and int16, and an int16 tensor read by an int8 Add."""
    rec = get_recipe("w8a8").with_rules(Rule(nodes=("convb",), activations=activation_spec(16)))
    model = two_branch()
    cal = rgb_images(64, seed=2)[:, :, :8, :8]
    qm = eq.quantize(model, rec, calibration={"input": cal})
    t = qm.plan.tensors
    assert (t["input@convb"].spec.qtype.name, t["input@convb"].from_dequantized) == \
        ("int16", False)
    assert (t["cb@add"].spec.qtype.name, t["cb@add"].from_dequantized) == ("uint8", True)
    m = qm.model
    q_in16 = producer(m, producer(m, node(m, "convb").input[0]).input[0])
    assert q_in16.input[0] == "input"  # quantized from the float input, not from uint8
    q_add = producer(m, producer(m, node(m, "add").input[1]).input[0])
    assert producer(m, q_add.input[0]).input[0] == "cb_quantized"  # from the int16 tensor
    x = rgb_images(16)[:, :, :8, :8]
    assert sqnr_db(ort_run(model, {"input": x})[0], ort_run(m, {"input": x})[0]) >= \
        MIN_SEAM_SQNR_DB
    path = qm.save(tmp_path / "two_qop.onnx", format="qop")
    assert [n.op_type for n in onnx.load(path).graph.node].count("QLinearAdd") == 1
    assert verify(path, {"input": x}).max_lsb == 0


def test_insert_qdq_executes_a_rule_chosen_subset_with_given_qparams():
    """A float recipe whose only quantized layer is conv5 (+ its Relu), with trained-style
    qparams handed in: Q/DQ appear around conv5 only, carrying exactly those qparams."""
    rec = get_recipe("fp32").with_rules(Rule(nodes=("conv5",), mode="static",
                                             weights=weight_spec(8),
                                             activations=activation_spec(8)))
    model = mixed_cnn()
    plan = resolve(rec, model)
    keys = [k for k, d in plan.tensors.items() if d.role == "activation"
            and d.action == "quantize"]
    assert sorted(keys) == ["p4", "r5"]
    given = {k: QParams(np.float32(0.05 + i / 100), np.uint8(3), QType(8, False), PerTensor())
             for i, k in enumerate(sorted(keys))}
    out, used, notes = insert_qdq(model, plan, given)
    onnx.checker.check_model(out)
    assert notes == [] and {"conv5.w", "conv5.b", "p4", "r5"} <= set(used)
    qs = [n for n in out.graph.node if n.op_type == "QuantizeLinear"]
    assert sorted(n.input[0] for n in qs) == ["p4", "r5"]
    for n in qs:
        assert float(numpy_helper.to_array(init(out, n.input[1]))) == \
            pytest.approx(float(given[n.input[0]].scale))
    x = rgb_images(4)
    ref = ort_run(mixed_cnn(), {"input": x})[0]
    assert np.isfinite(ort_run(out, {"input": x})[0]).all() and ref.shape == (4, 10)


def test_dynamic_rule_beside_static_layers():
    """w8a8 body, dynamic-range Gemm head: MatMulIntegerToFloat reads the static layers' output."""
    rec = get_recipe("w8a8").with_rules(Rule(op_types=("Gemm",), mode="dynamic"))
    model = cnn_bn()
    qm = eq.quantize(model, rec, calibration={"input": images(64, seed=4)})
    assert qm.report["plan"]["nodes_by_mode"] == {"dynamic": 1, "static": 4}
    m = qm.model
    mmi = next(n for n in m.graph.node if n.op_type == "MatMulIntegerToFloat")
    assert init(m, mmi.input[1]).data_type == TensorProto.INT8
    assert "fc.b" in {i for n in m.graph.node for i in n.input}  # float bias: no int32 scale
    x = images(32)
    assert sqnr_db(ort_run(model, {"input": x})[0], ort_run(m, {"input": x})[0]) >= \
        MIN_SEAM_SQNR_DB


# -- the CLI ---------------------------------------------------------------------------
def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgequant.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def test_cli_quantizes_with_the_example_recipe_and_verifies(tmp_path):
    onnx.save(mixed_cnn(), tmp_path / "model.onnx")
    np.savez(tmp_path / "data.npz", input=rgb_images(64, seed=3))
    res = cli("quantize", tmp_path / "model.onnx", "-o", tmp_path / "out.onnx",
              "--recipe", EXAMPLE, "--calibration", tmp_path / "data.npz",
              "--report", tmp_path / "report.json", "--no-speed-guard")
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["recipe"] == json.loads(EXAMPLE.read_text())["name"]
    assert report["plan"]["nodes_by_mode"]["weight_only"] == 1
    # the speed guard (on by default, tests/perf) would move slower regions to float compute
    assert "speed" not in report
    assert "conv4" in res.stdout
    out = onnx.load(tmp_path / "out.onnx")
    assert init(out, "fc1.w_quantized").data_type == TensorProto.INT4
    res = cli("verify", tmp_path / "out.onnx", "--data", tmp_path / "data.npz",
              "--isolate-integer", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    verified = json.loads(res.stdout)
    assert verified["max_lsb"] == 0 and "r2_quantized" in verified["boundaries"]
    assert verified["float_layers"] == [] and "note:" not in res.stderr
    # without isolation the CLI names the float layers and points to --isolate-integer
    res = cli("verify", tmp_path / "out.onnx", "--data", tmp_path / "data.npz", "--max-lsb", "1")
    assert res.returncode == 0, res.stdout + res.stderr
    note = " ".join(res.stderr.split())
    assert "4 quantized tensor(s)" in note and "r2_quantized" in note
    assert "--isolate-integer" in note
