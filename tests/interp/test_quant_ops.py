"""QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear vs onnx.reference (the ONNX spec's
executable form) and onnxruntime, on edge cases: ties, saturation, negative zero points,
int4 / int16, per-axis and blocked scales. Exact equality everywhere: these are pure ONNX
semantics with no implementation freedom."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx.reference import ReferenceEvaluator
from single_op import run_ort, run_ref, single_op_model

# (numpy dtype of the zero point, qmin, qmax)
TYPES = {
    "uint8": (np.uint8, 0, 255), "int8": (np.int8, -128, 127),
    "uint16": (np.uint16, 0, 65535), "int16": (np.int16, -32768, 32767),
    "int4": (ml_dtypes.int4, -8, 7), "uint4": (ml_dtypes.uint4, 0, 15),
}


def edge_inputs(scale: float, zp: int, qmin: int, qmax: int, n: int = 64) -> np.ndarray:
    """Values on exact .5 ties, just beside them, far beyond the range, ±0, plus random."""
    k = np.arange(qmin - zp - 3, qmax - zp + 3, max(1, (qmax - qmin) // 40))
    ties = ((k + 0.5) * scale).astype(np.float32)
    near = np.nextafter(ties, np.float32(np.inf))
    big = np.array([1e30, -1e30, 3.4e38, -3.4e38, np.inf, -np.inf, np.nan, 0.0, -0.0],
                   np.float32)
    rnd = np.random.default_rng(0).normal(0, scale * (qmax - qmin) / 3, n).astype(np.float32)
    return np.concatenate([ties, near, big, rnd]).astype(np.float32)


def reference(model, feeds):
    return ReferenceEvaluator(model).run(None, feeds)


@pytest.mark.parametrize("tname", list(TYPES))
@pytest.mark.parametrize("zp_kind", ["zero", "low", "high"])
def test_quantize_per_tensor_edges(tname, zp_kind):
    dtype, qmin, qmax = TYPES[tname]
    zp = {"zero": 0 if qmin < 0 else (qmin + qmax + 1) // 2, "low": qmin + 1, "high": qmax - 2}[
        zp_kind]  # "low" is a negative zero point for signed types
    scale = np.float32(0.0371)
    x = edge_inputs(float(scale), zp, qmin, qmax)
    model = single_op_model("QuantizeLinear", {"x": x}, {"s": scale, "z": np.array(zp, dtype)},
                            ["x", "s", "z"])
    ours = run_ref(model, {"x": x})[0]
    assert ours.dtype == np.dtype(dtype)
    # onnx.reference casts x / scale to int32 before saturating, so values beyond int32 (and
    # NaN) wrap there; onnxruntime saturates them (and maps NaN to qmin), as we do.
    fits = np.abs(x.astype(np.float64) / float(scale)) < 2**31
    np.testing.assert_array_equal(ours.astype(np.int32)[fits],
                                  reference(model, {"x": x})[0].astype(np.int32)[fits])
    if tname in ("uint8", "int8", "uint16", "int16"):
        np.testing.assert_array_equal(ours, run_ort(model, {"x": x})[0])


@pytest.mark.parametrize("tname", list(TYPES))
def test_dequantize_per_axis(tname):
    dtype, qmin, qmax = TYPES[tname]
    rng = np.random.default_rng(1)
    q = rng.integers(qmin, qmax + 1, (3, 5, 4)).astype(dtype)
    scale = rng.uniform(0.001, 0.2, 5).astype(np.float32)
    zp = rng.integers(qmin, qmax + 1, 5).astype(dtype)
    model = single_op_model("DequantizeLinear", {}, {"q": q, "s": scale, "z": zp},
                            ["q", "s", "z"], axis=1)
    ours = run_ref(model, {})[0]
    np.testing.assert_array_equal(ours, reference(model, {})[0])
    if tname in ("uint8", "int8", "int16", "uint16"):
        np.testing.assert_array_equal(ours, run_ort(model, {})[0])


@pytest.mark.parametrize("tname", ["int8", "int4", "uint4", "int16"])
@pytest.mark.parametrize("block", [2, 3, 4])
def test_blocked_quantize_dequantize(tname, block):
    dtype, qmin, qmax = TYPES[tname]
    rng = np.random.default_rng(block)
    x = rng.normal(0, 1, (4, 10)).astype(np.float32)
    blocks = -(-10 // block)
    scale = rng.uniform(0.05, 0.3, (4, blocks)).astype(np.float32)
    zp = rng.integers(qmin, qmax + 1, (4, blocks)).astype(dtype)
    q_model = single_op_model("QuantizeLinear", {"x": x}, {"s": scale, "z": zp}, ["x", "s", "z"],
                              axis=1, block_size=block)
    q_ours = run_ref(q_model, {"x": x})[0]
    np.testing.assert_array_equal(q_ours.astype(np.int32),
                                  reference(q_model, {"x": x})[0].astype(np.int32))
    dq_model = single_op_model("DequantizeLinear", {}, {"q": q_ours, "s": scale, "z": zp},
                               ["q", "s", "z"], axis=1, block_size=block)
    np.testing.assert_array_equal(run_ref(dq_model, {})[0], reference(dq_model, {})[0])


def test_quantize_per_axis_negative_axis_int4():
    rng = np.random.default_rng(7)
    x = rng.normal(0, 2, (2, 3, 6)).astype(np.float32)
    scale = rng.uniform(0.1, 0.5, 6).astype(np.float32)
    zp = np.array([-8, -3, 0, 2, 7, 1], dtype=ml_dtypes.int4)
    model = single_op_model("QuantizeLinear", {"x": x}, {"s": scale, "z": zp}, ["x", "s", "z"],
                            axis=-1)
    np.testing.assert_array_equal(run_ref(model, {"x": x})[0].astype(np.int32),
                                  reference(model, {"x": x})[0].astype(np.int32))


def test_quantize_without_zero_point_is_uint8():
    x = np.array([-1.0, 0.2, 300.0, 1.5], np.float32)
    model = single_op_model("QuantizeLinear", {"x": x}, {"s": np.float32(1.0)}, ["x", "s"])
    out = run_ref(model, {"x": x})[0]
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, run_ort(model, {"x": x})[0])


def test_dequantize_int32_bias():
    q = np.array([-(2**31), -5, 0, 7, 2**31 - 1], np.int32)
    model = single_op_model("DequantizeLinear", {}, {"q": q, "s": np.float32(1e-4)}, ["q", "s"])
    np.testing.assert_array_equal(run_ref(model, {})[0], run_ort(model, {})[0])


@pytest.mark.parametrize("case", ["mixed", "positive", "negative", "zeros", "wide"])
def test_dynamic_quantize_linear(case):
    rng = np.random.default_rng(11)
    x = {"mixed": rng.normal(0, 3, (5, 7)), "positive": rng.uniform(0.5, 4, (5, 7)),
         "negative": -rng.uniform(0.5, 4, (5, 7)), "zeros": np.zeros((5, 7)),
         "wide": rng.normal(0, 1e4, (5, 7))}[case].astype(np.float32)
    model = single_op_model("DynamicQuantizeLinear", {"x": x}, {}, ["x"], n_outputs=3)
    ours = run_ref(model, {"x": x})
    theirs = run_ort(model, {"x": x})
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)
    spec = reference(model, {"x": x})
    if case != "zeros":  # spec divides 0/0 for an all-zero input; ORT and we use scale 1
        for a, b in zip(ours, spec, strict=True):
            np.testing.assert_array_equal(a, b)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), tname=st.sampled_from(["uint8", "int8", "int16"]),
       per_axis=st.booleans())
def test_quantize_dequantize_random_vs_ort(seed, tname, per_axis):
    dtype, qmin, qmax = TYPES[tname]
    rng = np.random.default_rng(seed)
    shape = tuple(int(d) for d in rng.integers(1, 7, 3))
    axis = int(rng.integers(-3, 3))
    n = shape[axis] if per_axis else 1
    scale = rng.uniform(1e-4, 0.5, n if per_axis else ()).astype(np.float32)
    zp = rng.integers(qmin, qmax + 1, n if per_axis else ()).astype(dtype)
    x = (rng.normal(0, 1, shape) * float(np.max(scale)) * (qmax - qmin) / 4).astype(np.float32)
    attrs = {"axis": axis} if per_axis else {}
    q_model = single_op_model("QuantizeLinear", {"x": x}, {"s": scale, "z": zp},
                              ["x", "s", "z"], **attrs)
    q = run_ref(q_model, {"x": x})[0]
    np.testing.assert_array_equal(q, run_ort(q_model, {"x": x})[0])
    dq_model = single_op_model("DequantizeLinear", {"q": q}, {"s": scale, "z": zp},
                               ["q", "s", "z"], **attrs)
    np.testing.assert_array_equal(run_ref(dq_model, {"q": q})[0], run_ort(dq_model, {"q": q})[0])
