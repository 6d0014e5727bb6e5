"""Build one-node ONNX models and run them on onnxruntime and the reference interpreter."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from edgequant.interp import Interpreter

OPSET = 21
MS_OPSET = 1

#: float32 single-op results vs onnxruntime: a few ulp of relative error from a different
#: summation order / libm (exp, erf, tanh approximations in MLAS).
FLOAT_RTOL = 2e-5
#: absolute floor for values near 0 (cancellation in sums of ~100 float32 terms).
FLOAT_ATOL = 2e-6


def single_op_model(op_type: str, inputs: dict[str, np.ndarray], constants: dict[str, np.ndarray],
                    input_order: list[str], n_outputs: int = 1, domain: str = "",
                    **attrs) -> onnx.ModelProto:
    """Model with one node: ``inputs`` are graph inputs, ``constants`` initializers.

    ``input_order`` lists the node's input names (``""`` for an omitted optional input).
    """
    graph_inputs = [
        helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
        for n, v in inputs.items()
    ]
    inits = [numpy_helper.from_array(np.asarray(v), n) for n, v in constants.items()]
    outs = [f"y{i}" for i in range(n_outputs)]
    node = helper.make_node(op_type, input_order, outs, domain=domain, name=f"{op_type}_node",
                            **attrs)
    graph = helper.make_graph([node], "single", graph_inputs,
                              [onnx.ValueInfoProto(name=o) for o in outs], initializer=inits)
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", MS_OPSET)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=10)


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """All outputs of ``model`` on onnxruntime's CPU provider (graph optimizations off)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def run_ref(model: onnx.ModelProto, feeds: dict[str, np.ndarray],
            requantization: str = "float") -> list[np.ndarray]:
    """All outputs of ``model`` on the reference interpreter."""
    interp = Interpreter(model, requantization=requantization)
    out = interp.run(feeds)
    return [out[n] for n in interp.output_names]


def lsb_diff(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    """(max |a − b| in integer steps, share of bit-identical values) of two integer arrays."""
    assert a.shape == b.shape, (a.shape, b.shape)
    d = np.abs(a.astype(np.int64) - b.astype(np.int64))
    return int(d.max()) if d.size else 0, float((d == 0).mean()) if d.size else 1.0
