"""com.microsoft quantized ops vs onnxruntime on hypothesis-randomized single-op models.

Measured: every value bit-identical (the MLAS kernels' float32 arithmetic, FMA use and lookup
tables are replicated); asserted with the constants of test_qlinear_vs_ort.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from single_op import run_ort, run_ref, single_op_model
from test_qlinear_vs_ort import assert_close_to_ort

MS = "com.microsoft"
EXAMPLES = 30
seeds = st.integers(0, 2**32 - 1)


def _q(rng, shape, signed):
    lo, hi = (-128, 128) if signed else (0, 256)
    return rng.integers(lo, hi, shape).astype(np.int8 if signed else np.uint8)


def _zp(rng, signed):
    return _q(rng, (), signed)[()]


def _run_both(model, feeds):
    return run_ref(model, feeds)[0], run_ort(model, feeds)[0]


@settings(max_examples=EXAMPLES, deadline=None)
@given(seed=seeds, signed=st.booleans(), op=st.sampled_from(["QLinearAdd", "QLinearMul"]),
       broadcast=st.sampled_from(["none", "channel", "vector", "scalar_b", "scalar_a",
                                  "rows"]))
def test_binary(seed, signed, op, broadcast):
    rng = np.random.default_rng(seed)
    shape = (2, 3, int(rng.integers(1, 40)), 5)
    b_shape = {"none": shape, "channel": (1, 3, 1, 1), "vector": (5,), "scalar_b": (),
               "scalar_a": shape, "rows": shape}[broadcast]
    a_shape = {"scalar_a": (), "rows": (2, 3, shape[2], 1)}.get(broadcast, shape)
    feeds = {"A": _q(rng, a_shape, signed), "B": _q(rng, b_shape, signed)}
    consts = dict(sa=np.float32(rng.uniform(0.005, 0.2)), za=_zp(rng, signed),
                  sb=np.float32(rng.uniform(0.005, 0.2)), zb=_zp(rng, signed),
                  sc=np.float32(rng.uniform(0.005, 0.3)), zc=_zp(rng, signed))
    model = single_op_model(op, feeds, consts, ["A", "sa", "za", "B", "sb", "zb", "sc", "zc"],
                            domain=MS)
    assert_close_to_ort(*_run_both(model, feeds))


@pytest.mark.parametrize("signed", [False, True])
def test_qlinear_add_exhaustive(signed):
    """Every (a, b) byte pair for several qparams: rounding ties are found, not sampled."""
    rng = np.random.default_rng(5)
    codes = np.arange(256, dtype=np.uint8).view(np.int8 if signed else np.uint8)
    a = np.repeat(codes, 256).reshape(256, 256)
    feeds = {"A": a, "B": a.T.copy()}
    for _ in range(8):
        consts = dict(sa=np.float32(rng.uniform(0.001, 0.1)), za=_zp(rng, signed),
                      sb=np.float32(rng.uniform(0.001, 0.1)), zb=_zp(rng, signed),
                      sc=np.float32(rng.uniform(0.001, 0.1)), zc=_zp(rng, signed))
        model = single_op_model("QLinearAdd", feeds, consts,
                                ["A", "sa", "za", "B", "sb", "zb", "sc", "zc"], domain=MS)
        assert_close_to_ort(*_run_both(model, feeds))


def _unary_consts(rng, signed, y_scale=None):
    return dict(xs=np.float32(rng.uniform(0.005, 0.2)), xz=_zp(rng, signed),
                ys=np.float32(y_scale if y_scale is not None else rng.uniform(0.002, 0.05)),
                yz=_zp(rng, signed))


@settings(max_examples=EXAMPLES, deadline=None)
@given(seed=seeds, signed=st.booleans(), op=st.sampled_from(["QLinearSigmoid",
                                                            "QLinearLeakyRelu"]))
def test_lookup_table_ops(seed, signed, op):
    rng = np.random.default_rng(seed)
    x = np.arange(256, dtype=np.uint8).view(np.int8 if signed else np.uint8).reshape(4, 64)
    attrs = {"alpha": float(rng.uniform(0.01, 0.5))} if op == "QLinearLeakyRelu" else {}
    model = single_op_model(op, {"x": x}, _unary_consts(rng, signed),
                            ["x", "xs", "xz", "ys", "yz"], domain=MS, **attrs)
    assert_close_to_ort(*_run_both(model, {"x": x}))


@settings(max_examples=EXAMPLES, deadline=None)
@given(seed=seeds, signed=st.booleans(), channels_last=st.booleans())
def test_qlinear_global_average_pool(seed, signed, channels_last):
    rng = np.random.default_rng(seed)
    shape = (2, int(rng.integers(1, 9)), int(rng.integers(1, 12)), int(rng.integers(1, 12)))
    x = _q(rng, shape, signed)
    consts = _unary_consts(rng, signed)
    consts["ys"] = np.float32(consts["xs"] * rng.uniform(0.3, 3.0))
    model = single_op_model("QLinearGlobalAveragePool", {"x": x}, consts,
                            ["x", "xs", "xz", "ys", "yz"], domain=MS,
                            channels_last=int(channels_last))
    assert_close_to_ort(*_run_both(model, {"x": x}))


@settings(max_examples=EXAMPLES, deadline=None)
@given(seed=seeds, signed=st.booleans(), include_pad=st.booleans(), ceil=st.booleans(),
       channels_last=st.booleans())
def test_qlinear_average_pool(seed, signed, include_pad, ceil, channels_last):
    rng = np.random.default_rng(seed)
    k = [int(rng.integers(1, 4)), int(rng.integers(1, 4))]
    shape = [2, 3, int(rng.integers(k[0] + 1, 12)), int(rng.integers(k[1] + 1, 12))]
    if channels_last:
        shape = [shape[0], shape[2], shape[3], shape[1]]
    x = _q(rng, shape, signed)
    consts = _unary_consts(rng, signed)
    consts["ys"] = np.float32(consts["xs"] * rng.uniform(0.5, 2.0))
    pads = [int(rng.integers(0, k[i % 2])) for i in range(4)]  # pads smaller than the kernel
    model = single_op_model("QLinearAveragePool", {"x": x}, consts,
                            ["x", "xs", "xz", "ys", "yz"], domain=MS, kernel_shape=k, pads=pads,
                            strides=[int(rng.integers(1, 3)), int(rng.integers(1, 3))],
                            count_include_pad=int(include_pad), ceil_mode=int(ceil),
                            channels_last=int(channels_last))
    assert_close_to_ort(*_run_both(model, {"x": x}))


@settings(max_examples=EXAMPLES, deadline=None)
@given(seed=seeds, signed=st.booleans(), axis=st.sampled_from([-1, 1, 0]),
       opset=st.sampled_from([13, 12]))
def test_qlinear_softmax(seed, signed, axis, opset):
    rng = np.random.default_rng(seed)
    x = _q(rng, (3, int(rng.integers(1, 30)), 4), signed)
    consts = _unary_consts(rng, signed, y_scale=1.0 / 256.0)
    consts["yz"] = np.int8(-128) if signed else np.uint8(0)
    model = single_op_model("QLinearSoftmax", {"x": x}, consts, ["x", "xs", "xz", "ys", "yz"],
                            domain=MS, axis=axis, opset=opset)
    assert_close_to_ort(*_run_both(model, {"x": x}))


@settings(max_examples=EXAMPLES, deadline=None)
@given(seed=seeds, signed=st.booleans(), n_inputs=st.integers(1, 4))
def test_qlinear_concat(seed, signed, n_inputs):
    rng = np.random.default_rng(seed)
    ys, yz = np.float32(rng.uniform(0.01, 0.1)), _zp(rng, signed)
    feeds, consts, order = {}, {"ys": ys, "yz": yz}, ["ys", "yz"]
    for i in range(n_inputs):
        feeds[f"x{i}"] = _q(rng, (2, int(rng.integers(1, 5)), 3, 3), signed)
        same = rng.random() < 0.3  # identical qparams: ORT copies instead of a table lookup
        consts[f"s{i}"] = ys if same else np.float32(rng.uniform(0.01, 0.1))
        consts[f"z{i}"] = yz if same else _zp(rng, signed)
        order += [f"x{i}", f"s{i}", f"z{i}"]
    model = single_op_model("QLinearConcat", feeds, consts, order, domain=MS, axis=1)
    assert_close_to_ort(*_run_both(model, feeds))


@pytest.mark.parametrize("signed", [False, True])
def test_maxpool_integer_exact(signed):
    rng = np.random.default_rng(3)
    x = _q(rng, (2, 3, 11, 9), signed)
    model = single_op_model("MaxPool", {"x": x}, {}, ["x"], kernel_shape=[3, 2], strides=[2, 2],
                            pads=[1, 0, 1, 1], ceil_mode=1)
    np.testing.assert_array_equal(*_run_both(model, {"x": x}))
