"""Models as third-party exporters write them: every recipe quantizes, saves and runs.

Each case builds a small model with one real-world feature (IR 3 with initializers as inputs,
opset 9, a ``-1`` batch dim, a state input with the batch on axis 1, weights in Constant
nodes, an If with convolutions in both branches, a Loop), quantizes it with each recipe,
saves it, and checks the saved file against independent oracles: the full ONNX checker,
onnxruntime, and fidelity (SQNR vs the float model in onnxruntime).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import real_world_models as rw

from edgequant.ptq.quantizer import quantize
from edgequant.recipes.plan import SUBGRAPH_REASON

RECIPES = ("w8a8", "w8_dynamic", "fp16", "w4a16_g128")

#: Minimum SQNR (dB) of the saved model's outputs vs float, per recipe. Measured on these
#: models: w8a8 36–45 dB, w8_dynamic 42–51, fp16 71–76, w4a16_g128 17–25 (int4 weights, one
#: group per row since K ≤ 128). Each floor sits ~6 dB under the worst case seen.
MIN_SQNR_DB = {"w8a8": 30.0, "w8_dynamic": 36.0, "fp16": 65.0, "w4a16_g128": 12.0}

MODELS = {
    "ir3_inits_as_inputs": lambda: rw.conv_net(opset=8, ir_version=3, inits_as_inputs=True),
    "opset7_ir3": lambda: rw.conv_net(opset=7, ir_version=3, inits_as_inputs=True),
    "opset9_bn": rw.conv_net_bn_opset9,
    "paddle_minus1_batch": lambda: rw.conv_net(batch_dim=-1),
    "constant_node_weights": lambda: rw.conv_net(constant_nodes=True),
    "if_convs_in_branches": rw.if_model,
    "loop": rw.loop_model,
    "scan": rw.scan_model,
    "state_batch_axis_1": rw.state_model,
}


def data_for(name: str) -> dict[str, np.ndarray]:
    return rw.state_data() if name.startswith("state") else {"input": rw.images()}


def run_ort(model_or_path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    src = model_or_path if isinstance(model_or_path, str) else model_or_path.SerializeToString()
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    noise = float(np.sum((ref.astype(np.float64) - got) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(ref.astype(np.float64) ** 2))
                                                          / noise)


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_quantize_save_check_run(tmp_path, name, recipe):
    model = MODELS[name]()
    data = data_for(name)
    qm = quantize(model, recipe, data, check_speed=False)
    out = qm.save(tmp_path / "q.onnx")
    saved = onnx.load(str(out))
    onnx.checker.check_model(saved, full_check=True)
    ref = run_ort(model, data)
    got = run_ort(str(out), data)
    for r, g in zip(ref, got, strict=True):
        assert g.shape == r.shape
        assert sqnr_db(r, g) >= MIN_SQNR_DB[recipe], (name, recipe, sqnr_db(r, g))
    inits = {t.name for t in saved.graph.initializer}
    assert not [i.name for i in saved.graph.input if i.name in inits]
    if recipe != "fp16":
        assert qm.report["plan"]["quantized_nodes"] > 0


def float_report(qm) -> dict[str, str]:
    return {f["node"]: f["reason"] for f in qm.report["plan"]["float_nodes"]}


@pytest.mark.parametrize("recipe", RECIPES)
def test_if_branches_kept_float_and_reported(tmp_path, recipe):
    qm = quantize(rw.if_model(), recipe, {"input": rw.images()}, check_speed=False)
    floats = float_report(qm)
    assert floats["if/then_branch/then_conv"] == SUBGRAPH_REASON
    assert floats["if/else_branch/else_conv"] == SUBGRAPH_REASON
    if_node = next(n for n in qm.model.graph.node if n.op_type == "If")
    for a in if_node.attribute:  # the branches are the float originals, weights included
        assert [n.op_type for n in a.g.node] == ["Conv", "Relu"]
        (w,) = a.g.initializer
        assert w.data_type == onnx.TensorProto.FLOAT
        assert np.array_equal(onnx.numpy_helper.to_array(w),
                              onnx.numpy_helper.to_array(
                                  rw._branch(a.g.name, 11 if a.name == "then_branch" else 12)
                                  .initializer[0]))
    assert any("subgraph(s) are kept float" in n for n in qm.report["notes"])
    if recipe != "fp16":  # the main-graph convs around the If are still quantized
        assert qm.report["plan"]["quantized_nodes"] > 0


@pytest.mark.parametrize("name", sorted(MODELS))
def test_integer_only_qop_output_runs(tmp_path, name):
    """Lowering sees the tensors subgraphs read (routed through an Identity) and keeps them."""
    model, data = MODELS[name](), data_for(name)
    qm = quantize(model, "w8a8", data, check_speed=False)
    out = qm.save(tmp_path / "q.onnx", format="qop")
    ref, got = run_ort(model, data), run_ort(str(out), data)
    for r, g in zip(ref, got, strict=True):
        assert sqnr_db(r, g) >= MIN_SQNR_DB["w8a8"], (name, sqnr_db(r, g))


def test_loop_body_kept_float_and_reported():
    qm = quantize(rw.loop_model(), "w8a8", {"input": rw.images()}, check_speed=False)
    assert float_report(qm)["loop/body/loop_matmul"] == SUBGRAPH_REASON


def test_scan_body_kept_float_and_reported():
    qm = quantize(rw.scan_model(), "w8_dynamic", check_speed=False)
    assert float_report(qm)["scan/body/scan_matmul"] == SUBGRAPH_REASON


def test_opset_older_than_7_is_refused_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from edgequant.cli import app

    onnx.save(rw.conv_net(opset=6, ir_version=3, inits_as_inputs=True), tmp_path / "m.onnx")
    out = tmp_path / "q.onnx"
    res = CliRunner().invoke(app, ["quantize", str(tmp_path / "m.onnx"), "-o", str(out),
                                   "--recipe", "w8_dynamic", "--no-speed-check"])
    assert res.exit_code == 2
    (line,) = [ln for ln in res.output.splitlines() if ln.strip()]
    assert "default opset 6 is too old: opset 7 or newer is allowed" in line
    assert not out.exists()


def test_ir3_and_opset_upgrade_are_reported():
    qm = quantize(rw.conv_net(opset=8, ir_version=3, inits_as_inputs=True), "w8_dynamic",
                  check_speed=False)
    notes = " ".join(qm.report["notes"])
    assert "6 initializer(s) listed as graph inputs (IR 3 style)" in notes
    assert "upgraded from opset 8 to 21" in notes
    assert qm.model.ir_version >= 10


def test_paddle_minus1_batch_is_symbolic():
    qm = quantize(rw.conv_net(batch_dim=-1), "w8a8", {"input": rw.images(5)}, check_speed=False)
    dim = qm.model.graph.input[0].type.tensor_type.shape.dim[0]
    assert not dim.HasField("dim_value") and dim.dim_param
    assert "-1/0 are taken as dynamic" in " ".join(qm.report["notes"])


def test_constant_node_weights_are_quantized():
    qm = quantize(rw.conv_net(constant_nodes=True), "w8a8", {"input": rw.images()},
                  check_speed=False)
    weights = {t.tensor for t in qm.plan.quantized("weight")}
    assert {"w1", "w2", "fc_w"} <= {w.split("_folded")[0] for w in weights}
    assert not [n for n in qm.model.graph.node if n.op_type == "Constant"]


def test_state_input_calibrated_on_axis_1_explicit_and_auto():
    data = rw.state_data()
    auto = quantize(rw.state_model(), "w8a8", data, check_speed=False)
    explicit = quantize(rw.state_model(), "w8a8", data, check_speed=False,
                        batch_axes={"h0": 1, "x": 0})
    assert auto.qparams["hw"] == explicit.qparams["hw"]
    # oracle: the range of MatMul(h0, Wh) over all samples, computed by numpy
    wh = next(onnx.numpy_helper.to_array(t) for t in rw.state_model().graph.initializer
              if t.name == "wh")
    hw = data["h0"] @ wh  # (layers, n, hidden)
    qp = auto.qparams["hw"]
    lo, hi = min(hw.min(), 0.0), max(hw.max(), 0.0)
    assert float(qp.scale) == pytest.approx((hi - lo) / 255, rel=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_cli_loads_each_model_file(tmp_path, name):
    """Through the CLI from files on disk (load_model's checks): exit 0, a valid model."""
    from typer.testing import CliRunner

    from edgequant.cli import app

    onnx.save(MODELS[name](), tmp_path / "m.onnx")
    np.savez(tmp_path / "cal.npz", **data_for(name))
    out = tmp_path / "q.onnx"
    res = CliRunner().invoke(app, ["quantize", str(tmp_path / "m.onnx"), "-o", str(out),
                                   "--recipe", "w8a8", "--calibration", str(tmp_path / "cal.npz"),
                                   "--no-speed-check"])
    assert res.exit_code == 0, res.output
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    if name in ("if_convs_in_branches", "loop", "scan"):
        assert SUBGRAPH_REASON in " ".join(res.output.split())


def test_ir_version_newer_than_onnxruntime_reads_is_lowered(tmp_path):
    """onnx 1.23 writes IR 14 by default; onnxruntime 1.31 refuses it. The model needs only
    IR 10 (opset 21), so edgequant lowers it and the output loads; same numbers as IR 10."""
    new = rw.conv_net(opset=21, ir_version=14)
    with pytest.raises(Exception, match="IR version"):
        run_ort(new, {"input": rw.images()})  # the oracle: onnxruntime refuses the input
    data = {"input": rw.images()}
    qm = quantize(new, "w8a8", data, check_speed=False)
    assert qm.model.ir_version == 10
    assert any("IR version 14 lowered to 10" in n for n in qm.report["notes"])
    same = quantize(rw.conv_net(opset=21, ir_version=10), "w8a8", data, check_speed=False)
    out = qm.save(tmp_path / "q.onnx")
    np.testing.assert_array_equal(run_ort(str(out), data)[0], run_ort(same.model, data)[0])


def test_ir_version_kept_for_types_it_cannot_tell():
    from edgequant.graph.passes.normalize import lower_ir_version

    m = rw.conv_net(opset=21, ir_version=14)
    m.graph.value_info.append(onnx.helper.make_tensor_value_info(
        "extra", onnx.TensorProto.FLOAT8E8M0, [1]))  # newer than TYPE_MIN_IR knows
    assert lower_ir_version(m) == [] and m.ir_version == 14
    m4 = rw.conv_net(opset=21, ir_version=14)
    m4.graph.value_info.append(onnx.helper.make_tensor_value_info(
        "extra", onnx.TensorProto.FLOAT4E2M1, [1]))
    assert lower_ir_version(m4) and m4.ir_version == 11  # FLOAT4E2M1 needs IR 11

