"""Further standard ops found in exported models (CTC heads' LogSoftmax, diffusion / speech
GroupNormalization, dynamo exports' CastLike, ScatterElements in HF encoders, trigonometry,
bitwise ops, more reductions) vs onnxruntime, one seeded single-op model per case."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto
from single_op import FLOAT_ATOL, FLOAT_RTOL, run_ort, run_ref, single_op_model

rng = np.random.default_rng(21)


def f(*shape, lo=-2.0, hi=2.0):
    return rng.uniform(lo, hi, shape).astype(np.float32)


def i64(*v):
    return np.array(v, dtype=np.int64)


X4 = f(2, 6, 3, 4)
U8 = rng.integers(0, 256, (3, 4)).astype(np.uint8)
# (id, op, graph inputs, initializers, node input names, attributes, opset or None)
CASES = [
    ("tan", "Tan", {"x": f(3, 4, lo=-1.2, hi=1.2)}, {}, ["x"], {}, None),
    ("asin", "Asin", {"x": f(3, 4, lo=-1, hi=1)}, {}, ["x"], {}, None),
    ("acos", "Acos", {"x": f(3, 4, lo=-1, hi=1)}, {}, ["x"], {}, None),
    ("sinh", "Sinh", {"x": f(3, 4)}, {}, ["x"], {}, None),
    ("cosh", "Cosh", {"x": f(3, 4)}, {}, ["x"], {}, None),
    ("asinh", "Asinh", {"x": f(3, 4)}, {}, ["x"], {}, None),
    ("acosh", "Acosh", {"x": f(3, 4, lo=1, hi=4)}, {}, ["x"], {}, None),
    ("atanh", "Atanh", {"x": f(3, 4, lo=-0.9, hi=0.9)}, {}, ["x"], {}, None),
    ("softsign", "Softsign", {"x": X4}, {}, ["x"], {}, None),
    ("thresholdedrelu", "ThresholdedRelu", {"x": X4}, {}, ["x"], dict(alpha=0.5), None),
    ("celu", "Celu", {"x": X4}, {}, ["x"], dict(alpha=0.8), None),
    ("castlike", "CastLike", {"x": X4 * 40}, {"t": np.int32(0)}, ["x", "t"], {}, None),
    ("bitshift_left", "BitShift", {"x": U8}, {"s": np.uint8(2)}, ["x", "s"],
     dict(direction="LEFT"), None),
    ("bitshift_right", "BitShift", {"x": U8}, {"s": U8 % 8}, ["x", "s"],
     dict(direction="RIGHT"), None),
    ("bitwiseand", "BitwiseAnd", {"a": U8}, {"b": U8[::-1].copy()}, ["a", "b"], {}, None),
    ("bitwiseor", "BitwiseOr", {"a": U8}, {"b": U8[::-1].copy()}, ["a", "b"], {}, None),
    ("bitwisexor", "BitwiseXor", {"a": U8}, {"b": U8[::-1].copy()}, ["a", "b"], {}, None),
    ("bitwisenot", "BitwiseNot", {"a": U8}, {}, ["a"], {}, None),
    ("reducel1", "ReduceL1", {"x": X4}, {"a": i64(1, 3)}, ["x", "a"], {}, None),
    ("reducesumsquare", "ReduceSumSquare", {"x": X4}, {"a": i64(2)}, ["x", "a"],
     dict(keepdims=0), None),
    ("reducelogsum", "ReduceLogSum", {"x": f(2, 3, 4, lo=0.1)}, {"a": i64(-1)}, ["x", "a"], {},
     None),
    ("reducelogsumexp", "ReduceLogSumExp", {"x": X4 * 30}, {"a": i64(1)}, ["x", "a"], {}, None),
    ("logsoftmax", "LogSoftmax", {"x": X4 * 5}, {}, ["x"], dict(axis=1), None),
    ("logsoftmax_11", "LogSoftmax", {"x": X4}, {}, ["x"], dict(axis=2), 11),
    ("hardmax", "Hardmax", {"x": X4}, {}, ["x"], {}, None),
    ("groupnorm", "GroupNormalization", {"x": X4}, {"s": f(6), "b": f(6)}, ["x", "s", "b"],
     dict(num_groups=3, epsilon=1e-4), None),
    ("mvn", "MeanVarianceNormalization", {"x": X4}, {}, ["x"], {}, None),
    ("lpnorm1", "LpNormalization", {"x": X4}, {}, ["x"], dict(axis=1, p=1), None),
    ("lpnorm2", "LpNormalization", {"x": X4}, {}, ["x"], dict(axis=-1), None),
    ("scatterelements", "ScatterElements", {"x": f(3, 4)},
     {"i": i64(1, 0, 3, -1, 2, 0).reshape(3, 2), "u": f(3, 2)}, ["x", "i", "u"],
     dict(axis=1), None),
    ("scatterelements_add", "ScatterElements", {"x": f(4, 3)},
     {"i": i64(1, 1, 0, 1, 3, 2).reshape(2, 3), "u": f(2, 3)}, ["x", "i", "u"],
     dict(axis=0, reduction="add"), None),
    ("compress", "Compress", {"x": X4}, {"c": np.array([1, 0, 1, 1, 0, 1], bool)}, ["x", "c"],
     dict(axis=1), None),
    ("compress_flat", "Compress", {"x": f(2, 3)}, {"c": np.array([0, 1, 1, 0, 1], bool)},
     ["x", "c"], {}, None),
    ("reversesequence", "ReverseSequence", {"x": f(5, 3, 2)}, {"l": i64(5, 2, 3)}, ["x", "l"],
     {}, None),
    ("reversesequence_b0", "ReverseSequence", {"x": f(3, 5)}, {"l": i64(1, 4, 5)}, ["x", "l"],
     dict(batch_axis=0, time_axis=1), None),
    ("eyelike", "EyeLike", {"x": f(3, 5)}, {}, ["x"], dict(k=1, dtype=TensorProto.INT32), None),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_op_matches_onnxruntime(case):
    _, op, inputs, consts, order, attrs, opset = case
    model = single_op_model(op, inputs, consts, order, **attrs)
    if opset is not None:
        model.opset_import[0].version = opset
    ours, theirs = run_ref(model, inputs)[0], run_ort(model, inputs)[0]
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, (
        ours.shape, theirs.shape, ours.dtype, theirs.dtype)
    if ours.dtype.kind == "f":
        np.testing.assert_allclose(ours, theirs, rtol=FLOAT_RTOL, atol=FLOAT_ATOL)
    else:
        np.testing.assert_array_equal(ours, theirs)
