"""The external-data guard covers every external reference, not just the first `location`
of graph initializers. Models and external files are crafted by hand."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from safety_cli import assert_one_line_error, invoke, snapshot

from edgequant.errors import ModelLoadError
from edgequant.graph.io import load_model

W = np.arange(6, dtype=np.float32).reshape(2, 3)


def external(name: str, *locations: str, arr: np.ndarray = W) -> TensorProto:
    """A float tensor whose data lives in external file(s) ``locations`` (one entry each)."""
    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=arr.shape)
    t.data_location = TensorProto.EXTERNAL
    for loc in locations:
        t.external_data.add(key="location", value=loc)
    t.external_data.add(key="length", value=str(arr.nbytes))
    return t


def model_with(tensor: TensorProto, where: str) -> onnx.ModelProto:
    """y = x + W with W as initializer / sparse / Constant node / Constant inside an If branch."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    inits, sparse, nodes = [], [], []
    if where == "initializer":
        tensor.name = "W"
        inits.append(tensor)
    elif where == "sparse":
        idx = helper.make_tensor("W_idx", TensorProto.INT64, [6], list(range(6)))
        tensor.name = "W"
        tensor.dims[:] = [6]
        sparse.append(helper.make_sparse_tensor(tensor, idx, [2, 3]))
    elif where == "constant":
        nodes.append(helper.make_node("Constant", [], ["W"], name="const_w", value=tensor))
    elif where == "if":
        inner = helper.make_node("Constant", [], ["Wb"], name="inner_const", value=tensor)
        out = helper.make_tensor_value_info("Wb", TensorProto.FLOAT, [2, 3])
        then = helper.make_graph([inner], "then", [], [out])
        other = helper.make_graph([helper.make_node("Constant", [], ["Wb"], name="zero",
                                                    value=onnx.numpy_helper.from_array(W * 0))],
                                  "else", [], [out])
        nodes += [helper.make_node("Constant", [], ["c"], name="cond",
                                   value=helper.make_tensor("c", TensorProto.BOOL, [], [True])),
                  helper.make_node("If", ["c"], ["W"], name="branch", then_branch=then,
                                   else_branch=other)]
    nodes.append(helper.make_node("Add", ["x", "W"], ["y"], name="add"))
    g = helper.make_graph(nodes, "ext", [x], [y], initializer=inits, sparse_initializer=sparse)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


@pytest.fixture()
def folder(tmp_path):
    """tmp/model/ (the model's folder, holding w.bin) and tmp/secret.bin outside it."""
    inner = tmp_path / "model"
    inner.mkdir()
    (inner / "w.bin").write_bytes(W.tobytes())
    (tmp_path / "secret.bin").write_bytes((W + 100).tobytes())
    return inner


WHERE = ["initializer", "sparse", "constant", "if"]


@pytest.mark.parametrize("where", WHERE)
def test_inside_the_folder_loads_and_runs(folder, where):
    """The guard refuses only escapes: in-folder external data of every kind loads, and
    onnxruntime computes x + W with the bytes of w.bin."""
    onnx.save(model_with(external("W", "w.bin"), where), folder / "m.onnx")
    m = load_model(folder / "m.onnx")
    x = np.ones((2, 3), np.float32)
    if where == "sparse":  # onnxruntime's CPU provider has no sparse initializers: read back
        values = onnx.numpy_helper.to_array(m.graph.sparse_initializer[0].values)
        np.testing.assert_array_equal(values, W.ravel())
    else:
        s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        np.testing.assert_array_equal(s.run(None, {"x": x})[0], x + W)


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize(("locations", "pattern"), [
    (("../secret.bin",), "outside the model's folder"),
    (("w.bin", "../secret.bin"), "2 external-data 'location' entries"),
    (("ABS",), "absolute paths are not allowed"),
    ((), "0 external-data 'location' entries"),
])
def test_escapes_are_refused_naming_the_tensor(folder, where, locations, pattern):
    locs = [str(folder.parent / "secret.bin") if loc == "ABS" else loc for loc in locations]
    onnx.save(model_with(external("W", *locs), where), folder / "m.onnx")
    label = {"initializer": "initializer 'W'", "sparse": "sparse initializer 'W'",
             "constant": "node 'const_w' (Constant) attribute 'value'",
             "if": "in subgraph 'then_branch' of node 'branch' (If)"}[where]
    with pytest.raises(ModelLoadError, match=pattern) as info:
        load_model(folder / "m.onnx")
    assert label in str(info.value)


def test_symlink_out_of_the_folder_is_refused(folder):
    os.symlink(folder.parent / "secret.bin", folder / "link.bin")
    onnx.save(model_with(external("W", "link.bin"), "constant"), folder / "m.onnx")
    with pytest.raises(ModelLoadError, match=r"resolves to .*secret\.bin"):
        load_model(folder / "m.onnx")


def test_dotdot_that_comes_back_is_refused(folder):
    onnx.save(model_with(external("W", "../model/w.bin"), "initializer"), folder / "m.onnx")
    with pytest.raises(ModelLoadError, match="outside the model's folder"):
        load_model(folder / "m.onnx")


def test_cli_one_line(folder):
    onnx.save(model_with(external("W", "w.bin", "../secret.bin"), "constant"), folder / "m.onnx")
    before = snapshot(folder)
    res = invoke("quantize", folder / "m.onnx", "-o", folder / "q.onnx", "--recipe", "fp16")
    assert_one_line_error(res, "node 'const_w' (Constant)", "'location' entries")
    assert snapshot(folder) == before
