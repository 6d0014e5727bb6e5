"""Float and data-movement ops vs onnxruntime, one single-op model per case.

Float results may differ from onnxruntime in the last bits (summation order, libm and MLAS
approximations of exp/erf/tanh), so they are compared within FLOAT_RTOL / FLOAT_ATOL; shape
ops, comparisons and integer results must be identical.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from single_op import FLOAT_ATOL, FLOAT_RTOL, run_ort, run_ref, single_op_model

rng = np.random.default_rng(42)


def f(*shape, lo=-2.0, hi=2.0):
    return rng.uniform(lo, hi, shape).astype(np.float32)


def i64(*v):
    return np.array(v, dtype=np.int64)


X4 = f(2, 3, 9, 8)
# (id, op, graph inputs, initializers, node input names, attributes)
CASES = [
    ("conv", "Conv", {"x": X4}, {"w": f(6, 3, 3, 3), "b": f(6)}, ["x", "w", "b"],
     dict(pads=[1, 0, 2, 1], strides=[2, 1], dilations=[1, 2])),
    ("conv_dw", "Conv", {"x": X4}, {"w": f(3, 1, 3, 3)}, ["x", "w"],
     dict(group=3, auto_pad="SAME_UPPER")),
    ("conv1d", "Conv", {"x": f(2, 4, 11)}, {"w": f(6, 2, 3)}, ["x", "w"],
     dict(group=2, pads=[1, 1])),
    ("gemm", "Gemm", {"a": f(4, 7)}, {"b": f(5, 7), "c": f(5)}, ["a", "b", "c"],
     dict(transB=1, alpha=0.5, beta=2.0)),
    ("matmul", "MatMul", {"a": f(2, 3, 4, 7)}, {"b": f(7, 5)}, ["a", "b"], {}),
    ("add", "Add", {"a": X4}, {"b": f(1, 3, 1, 8)}, ["a", "b"], {}),
    ("sub", "Sub", {"a": X4}, {"b": f(8)}, ["a", "b"], {}),
    ("mul", "Mul", {"a": X4}, {"b": f(3, 1, 1)}, ["a", "b"], {}),
    ("div", "Div", {"a": X4}, {"b": f(8, lo=0.5)}, ["a", "b"], {}),
    ("div_int", "Div", {"a": i64(-7, 7, -8, 9)}, {"b": i64(2, -2, 3, 4)}, ["a", "b"], {}),
    ("softmax", "Softmax", {"x": X4}, {}, ["x"], dict(axis=1)),
    ("sigmoid", "Sigmoid", {"x": X4 * 4}, {}, ["x"], {}),
    ("tanh", "Tanh", {"x": X4}, {}, ["x"], {}),
    ("erf", "Erf", {"x": X4}, {}, ["x"], {}),
    ("gelu", "Gelu", {"x": X4}, {}, ["x"], {}),
    ("gelu_tanh", "Gelu", {"x": X4}, {}, ["x"], dict(approximate="tanh")),
    ("layernorm", "LayerNormalization", {"x": f(2, 5, 16)}, {"s": f(16), "b": f(16)},
     ["x", "s", "b"], dict(epsilon=1e-12)),
    ("reducemean", "ReduceMean", {"x": X4}, {"axes": i64(2, 3)}, ["x", "axes"], {}),
    ("reducemax", "ReduceMax", {"x": X4}, {"axes": i64(1)}, ["x", "axes"], dict(keepdims=0)),
    ("abs", "Abs", {"x": X4}, {}, ["x"], {}),
    ("max", "Max", {"a": X4}, {"b": f(8), "c": f(1)}, ["a", "b", "c"], {}),
    ("min", "Min", {"a": X4}, {"b": f(8)}, ["a", "b"], {}),
    ("round", "Round", {"x": np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.49, 2.51], np.float32)},
     {}, ["x"], {}),
    ("pow", "Pow", {"x": f(3, 4, lo=0.1)}, {"y": np.float32(2.5)}, ["x", "y"], {}),
    ("sqrt", "Sqrt", {"x": f(3, 4, lo=0.0)}, {}, ["x"], {}),
    ("where", "Where", {"a": X4}, {"c": f(8) > 0, "b": f(1)}, ["c", "a", "b"], {}),
    ("cast", "Cast", {"x": X4 * 50}, {}, ["x"], dict(to=TensorProto.INT32)),
    ("shape", "Shape", {"x": X4}, {}, ["x"], dict(start=1)),
    ("expand", "Expand", {"x": f(3, 1)}, {"s": i64(2, 3, 4)}, ["x", "s"], {}),
    ("equal", "Equal", {"a": i64(1, 2, 3)}, {"b": i64(1, 0, 3)}, ["a", "b"], {}),
    ("constantofshape", "ConstantOfShape", {"s": i64(2, 3)}, {}, ["s"],
     dict(value=helper.make_tensor("v", TensorProto.INT64, [1], [7]))),
    ("constant", "Constant", {}, {}, [], dict(value_floats=[1.0, 2.5])),
    ("identity", "Identity", {"x": X4}, {}, ["x"], {}),
    ("range", "Range", {}, {"s": np.int64(2), "l": np.int64(11), "d": np.int64(3)},
     ["s", "l", "d"], {}),
    ("neg", "Neg", {"x": X4}, {}, ["x"], {}),
    ("exp", "Exp", {"x": X4}, {}, ["x"], {}),
    ("batchnorm", "BatchNormalization", {"x": X4},
     {"s": f(3), "b": f(3), "m": f(3), "v": f(3, lo=0.1)}, ["x", "s", "b", "m", "v"], {}),
    ("hardswish", "HardSwish", {"x": X4 * 3}, {}, ["x"], {}),
    ("hardsigmoid", "HardSigmoid", {"x": X4 * 3}, {}, ["x"], dict(alpha=0.3, beta=0.4)),
    ("leakyrelu", "LeakyRelu", {"x": X4}, {}, ["x"], dict(alpha=0.2)),
    ("relu", "Relu", {"x": X4}, {}, ["x"], {}),
    ("clip", "Clip", {"x": X4}, {"lo": np.float32(-0.5), "hi": np.float32(1.0)},
     ["x", "lo", "hi"], {}),
    ("maxpool", "MaxPool", {"x": X4}, {}, ["x"],
     dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)),
    ("maxpool_dil", "MaxPool", {"x": X4}, {}, ["x"], dict(kernel_shape=[2, 2], dilations=[2, 2])),
    ("avgpool", "AveragePool", {"x": X4}, {}, ["x"],
     dict(kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1])),
    ("avgpool_incl", "AveragePool", {"x": X4}, {}, ["x"],
     dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1)),
    ("avgpool_same", "AveragePool", {"x": X4}, {}, ["x"],
     dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_LOWER")),
    ("gap", "GlobalAveragePool", {"x": X4}, {}, ["x"], {}),
    ("reshape", "Reshape", {"x": X4}, {"s": i64(0, -1, 4)}, ["x", "s"], {}),
    ("flatten", "Flatten", {"x": X4}, {}, ["x"], dict(axis=2)),
    ("transpose", "Transpose", {"x": X4}, {}, ["x"], dict(perm=[0, 2, 3, 1])),
    ("squeeze", "Squeeze", {"x": f(2, 1, 3, 1)}, {"a": i64(-1)}, ["x", "a"], {}),
    ("unsqueeze", "Unsqueeze", {"x": f(2, 3)}, {"a": i64(0, -1)}, ["x", "a"], {}),
    ("concat", "Concat", {"a": X4}, {"b": f(2, 1, 9, 8)}, ["a", "b"], dict(axis=1)),
    ("split", "Split", {"x": f(2, 7)}, {"s": i64(3, 4)}, ["x", "s"], dict(axis=1)),
    ("pad", "Pad", {"x": X4}, {"p": i64(0, 0, 1, 2, 0, 0, 2, 1), "v": np.float32(0.5)},
     ["x", "p", "v"], {}),
    ("pad_reflect", "Pad", {"x": X4}, {"p": i64(0, 0, 1, 2, 0, 0, 2, 1)}, ["x", "p"],
     dict(mode="reflect")),
    ("pad_edge_neg", "Pad", {"x": X4}, {"p": i64(0, 0, -1, 2, 0, 0, 2, -2)}, ["x", "p"],
     dict(mode="edge")),
    ("slice", "Slice", {"x": X4}, {"s": i64(-1, 1), "e": i64(-100, 7), "a": i64(3, 2),
                                     "st": i64(-2, 3)}, ["x", "s", "e", "a", "st"], {}),
    ("gather", "Gather", {"x": X4}, {"i": i64(2, -1, 0)}, ["x", "i"], dict(axis=3)),
]


def test_softmax_opset_11_coerces_to_2d():
    from single_op import OPSET

    x = f(2, 3, 4)
    model = single_op_model("Softmax", {"x": x}, {}, ["x"], axis=1)
    model.opset_import[0].version = 11
    ours, theirs = run_ref(model, {"x": x})[0], run_ort(model, {"x": x})[0]
    np.testing.assert_allclose(ours, theirs, rtol=FLOAT_RTOL, atol=FLOAT_ATOL)
    assert OPSET >= 13  # the other cases run at the current opset


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_float_op_matches_onnxruntime(case):
    _, op, inputs, consts, order, attrs = case
    n_out = 2 if op == "Split" else 1
    model = single_op_model(op, inputs, consts, order, n_outputs=n_out, **attrs)
    ours, theirs = run_ref(model, inputs), run_ort(model, inputs)
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=FLOAT_RTOL, atol=FLOAT_ATOL)
        else:
            np.testing.assert_array_equal(a, b)
