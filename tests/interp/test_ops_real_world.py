"""Ops that real exported models use (OCR nets, model-zoo CNNs, voice-activity and encoder
models) vs onnxruntime, one seeded single-op model per case.

Float results may differ from onnxruntime in the last bits (summation order, libm versus MLAS
approximations of exp / log / tanh), so they are compared within named tolerances; index,
shape, boolean and integer outputs must be identical.
"""

from __future__ import annotations

import numpy as np
import pytest
from single_op import FLOAT_ATOL, FLOAT_RTOL, run_ort, run_ref, single_op_model

rng = np.random.default_rng(7)


def f(*shape, lo=-2.0, hi=2.0):
    return rng.uniform(lo, hi, shape).astype(np.float32)


def i64(*v):
    return np.array(v, dtype=np.int64)


X4 = f(2, 6, 5, 4)
WITH_INF = np.array([1.0, np.inf, -np.inf, np.nan, 0.0, -2.0], np.float32)
# (id, op, graph inputs, initializers, node input names, attributes, number of outputs)
CASES = [
    ("log", "Log", {"x": f(3, 4, lo=0.01)}, {}, ["x"], {}, 1),
    ("reciprocal", "Reciprocal", {"x": f(3, 4, lo=0.1)}, {}, ["x"], {}, 1),
    ("floor", "Floor", {"x": X4 * 3}, {}, ["x"], {}, 1),
    ("ceil", "Ceil", {"x": X4 * 3}, {}, ["x"], {}, 1),
    ("sign", "Sign", {"x": np.array([-2.0, 0.0, 3.5, -0.0], np.float32)}, {}, ["x"], {}, 1),
    ("sin", "Sin", {"x": X4 * 3}, {}, ["x"], {}, 1),
    ("cos", "Cos", {"x": X4 * 3}, {}, ["x"], {}, 1),
    ("atan", "Atan", {"x": X4 * 3}, {}, ["x"], {}, 1),
    ("softplus", "Softplus", {"x": X4 * 10}, {}, ["x"], {}, 1),
    ("elu", "Elu", {"x": X4}, {}, ["x"], dict(alpha=0.7), 1),
    ("selu", "Selu", {"x": X4}, {}, ["x"], {}, 1),
    ("prelu", "PRelu", {"x": X4}, {"s": f(6, 1, 1)}, ["x", "s"], {}, 1),
    ("mish", "Mish", {"x": X4 * 3}, {}, ["x"], {}, 1),
    ("sum3", "Sum", {"a": X4}, {"b": f(4), "c": f(6, 1, 1)}, ["a", "b", "c"], {}, 1),
    ("mean2", "Mean", {"a": X4}, {"b": f(5, 4)}, ["a", "b"], {}, 1),
    ("mod_int", "Mod", {"a": i64(-7, 7, -8, 9, 5)}, {"b": i64(3, -3, 3, -4, 5)}, ["a", "b"], {}, 1),
    ("mod_fmod", "Mod", {"a": f(3, 4) * 5}, {"b": f(4, lo=0.5)}, ["a", "b"], dict(fmod=1), 1),
    ("xor", "Xor", {"a": f(3, 4) > 0}, {"b": f(4) > 0}, ["a", "b"], {}, 1),
    ("isnan", "IsNaN", {"x": WITH_INF}, {}, ["x"], {}, 1),
    ("isinf", "IsInf", {"x": WITH_INF}, {}, ["x"], {}, 1),
    ("isinf_neg", "IsInf", {"x": WITH_INF}, {}, ["x"], dict(detect_positive=0), 1),
    ("dropout", "Dropout", {"x": X4}, {}, ["x"], {}, 2),
    ("lrn", "LRN", {"x": X4}, {}, ["x"], dict(size=3, alpha=1e-3, beta=0.75, bias=2.0), 1),
    ("lrn5", "LRN", {"x": X4}, {}, ["x"], dict(size=5), 1),
    ("instancenorm", "InstanceNormalization", {"x": X4}, {"s": f(6), "b": f(6)},
     ["x", "s", "b"], dict(epsilon=1e-3), 1),
    ("einsum_bmm", "Einsum", {"a": f(2, 3, 4)}, {"b": f(2, 4, 5)}, ["a", "b"],
     dict(equation="bij,bjk->bik"), 1),
    ("einsum_attn", "Einsum", {"a": f(2, 3, 5, 4)}, {"b": f(2, 3, 6, 4)}, ["a", "b"],
     dict(equation="bhqd,bhkd->bhqk"), 1),
    ("einsum_outer", "Einsum", {"a": f(3)}, {"b": f(4)}, ["a", "b"], dict(equation="i,j->ij"), 1),
    ("reduceprod", "ReduceProd", {"x": f(2, 3, 4, lo=0.5)}, {"a": i64(1)}, ["x", "a"], {}, 1),
    ("argmax", "ArgMax", {"x": X4}, {}, ["x"], dict(axis=1), 1),
    ("argmin_last", "ArgMin", {"x": np.array([[1, 0, 0, 3], [2, 2, 1, 1]], np.float32)}, {},
     ["x"], dict(axis=1, keepdims=0, select_last_index=1), 1),
    ("topk", "TopK", {"x": X4}, {"k": i64(3)}, ["x", "k"], dict(axis=1), 2),
    ("topk_small_ties", "TopK", {"x": np.array([[3, 1, 1, 2, 1]], np.float32)}, {"k": i64(3)},
     ["x", "k"], dict(largest=0), 2),
    ("cumsum", "CumSum", {"x": X4}, {"a": np.int64(2)}, ["x", "a"], {}, 1),
    ("cumsum_excl_rev", "CumSum", {"x": i64(1, 2, 3, 4, 5)}, {"a": np.int32(0)}, ["x", "a"],
     dict(exclusive=1, reverse=1), 1),
    ("gatherelements", "GatherElements", {"x": f(3, 4)}, {"i": i64(0, -1, 2, 1, 0, 3).reshape(3, 2)},
     ["x", "i"], dict(axis=1), 1),
    ("scatternd", "ScatterND", {"x": f(4, 3, 2)}, {"i": i64(2, 0, 1, -1).reshape(2, 1, 2),
                                                   "u": f(2, 1, 2)}, ["x", "i", "u"], {}, 1),
    ("scatternd_add", "ScatterND", {"x": f(5, 3)}, {"i": i64(1, 3, 1).reshape(3, 1), "u": f(3, 3)},
     ["x", "i", "u"], dict(reduction="add"), 1),
    ("onehot", "OneHot", {"i": i64(0, 2, -1, 1)}, {"d": i64(4), "v": np.array([0.5, 3.0], np.float32)},
     ["i", "d", "v"], dict(axis=0), 1),
    ("nonzero", "NonZero", {"x": (f(3, 4) > 0.5).astype(np.float32)}, {}, ["x"], {}, 1),
    ("tile", "Tile", {"x": f(2, 3)}, {"r": i64(2, 3)}, ["x", "r"], {}, 1),
    ("trilu_upper", "Trilu", {"x": f(2, 4, 5)}, {"k": np.int64(1)}, ["x", "k"], {}, 1),
    ("trilu_lower", "Trilu", {"x": f(4, 5)}, {"k": np.int64(-1)}, ["x", "k"], dict(upper=0), 1),
    ("size", "Size", {"x": X4}, {}, ["x"], {}, 1),
    ("depthtospace_dcr", "DepthToSpace", {"x": f(2, 8, 3, 2)}, {}, ["x"], dict(blocksize=2), 1),
    ("depthtospace_crd", "DepthToSpace", {"x": f(2, 8, 3, 2)}, {}, ["x"],
     dict(blocksize=2, mode="CRD"), 1),
    ("spacetodepth", "SpaceToDepth", {"x": f(2, 3, 4, 6)}, {}, ["x"], dict(blocksize=2), 1),
    ("convtranspose", "ConvTranspose", {"x": f(2, 4, 5, 6)}, {"w": f(4, 3, 3, 3), "b": f(3)},
     ["x", "w", "b"], dict(strides=[2, 2], pads=[1, 0, 1, 1], output_padding=[1, 0]), 1),
    ("convtranspose_groups", "ConvTranspose", {"x": f(1, 4, 5, 5)}, {"w": f(4, 2, 3, 2)},
     ["x", "w"], dict(group=2, strides=[1, 2], dilations=[2, 1]), 1),
    ("convtranspose_outshape", "ConvTranspose", {"x": f(1, 2, 4, 4)}, {"w": f(2, 3, 3, 3)},
     ["x", "w"], dict(strides=[2, 2], output_shape=[9, 8]), 1),
    ("convtranspose_outshape_larger", "ConvTranspose", {"x": f(1, 4, 4, 3)}, {"w": f(4, 1, 1, 3)},
     ["x", "w"], dict(group=2, strides=[3, 2], dilations=[1, 2], output_shape=[12, 6]), 1),
    ("convtranspose_same", "ConvTranspose", {"x": f(1, 2, 4, 5)}, {"w": f(2, 2, 3, 3)},
     ["x", "w"], dict(strides=[2, 2], auto_pad="SAME_UPPER"), 1),
    ("convtranspose_same_lower", "ConvTranspose", {"x": f(1, 2, 5, 4)}, {"w": f(2, 2, 3, 2)},
     ["x", "w"], dict(strides=[2, 3], auto_pad="SAME_LOWER"), 1),
    ("convtranspose_1d", "ConvTranspose", {"x": f(2, 3, 7)}, {"w": f(3, 2, 4)}, ["x", "w"],
     dict(strides=[3], pads=[1, 2]), 1),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_op_matches_onnxruntime(case):
    _, op, inputs, consts, order, attrs, n_out = case
    model = single_op_model(op, inputs, consts, order, n_outputs=n_out, **attrs)
    ours, theirs = run_ref(model, inputs), run_ort(model, inputs)
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=FLOAT_RTOL, atol=FLOAT_ATOL)
        else:
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("seed", range(4))
def test_random_convtranspose_matches_onnxruntime(seed):
    """Randomized geometry: groups, strides, dilations, pads and output_padding together."""
    r = np.random.default_rng(seed)
    g = int(r.integers(1, 3))
    c, m = g * int(r.integers(1, 3)), g * int(r.integers(1, 3))
    k = r.integers(1, 4, 2)
    s = r.integers(1, 4, 2)
    d = r.integers(1, 3, 2)
    pads = [int(r.integers(0, k[i])) for i in (0, 1)] * 2
    op = [int(r.integers(0, s[i])) for i in (0, 1)]  # onnxruntime wants output_padding < stride
    x = r.standard_normal((2, c, int(r.integers(2, 6)), int(r.integers(2, 6)))).astype(np.float32)
    w = r.standard_normal((c, m // g, *k)).astype(np.float32)
    model = single_op_model("ConvTranspose", {"x": x}, {"w": w}, ["x", "w"], group=g,
                            strides=s.tolist(), dilations=d.tolist(), pads=pads, output_padding=op)
    ours, theirs = run_ref(model, {"x": x})[0], run_ort(model, {"x": x})[0]
    np.testing.assert_allclose(ours, theirs, rtol=FLOAT_RTOL, atol=1e-5)


def test_dropout_in_training_mode_is_rejected():
    x = f(2, 3)
    model = single_op_model("Dropout", {"x": x}, {"r": np.float32(0.5), "t": np.array(True)},
                            ["x", "r", "t"])
    with pytest.raises(ValueError, match=r"Dropout node 'Dropout_node'.*training_mode"):
        run_ref(model, {"x": x})


def test_swish_opset24_matches_onnxruntime():
    x = f(3, 4) * 3
    model = single_op_model("Swish", {"x": x}, {}, ["x"], alpha=0.7)
    model.opset_import[0].version = 24  # Swish entered the standard domain in opset 24
    np.testing.assert_allclose(run_ref(model, {"x": x})[0], run_ort(model, {"x": x})[0],
                               rtol=FLOAT_RTOL, atol=FLOAT_ATOL)


def test_mod_on_floats_without_fmod_is_rejected():
    a = f(3)
    model = single_op_model("Mod", {"a": a}, {"b": f(3, lo=0.5)}, ["a", "b"])
    with pytest.raises(ValueError, match=r"Mod node 'Mod_node'.*fmod=1"):
        run_ref(model, {"a": a})


@pytest.mark.parametrize("op,opset,attrs", [
    ("Reshape", 4, dict(shape=[2, -1, 5])),
    ("Slice", 9, dict(starts=[1, -3], ends=[3, 100], axes=[1, 3])),
    ("Upsample", 7, dict(scales=[1.0, 1.0, 2.0, 3.0], mode="nearest")),
])
def test_old_opset_attribute_forms(op, opset, attrs):
    """IR-3 era model-zoo CNNs give shapes, slices and scales as attributes."""
    x = X4
    model = single_op_model(op, {"x": x}, {}, ["x"], **attrs)
    model.opset_import[0].version = opset
    model.ir_version = 3
    np.testing.assert_array_equal(run_ref(model, {"x": x})[0], run_ort(model, {"x": x})[0])


X5 = f(2, 3, 5, 6, 4)
CASES_3D = [
    ("conv3d", "Conv", {"x": X5}, {"w": f(4, 3, 2, 3, 2), "b": f(4)}, ["x", "w", "b"],
     dict(pads=[1, 0, 1, 0, 1, 0], strides=[2, 1, 1], dilations=[1, 1, 2])),
    ("conv3d_groups", "Conv", {"x": f(1, 4, 4, 4, 4)}, {"w": f(4, 2, 3, 3, 3)}, ["x", "w"],
     dict(group=2, auto_pad="SAME_UPPER")),
    ("maxpool3d", "MaxPool", {"x": X5}, {}, ["x"],
     dict(kernel_shape=[2, 3, 2], strides=[2, 2, 1], pads=[0, 1, 1, 1, 1, 0], ceil_mode=1)),
    ("avgpool3d", "AveragePool", {"x": X5}, {}, ["x"],
     dict(kernel_shape=[3, 2, 2], strides=[1, 2, 2], pads=[1, 0, 1, 1, 1, 0])),
    ("avgpool3d_incl", "AveragePool", {"x": X5}, {}, ["x"],
     dict(kernel_shape=[3, 1, 1], pads=[1, 0, 0, 1, 0, 0], count_include_pad=1)),
]


@pytest.mark.parametrize("case", CASES_3D, ids=[c[0] for c in CASES_3D])
def test_3d_conv_and_pool_match_onnxruntime(case):
    """3-D windows: video nets, and PyTorch's LocalResponseNorm export (Pad → AveragePool
    over (channels, 1, 1) of an unsqueezed 5-D tensor)."""
    _, op, inputs, consts, order, attrs = case
    model = single_op_model(op, inputs, consts, order, **attrs)
    ours, theirs = run_ref(model, inputs)[0], run_ort(model, inputs)[0]
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=FLOAT_RTOL, atol=1e-5)
