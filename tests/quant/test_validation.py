"""Nothing is reported as written unless the checker and a runtime accept it; weak plans warn.

Broken outputs are made on purpose (a pass that emits a dangling input, an op onnxruntime
does not know, a .tflite LiteRT cannot read) and must give a clear error and leave no file.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "graph"))
import real_world_models as rw

from edgequant.errors import UnsupportedOpError
from edgequant.export.validate import InvalidOutputError, validate_onnx, zero_feeds
from edgequant.ptq import quantizer
from edgequant.ptq.quantizer import quantize
from edgequant.recipes import Rule, get_recipe

EXIT_USER_ERROR = 2


def assert_no_file(out: Path) -> None:
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.*"))  # no temp file left either


def dangling(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose first node reads a tensor nothing produces (a broken pass's output)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.node[0].input.append("ghost_tensor")  # Conv's third input: a missing bias
    return m


def test_pass_emitting_a_dangling_input_is_a_clear_error(monkeypatch):
    real = quantizer.store_fp16
    monkeypatch.setattr(quantizer, "store_fp16", lambda m, plan: (dangling(real(m, plan)[0]), []))
    with pytest.raises(InvalidOutputError, match=r"invalid model.*ghost_tensor"):
        quantize(rw.conv_net(), "fp16", check_speed=False)


def test_cli_dangling_input_exit_2_one_line_no_file(monkeypatch, tmp_path):
    from edgequant.cli import app

    onnx.save(rw.conv_net(), tmp_path / "m.onnx")
    real = quantizer.store_fp16
    monkeypatch.setattr(quantizer, "store_fp16", lambda m, plan: (dangling(real(m, plan)[0]), []))
    out = tmp_path / "o.onnx"
    res = CliRunner().invoke(app, ["quantize", str(tmp_path / "m.onnx"), "-o", str(out),
                                   "--recipe", "fp16", "--no-speed-check"])
    assert res.exit_code == EXIT_USER_ERROR
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "ghost_tensor" in lines[0] and "Traceback" not in res.output
    assert_no_file(out)


def weight_as_graph_input(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose first Conv reads its weight from a new graph input (the IR 3 bug: the
    initializer went away, the input stayed): valid for the checker, nobody feeds it."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    conv.input[1] = "w1_input"
    m.graph.input.append(helper.make_tensor_value_info("w1_input", TensorProto.FLOAT,
                                                       [16, 3, 3, 3]))
    return m


@pytest.mark.parametrize("recipe,calibration", [("fp16", None), ("w8a8", "images")])
def test_pass_leaving_an_unfed_graph_input_is_a_clear_error(monkeypatch, tmp_path, recipe,
                                                            calibration):
    data = {"input": rw.images()} if calibration else None
    qm = quantize(rw.conv_net(), recipe, data, check_speed=False)
    qm.model = weight_as_graph_input(qm.model)
    onnx.checker.check_model(qm.model, full_check=True)  # the checker alone lets it through
    out = tmp_path / "q.onnx"
    with pytest.raises(InvalidOutputError, match=r"onnxruntime refuses.*w1_input"):
        qm.save(out)
    assert_no_file(out)


def test_save_refuses_a_model_the_checker_refuses(tmp_path):
    qm = quantize(rw.conv_net(), "w8_dynamic", check_speed=False)
    qm.model = dangling(qm.model)
    out = tmp_path / "q.onnx"
    with pytest.raises(InvalidOutputError, match=r"fails the ONNX checker.*ghost_tensor"):
        qm.save(out)
    assert_no_file(out)


def test_save_refuses_a_model_onnxruntime_refuses(tmp_path):
    qm = quantize(rw.conv_net(), "w8_dynamic", check_speed=False)
    qm.model.opset_import.append(helper.make_opsetid("com.example", 1))
    logits = qm.model.graph.output[0].name
    qm.model.graph.node.append(helper.make_node("Mystery", [logits], ["mystery"],
                                                domain="com.example"))
    qm.model.graph.output.append(helper.make_tensor_value_info("mystery", TensorProto.FLOAT,
                                                               ["N", 10]))
    onnx.checker.check_model(qm.model)  # the checker alone lets it through
    out = tmp_path / "q.onnx"
    with pytest.raises(InvalidOutputError, match=r"onnxruntime refuses.*Mystery"):
        qm.save(out)
    assert_no_file(out)


def test_tflite_litert_refuses_is_a_clear_error(monkeypatch, tmp_path):
    tfl = importlib.import_module("edgequant.export.tflite.export")

    def garbage(model, path, **kw):
        Path(path).write_bytes(b"TFL3" * 64)  # not a flatbuffer LiteRT can read
        return None

    monkeypatch.setattr(tfl, "export_tflite", garbage)
    qm = quantize(rw.conv_net(), "w8a8", {"input": rw.images()}, check_speed=False)
    out = tmp_path / "q.tflite"
    with pytest.raises(InvalidOutputError, match="LiteRT refuses"):
        qm.save(out)
    assert_no_file(out)


def test_valid_tflite_is_written_after_a_litert_run(tmp_path):
    qm = quantize(rw.conv_net(batch_dim=1), "w8a8", {"input": rw.images()}, check_speed=False)
    out = qm.save(tmp_path / "q.tflite")
    assert out.is_file() and qm.report["tflite"]["path"] == str(out)
    assert_no_file(tmp_path / "q.tflite.x")  # the validation temp file is gone


def test_zero_feeds_set_symbolic_dims_to_one():
    feeds = zero_feeds(rw.state_model())
    assert feeds["x"].shape == (1, 16) and feeds["h0"].shape == (2, 1, 16)
    validate_onnx(rw.state_model())  # runs on them


def elementwise_model() -> onnx.ModelProto:
    """Relu(x) + x: nothing a weight-quantizing recipe touches."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Add", ["r", "x"], ["y"], name="add")]
    g = helper.make_graph(nodes, "ew", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                      ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10  # onnx's default (newest) IR can be newer than onnxruntime reads
    return model


def test_nothing_quantized_warns_and_strict_refuses():
    qm = quantize(elementwise_model(), "w8_dynamic", check_speed=False)
    assert any("no node quantized by recipe w8_dynamic" in w for w in qm.report["warnings"])
    with pytest.raises(UnsupportedOpError, match="no node quantized"):
        quantize(elementwise_model(), "w8_dynamic", check_speed=False, strict=True)


def test_mostly_float_compute_warns_naming_the_nodes():
    rec = get_recipe("w8a8")
    rec = replace(rec, rules=(*rec.rules, Rule(op_types=("Conv",), action="float", name="convs")))
    qm = quantize(rw.conv_net(), rec, {"input": rw.images()}, check_speed=False)
    (warning,) = [w for w in qm.report["warnings"] if "compute stays float" in w]
    # conv1 27648 + conv2 16384 of 44192 MACs per sample are float: 99.6 %
    assert warning.startswith("100% of the Conv/Gemm/MatMul compute stays float")
    assert "conv1 (Conv): kept in float by rule convs" in warning


def test_fully_quantized_plan_has_no_coverage_warning():
    qm = quantize(rw.conv_net(), "w8a8", {"input": rw.images()}, check_speed=False)
    assert not [w for w in qm.report["warnings"] if "float" in w or "quantized" in w]


def test_cli_prints_the_coverage_warning_and_strict_exits_2(tmp_path):
    from edgequant.cli import app

    onnx.save(elementwise_model(), tmp_path / "m.onnx")
    out = tmp_path / "o.onnx"
    args = ["quantize", str(tmp_path / "m.onnx"), "-o", str(out), "--recipe", "w8_dynamic",
            "--no-speed-check"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and "warning: no node quantized" in " ".join(res.output.split())
    out.unlink()
    res = CliRunner().invoke(app, [*args, "--strict"])
    assert res.exit_code == EXIT_USER_ERROR and "no node quantized" in res.output
    assert_no_file(out)


def test_cli_batch_axis(tmp_path):
    from edgequant.cli import app

    onnx.save(rw.state_model(), tmp_path / "m.onnx")
    np.savez(tmp_path / "cal.npz", **rw.state_data())
    out = tmp_path / "o.onnx"
    base = ["quantize", str(tmp_path / "m.onnx"), "-o", str(out), "--recipe", "w8a8",
            "--calibration", str(tmp_path / "cal.npz"), "--no-speed-check"]
    res = CliRunner().invoke(app, [*base, "--batch-axis", "h0=1", "--batch-axis", "x=0"])
    assert res.exit_code == 0, res.output
    assert out.is_file()
    out.unlink()
    for bad, pattern in [("h0", "use INPUT=AXIS"), ("nope=1", "unknown input(s) ['nope']"),
                         ("h0=3", "batch axis 3 of input 'h0'"),
                         ("h0=0", "different sample counts")]:
        res = CliRunner().invoke(app, [*base, "--batch-axis", bad])
        assert res.exit_code == EXIT_USER_ERROR, (bad, res.output)
        assert pattern in " ".join(res.output.split()), (bad, res.output)
        assert_no_file(out)
