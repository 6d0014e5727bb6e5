"""ort_session: every way of naming a model, extra outputs, options reaching onnxruntime.

Oracles: a plain ``onnxruntime.InferenceSession`` and numpy formulas of the test graph.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto
from onnx import helper as h

from edgequant.runtime.sessions import OPTIMIZATION_LEVELS, ort_session, with_outputs

#: float32 MatMul vs numpy's: only the summation order may differ.
RTOL, ATOL = 1e-5, 1e-6


def _relu_chain() -> onnx.ModelProto:
    """x → Neg → Identity → Relu: an Identity every optimization level above
    ``disable`` removes, and an intermediate ``n`` to expose."""
    g = h.make_graph(
        [h.make_node("Neg", ["x"], ["n"]), h.make_node("Identity", ["n"], ["i"]),
         h.make_node("Relu", ["i"], ["y"])], "chain",
        [h.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [h.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
    )
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 21)])
    m.ir_version = 10
    return m


X = np.array([[-1.5, 0.0, 2.0], [3.0, -4.0, 0.5]], np.float32)


def test_proto_path_and_bytes_match_plain_onnxruntime(tmp_path):
    m = _relu_chain()
    path = tmp_path / "m.onnx"
    onnx.save(m, path)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": X})
    for source in (m, path, str(path), m.SerializeToString()):
        sess = ort_session(source)
        assert sess.get_providers() == ["CPUExecutionProvider"]
        np.testing.assert_array_equal(sess.run(None, {"x": X})[0], want[0])
    np.testing.assert_array_equal(want[0], np.maximum(-X, 0))


def test_extra_outputs_expose_intermediate_tensors_and_leave_the_model_alone(tmp_path):
    m = _relu_chain()
    before = m.SerializeToString()
    for source in (m, m.SerializeToString(), tmp_path / "m.onnx"):
        if not isinstance(source, onnx.ModelProto | bytes):
            onnx.save(m, source)
        sess = ort_session(source, extra_outputs=["n", "y", "n"])  # duplicates ignored
        assert [o.name for o in sess.get_outputs()] == ["y", "n"]
        y, n = sess.run(None, {"x": X})
        np.testing.assert_array_equal(n, -X)
        np.testing.assert_array_equal(y, np.maximum(-X, 0))
    assert m.SerializeToString() == before
    assert [o.name for o in with_outputs(m, ["i"]).graph.output] == ["y", "i"]
    assert [o.name for o in m.graph.output] == ["y"]


def test_options_reach_the_session():
    sess = ort_session(_relu_chain(), threads=2, optimization="basic")
    so = sess.get_session_options()
    assert so.intra_op_num_threads == 2 and so.inter_op_num_threads == 1
    assert so.graph_optimization_level == OPTIMIZATION_LEVELS["basic"]
    assert ort_session(_relu_chain()).get_session_options().graph_optimization_level == \
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL


@pytest.mark.parametrize(("level", "identity_kept"), [("disable", True), ("extended", False)])
def test_optimized_model_shows_the_level(tmp_path, level, identity_kept):
    out = tmp_path / f"{level}.onnx"
    ort_session(_relu_chain(), optimization=level, optimized_model_path=out)
    ops = [n.op_type for n in onnx.load(out).graph.node]
    assert ("Identity" in ops) is identity_kept, ops


def test_bad_arguments_name_what_is_allowed():
    with pytest.raises(ValueError, match="'disable'"):
        ort_session(_relu_chain(), optimization="max")
    with pytest.raises(ValueError, match="threads=0"):
        ort_session(_relu_chain(), threads=0)
    with pytest.raises(TypeError, match="ModelProto"):
        ort_session(42)


def test_sessions_module_is_the_only_place_that_opens_sessions():
    """Every onnxruntime session in the package comes from :func:`ort_session`."""
    import ast
    from pathlib import Path

    import edgequant

    root = Path(edgequant.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if path.name == "sessions.py" and path.parent.name == "runtime":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.attr] if isinstance(node, ast.Attribute) else \
                [node.id] if isinstance(node, ast.Name) else \
                [a.name for a in node.names] if isinstance(node, ast.ImportFrom) else []
            if "InferenceSession" in names:
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert offenders == []
