"""Bad inputs: unsupported ops, dynamic dims, missing output folder, wrong mode; the output
file is written atomically (nothing partial, an existing file is left untouched on error)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import tflite_models as M
from onnx import TensorProto, helper

from edgequant.errors import UnsupportedOpError
from edgequant.export.tflite import export_tflite
from edgequant.runtime.litert import LiteRTRunner


def _model(op: str, shape=(1, 4), dims=None) -> onnx.ModelProto:
    dims = dims or list(shape)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node(op, ["x"], ["y"], name=f"my_{op.lower()}")
    g = helper.make_graph([node], "g", [x], [y])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("strict", [True, False])
def test_unsupported_op_names_the_node(strict, tmp_path):
    """No TFLite builtin fallback exists for an unknown op, so both modes refuse it."""
    with pytest.raises(UnsupportedOpError, match=r"my_floor.*Floor"):
        export_tflite(_model("Floor"), tmp_path / "m.tflite", strict=strict)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_untouched_on_error(tmp_path):
    out = tmp_path / "m.tflite"
    out.write_bytes(b"old")
    with pytest.raises(UnsupportedOpError):
        export_tflite(_model("Floor"), out)
    assert out.read_bytes() == b"old"


def test_missing_output_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_tflite(_model("Relu"), tmp_path / "nope" / "m.tflite")
    assert not (tmp_path / "nope").exists()


def test_symbolic_batch_fixed_to_one(tmp_path):
    path = M.export_onnx(M.MnistCnn(), (1, 1, 28, 28), tmp_path / "dyn.onnx", dynamic_batch=True)
    res = export_tflite(onnx.load(path), tmp_path / "dyn.tflite")
    lite = LiteRTRunner(res.path)
    assert lite.input_shapes["x"] == (1, 1, 28, 28)


def test_dynamic_non_batch_dim_is_an_error(tmp_path):
    with pytest.raises(UnsupportedOpError, match=r"input 'x'.*dim 1"):
        export_tflite(_model("Relu", dims=[1, "n"]), tmp_path / "m.tflite")


def test_int8_mode_needs_qdq_model(tmp_path):
    with pytest.raises(ValueError, match="needs a QDQ model"):
        export_tflite(_model("Relu"), tmp_path / "m.tflite", mode="int8")


def test_unknown_mode_and_io(tmp_path):
    with pytest.raises(ValueError, match="mode 'int3'"):
        export_tflite(_model("Relu"), tmp_path / "m.tflite", mode="int3")
    with pytest.raises(ValueError, match="io 'int4'"):
        export_tflite(_model("Relu"), tmp_path / "m.tflite", io="int4")


def test_identity_like_model_runs(tmp_path):
    """Edge case: a one-op float model (input feeds the output op directly)."""
    res = export_tflite(_model("Relu"), tmp_path / "r.tflite")
    x = np.array([[-1.0, 0.5, 2.0, -3.0]], np.float32)
    assert np.array_equal(LiteRTRunner(res.path).run({"x": x})[0], np.maximum(x, 0))


def test_signature_runner(tmp_path):
    """The file carries a ``serving_default`` signature named after the ONNX I/O."""
    from ai_edge_litert.interpreter import Interpreter

    res = export_tflite(_model("Relu"), tmp_path / "r.tflite")
    it = Interpreter(model_path=str(res.path))
    assert it.get_signature_list() == {"serving_default": {"inputs": ["x"], "outputs": ["y"]}}
    x = np.array([[-1.0, 2.0, -3.0, 4.0]], np.float32)
    out = it.get_signature_runner("serving_default")(x=x)
    assert np.array_equal(out["y"], np.maximum(x, 0))


def test_runner_splits_a_batch(tfl_models, tmp_path):
    """Feeding n samples to the batch-1 model runs them one by one (same as single calls)."""
    case = tfl_models["mnist"]
    res = export_tflite(onnx.load(case.qdq_path), tmp_path / "m.tflite")
    lite = LiteRTRunner(res.path)
    batch = lite.run({"x": case.x[:3]})[0]
    singles = np.concatenate([lite.run({"x": case.x[i:i + 1]})[0] for i in range(3)])
    assert batch.shape == (3, 10) and np.array_equal(batch, singles)
