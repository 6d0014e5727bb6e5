"""The reference executor's SPLIT, SPLIT_V, TRANSPOSE_CONV and int8 → int8 QUANTIZE kernels vs
LiteRT, one op at a time (single-op models written by our flatbuffer writer, random data).

Oracle: LiteRT (``ai_edge_litert``), builtin kernels and XNNPACK. Tolerance: 0 for the
integer ops (they copy or requantize integers); float TRANSPOSE_CONV within float32
summation-order rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from edgequant.export.tflite.builder import Quant, TFLiteBuilder
from edgequant.export.tflite.convert import OP, OPT
from edgequant.export.tflite.flatbuffer_walk import InvalidModelError
from edgequant.interp.tflite.reference import ReferenceInterpreter
from edgequant.runtime.litert import LiteRTRunner

#: Float TRANSPOSE_CONV: float64 reference vs LiteRT's float32 sums of ≤ 3·3·5 products.
FLOAT_ATOL = 1e-5


def _split_model(rng, dtype, shape, axis: int, sizes: list[int] | None, n: int) -> tuple:
    """SPLIT (``sizes`` None: ``n`` equal parts) or SPLIT_V (``sizes``, may hold one −1)."""
    b = TFLiteBuilder()
    q = None if dtype == np.float32 else Quant.of(np.float32(rng.uniform(0.01, 0.1)),
                                                  int(rng.integers(-9, 9)) if dtype == np.int8
                                                  else 0)
    x = b.add_tensor("x", shape, dtype, quant=q)
    d = shape[axis]
    real = [d // n] * n if sizes is None else [
        d - (sum(sizes) + 1) if s == -1 else s for s in sizes]
    outs = []
    for k, size in enumerate(real):
        oshape = list(shape)
        oshape[axis] = size
        outs.append(b.add_tensor(f"y{k}", tuple(oshape), dtype, quant=q))
    ax = b.add_tensor("axis", (), np.int32, np.array(axis, np.int32))
    if sizes is None:
        opt = schema.SplitOptionsT()
        opt.numSplits = n
        b.add_op(OP.SPLIT, [ax, x], outs, OPT.SplitOptions, opt)
    else:
        opt = schema.SplitVOptionsT()
        opt.numSplits = len(sizes)
        st = b.add_tensor("sizes", (len(sizes),), np.int32, np.array(sizes, np.int32))
        b.add_op(OP.SPLIT_V, [x, st, ax], outs, OPT.SplitVOptions, opt)
    b.inputs, b.outputs = [x], outs
    if dtype == np.float32:
        data = rng.standard_normal(shape).astype(np.float32)
    else:
        info = np.iinfo(dtype)
        data = rng.integers(info.min, info.max + 1, shape).astype(dtype)
    return b.finish(), {"x": data}


SPLIT_CASES = {
    "split_int8_last": (np.int8, (1, 4, 6, 8), 3, None, 4),
    "split_int16_axis1": (np.int16, (1, 6, 5, 3), 1, None, 3),
    "split_v_int8_rest": (np.int8, (2, 7, 5), 1, [2, -1, 1], 3),
    "split_v_int16": (np.int16, (1, 10, 4), 1, [1, 6, 3], 3),
    "split_v_float": (np.float32, (1, 5, 9), 2, [4, 5], 2),
}


@pytest.mark.parametrize("xnnpack", [False, True], ids=["builtin", "xnnpack"])
@pytest.mark.parametrize("case", sorted(SPLIT_CASES))
def test_split_matches_litert(case, xnnpack, tmp_path):
    data, feeds = _split_model(np.random.default_rng(0), *SPLIT_CASES[case])
    path = tmp_path / f"{case}.tflite"
    path.write_bytes(data)
    want = ReferenceInterpreter(data).run(feeds)
    got = LiteRTRunner(path, xnnpack=xnnpack).run(feeds, raw=True)
    assert len(got) == len(want) == len(SPLIT_CASES[case][3] or range(SPLIT_CASES[case][4]))
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)


def _requantize_model(rng, n: int) -> tuple:
    """int8 → int8 QUANTIZE of ``n`` values, scale ratio drawn below 0.5, around 1 and above."""
    b = TFLiteBuilder()
    sx = np.float32(rng.uniform(0.005, 0.05))
    ratio = rng.choice([rng.uniform(0.05, 0.5), rng.uniform(0.5, 2.0), rng.uniform(2.0, 40.0)])
    sy = np.float32(sx / ratio)
    x = b.add_tensor("x", (1, n), np.int8, quant=Quant.of(sx, int(rng.integers(-30, 30))))
    y = b.add_tensor("y", (1, n), np.int8, quant=Quant.of(sy, int(rng.integers(-30, 30))))
    b.add_op(OP.QUANTIZE, [x], [y])
    b.inputs, b.outputs = [x], [y]
    return b.finish(), {"x": rng.integers(-128, 128, (1, n)).astype(np.int8)}


@pytest.mark.parametrize("xnnpack", [False, True], ids=["builtin", "xnnpack"])
def test_int8_requantize_matches_litert_at_every_size_and_ratio(xnnpack, tmp_path):
    """LiteRT's builtin Requantize<int8, int8> rounds ties up in its 16-wide blocks and away
    from zero in the tail; sizes 1..63 cover both (the old gemmlowp-only reference failed
    here on ratios below 0.5)."""
    rng = np.random.default_rng(0)
    path = tmp_path / "requant.tflite"
    for trial in range(120):
        data, feeds = _requantize_model(rng, int(rng.integers(1, 64)))
        path.write_bytes(data)
        want = ReferenceInterpreter(data, "xnnpack" if xnnpack else "builtin").run(feeds)[0]
        got = LiteRTRunner(path, xnnpack=xnnpack).run(feeds, raw=True)[0]
        np.testing.assert_array_equal(got, want, err_msg=f"trial {trial}")


def _transpose_conv_model(rng, xhw, k, s, padding: str, out_hw, bias=True, act=0) -> tuple:
    b = TFLiteBuilder()
    cin, cout = 3, 5
    x = b.add_tensor("x", (1, *xhw, cin), np.float32)
    w = b.add_tensor("w", (cout, k, k, cin), np.float32,
                     rng.standard_normal((cout, k, k, cin)).astype(np.float32))
    shape = b.add_tensor("shape", (4,), np.int32, np.array([1, *out_hw, cout], np.int32))
    ins = [shape, w, x]
    if bias:
        ins.append(b.add_tensor("b", (cout,), np.float32,
                                rng.standard_normal(cout).astype(np.float32)))
    y = b.add_tensor("y", (1, *out_hw, cout), np.float32)
    opt = schema.TransposeConvOptionsT()
    opt.padding = getattr(schema.Padding, padding)
    opt.strideH = opt.strideW = s
    opt.fusedActivationFunction = act
    b.add_op(OP.TRANSPOSE_CONV, ins, [y], OPT.TransposeConvOptions, opt)
    b.inputs, b.outputs = [x], [y]
    return b.finish(), {"x": rng.standard_normal((1, *xhw, cin)).astype(np.float32)}


TRANSPOSE_CONV_CASES = {  # (input H, W), kernel, stride, padding, output (H, W), bias, act
    "same_k3s2": ((4, 5), 3, 2, "SAME", (8, 10), True, 0),
    "same_k4s2_odd_out": ((4, 5), 4, 2, "SAME", (7, 9), True, 0),
    "valid_k3s2": ((4, 5), 3, 2, "VALID", (9, 11), True, 0),
    "valid_k3s2_wider": ((4, 5), 3, 2, "VALID", (10, 12), False, 0),
    "same_k3s1_relu": ((6, 6), 3, 1, "SAME", (6, 6), True,
                       schema.ActivationFunctionType.RELU),
}


@pytest.mark.parametrize("xnnpack", [False, True], ids=["builtin", "xnnpack"])
@pytest.mark.parametrize("case", sorted(TRANSPOSE_CONV_CASES))
def test_transpose_conv_matches_litert(case, xnnpack, tmp_path):
    data, feeds = _transpose_conv_model(np.random.default_rng(1), *TRANSPOSE_CONV_CASES[case])
    path = tmp_path / f"{case}.tflite"
    path.write_bytes(data)
    want = ReferenceInterpreter(data).run(feeds)[0]
    got = LiteRTRunner(path, xnnpack=xnnpack).run(feeds)[0]
    np.testing.assert_allclose(got, want, atol=FLOAT_ATOL, rtol=FLOAT_ATOL)


def test_transpose_conv_inconsistent_geometry_is_refused_like_litert(tmp_path):
    """An output size that implies another input size: LiteRT refuses to prepare it, and so
    does the reference (naming the operator) instead of computing something."""
    data, feeds = _transpose_conv_model(np.random.default_rng(1), (4, 5), 3, 2, "VALID",
                                        (8, 10))  # VALID of 8 rows implies 3 input rows
    path = tmp_path / "bad.tflite"
    path.write_bytes(data)
    with pytest.raises(InvalidModelError, match="TRANSPOSE_CONV"):
        LiteRTRunner(path, xnnpack=False)
    with pytest.raises(InvalidModelError, match=r"TRANSPOSE_CONV.*implies input 3x4"):
        ReferenceInterpreter(data).run(feeds)
