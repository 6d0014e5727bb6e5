"""Interpreter plumbing: model inputs of every kind, errors, ordering, run_all, compare()."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper
from single_op import single_op_model

from edgequant.errors import UnsupportedOpError
from edgequant.interp import Interpreter
from edgequant.runtime.verify import compare


def two_node_model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    nodes = [helper.make_node("Relu", ["h"], ["y"], name="second"),  # out of order on purpose
             helper.make_node("Neg", ["x"], ["h"], name="first")]
    graph = helper.make_graph(nodes, "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def test_runs_out_of_order_graph_and_returns_every_tensor():
    interp = Interpreter(two_node_model())
    x = np.array([[1, -2, 3], [-4, 5, -6]], np.float32)
    np.testing.assert_array_equal(interp.run({"x": x})["y"], np.maximum(-x, 0))
    everything = interp.run_all({"x": x})
    assert set(everything) == {"x", "h", "y"}
    np.testing.assert_array_equal(everything["h"], -x)


def test_accepts_path_and_onnx_ir(tmp_path):
    model = two_node_model()
    model.graph.node.reverse()  # files go through onnx.checker, which wants sorted nodes
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    x = np.ones((2, 3), np.float32)
    expected = Interpreter(model).run({"x": x})["y"]
    np.testing.assert_array_equal(Interpreter(path).run({"x": x})["y"], expected)
    np.testing.assert_array_equal(
        Interpreter(ir.serde.deserialize_model(model)).run({"x": x})["y"], expected)


def test_feeds_are_cast_to_declared_dtype_and_validated():
    interp = Interpreter(two_node_model())
    out = interp.run({"x": np.ones((2, 3), np.float64)})["y"]
    assert out.dtype == np.float32
    with pytest.raises(ValueError, match="'x' is missing"):
        interp.run({})
    with pytest.raises(ValueError, match="not inputs"):
        interp.run({"x": np.ones((2, 3), np.float32), "bogus": np.ones(1)})


def test_unsupported_op_names_type_domain_and_node():
    model = single_op_model("StringNormalizer", {"a": np.ones((2, 2), np.float32)}, {}, ["a"])
    with pytest.raises(UnsupportedOpError,
                       match=r"'StringNormalizer'.*ai\.onnx.*'StringNormalizer_node'"):
        Interpreter(model)
    custom = single_op_model("Frobnicate", {"a": np.ones(2, np.float32)}, {}, ["a"],
                             domain="com.example")
    with pytest.raises(UnsupportedOpError, match=r"com\.example"):
        Interpreter(custom)


def test_bad_requantization_mode():
    with pytest.raises(ValueError, match="requantization"):
        Interpreter(two_node_model(), requantization="double")


def test_op_error_names_the_node():
    model = single_op_model("Reshape", {"x": np.ones(6, np.float32)},
                            {"s": np.array([4, 4], np.int64)}, ["x", "s"])
    with pytest.raises(ValueError) as info:
        Interpreter(model).run({"x": np.ones(6, np.float32)})
    assert "Reshape_node" in "".join(getattr(info.value, "__notes__", []))


def test_integer_gemm_exactness_bound_is_asserted():
    from edgequant.interp.integers import exact_matmul

    big = np.full((1, 4), 2**26, np.int64)
    with pytest.raises(AssertionError, match="exact"):
        exact_matmul(big, big.T)
    np.testing.assert_array_equal(exact_matmul(np.array([[3, -4]]), np.array([[5], [6]])),
                                  [[-9]])


def test_compare_units():
    a = np.array([1, 2, 3], np.int8)
    d = compare("t", a, np.array([1, 4, 3], np.int8))
    assert (d.kind, d.max_diff, d.identical) == ("integer", 2.0, pytest.approx(2 / 3))
    f = compare("f", np.array([0.5, 1.0], np.float32), np.array([0.75, 1.0], np.float32),
                scale=np.array(0.25))
    assert (f.kind, f.max_diff) == ("dequantized", 1.0)
    g = compare("g", np.array([0.5], np.float32), np.array([0.5], np.float32))
    assert (g.kind, g.max_diff, g.identical) == ("float", 0.0, 1.0)


def test_static_batch_model_runs_samples_in_batches():
    from edgequant.runtime.verify import run, verify

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    shape = helper.make_tensor("s", TensorProto.INT64, [2], [1, 3])
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "s"], ["r"]),
                               helper.make_node("Relu", ["r"], ["y"])], "g", [x], [y],
                              initializer=[shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    feeds = {"x": np.arange(-7, 8, dtype=np.float32).reshape(5, 3)}
    out = run(model, feeds)["y"]
    np.testing.assert_array_equal(out, np.maximum(feeds["x"], 0))
    np.testing.assert_array_equal(run(model, feeds, engine="onnxruntime")["y"], out)
    report = verify(model, feeds)
    assert report.ok(0, float_atol=0.0) and report.outputs[0].identical == 1.0
