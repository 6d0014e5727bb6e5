"""The reference executor's kernels for the ops of transformer ``.tflite`` graphs vs LiteRT,
one op at a time, on both kernel paths (builtin and XNNPACK).

Oracle: LiteRT (``ai_edge_litert``) running single-op models written by our flatbuffer writer
with random data and qparams. Integer outputs (and bool / copied data): 0 difference. Float
outputs: within :data:`FLOAT_RTOL` (the reference's float kernels are a float oracle, not
LiteRT's instruction order).
"""

from __future__ import annotations

import numpy as np
import pytest
import tflite_single_op as S
from ai_edge_litert import schema_py_generated as schema

from edgequant.errors import UnsupportedOpError
from edgequant.export.tflite.builder import Quant
from edgequant.export.tflite.convert import OP, OPT
from edgequant.interp.tflite.reference import ReferenceInterpreter
from edgequant.runtime.litert import LiteRTRunner

#: Seeds per op: each draws new data and qparams.
SEEDS = 3
#: Float outputs: relative difference allowed against the output's largest magnitude (a few
#: float32 ulps: LiteRT sums / evaluates erfc and the hybrid FC's float scaling in its own order).
FLOAT_RTOL = 1e-5

F32, I8, I16, I32, I64, B = np.float32, np.int8, np.int16, np.int32, np.int64, np.bool_


def _q(rng, lo=0.01, hi=0.05, zp=True) -> Quant:
    return Quant.of(np.float32(rng.uniform(lo, hi)), int(rng.integers(-20, 20)) if zp else 0)


def _i8(rng, shape):
    return rng.integers(-128, 128, shape).astype(I8)


def _opts(cls, **kw):
    o = cls()
    for k, v in kw.items():
        setattr(o, k, v)
    return o


def gather_int8(rng):
    table = _i8(rng, (40, 16))
    ids = rng.integers(0, 40, (2, 8)).astype(I64)
    q = Quant.of(np.float32(0.02), 3)
    return S.one_op(OP.GATHER, [("table", (40, 16), I8, q, table, None),
                                ("ids", (2, 8), I64, None, None, ids)],
                    ((2, 8, 16), I8, q), OPT.GatherOptions, _opts(schema.GatherOptionsT, axis=0))


def dequantize_per_channel(rng):
    """An int8 table gathered per channel (axis 1 kept) then DEQUANTIZEd per channel."""
    x = _i8(rng, (3, 5, 6))
    q = Quant.of(rng.uniform(0.01, 0.05, 6).astype(F32), rng.integers(-5, 5, 6), axis=2)
    return S.one_op(OP.DEQUANTIZE, [("x", (3, 5, 6), I8, q, None, x)], ((3, 5, 6), F32, None))


def gather_float_axis1(rng):
    x = rng.normal(size=(3, 10, 4)).astype(F32)
    return S.one_op(OP.GATHER, [("x", (3, 10, 4), F32, None, None, x),
                                ("i", (5,), I32, None, np.array([9, 0, 3, 3, 1], I32), None)],
                    ((3, 5, 4), F32, None), OPT.GatherOptions,
                    _opts(schema.GatherOptionsT, axis=1))


def gather_nd(rng):
    x = rng.normal(size=(4, 5, 3)).astype(F32)
    idx = np.array([[0, 1], [3, 4], [2, 2]], I32)
    return S.one_op(OP.GATHER_ND, [("x", (4, 5, 3), F32, None, None, x),
                                   ("i", (3, 2), I32, None, idx, None)], ((3, 3), F32, None))


def _cast(src, dst, feed):
    def build(rng):
        x = feed(rng)
        return S.one_op(OP.CAST, [("x", x.shape, src, None, None, x)], (x.shape, dst, None))
    return build


def select_v2(dtype):
    def build(rng):
        cond = rng.integers(0, 2, (1, 8)).astype(B)
        if dtype == I8:
            q = _q(rng)
            a, b = _i8(rng, (2, 3, 8)), _i8(rng, (2, 3, 8))
        else:
            q, a, b = None, rng.normal(size=(2, 3, 8)).astype(F32), np.float32([-1e9])
        return S.one_op(OP.SELECT_V2, [
            ("c", (1, 8), B, None, None, cond), ("a", (2, 3, 8), dtype, q, None, a),
            ("b", b.shape, dtype, q, b if dtype == F32 else None,
             None if dtype == F32 else b)], ((2, 3, 8), dtype, q), OPT.SelectV2Options,
            schema.SelectV2OptionsT())
    return build


def broadcast_to(rng):
    x = rng.normal(size=(2, 1, 4)).astype(F32)
    return S.one_op(OP.BROADCAST_TO, [("x", (2, 1, 4), F32, None, None, x),
                                      ("s", (3,), I32, None, np.array([2, 3, 4], I32), None)],
                    ((2, 3, 4), F32, None), version=2)


def strided_slice(rng):
    x = _i8(rng, (2, 7, 6))
    q = _q(rng)
    consts = [("begin", [0, 1, 5]), ("end", [2, 6, 0]), ("strides", [1, 2, -2])]
    return S.one_op(OP.STRIDED_SLICE, [("x", (2, 7, 6), I8, q, None, x)] + [
        (n, (3,), I32, None, np.array(v, I32), None) for n, v in consts],
        ((2, 3, 3), I8, q), OPT.StridedSliceOptions, schema.StridedSliceOptionsT())


def compare(code, dtype):
    def build(rng):
        if dtype == F32:
            a = rng.normal(size=(2, 6)).astype(F32)
            b = np.where(rng.random((2, 6)) < 0.3, a, rng.normal(size=(2, 6))).astype(F32)
            qa = qb = None
        elif dtype == I64:
            a, b = rng.integers(-3, 3, (2, 6)).astype(I64), rng.integers(-3, 3, (2, 6)).astype(I64)
            qa = qb = None
        else:  # quantized int8, different qparams: LiteRT rescales both sides
            a, b, qa, qb = _i8(rng, (2, 6)), _i8(rng, (2, 6)), _q(rng), _q(rng)
        return S.one_op(code, [("a", (2, 6), dtype, qa, None, a),
                               ("b", (2, 6), dtype, qb, None, b)], ((2, 6), B, None))
    return build


def logical(code, n):
    def build(rng):
        ins = [(f"x{k}", (3, 5), B, None, None, rng.integers(0, 2, (3, 5)).astype(B))
               for k in range(n)]
        return S.one_op(code, ins, ((3, 5), B, None))
    return build


def float_unary(code, positive=False):
    def build(rng):
        x = rng.normal(size=(4, 33)).astype(F32)
        x = np.abs(x) + np.float32(0.01) if positive else x
        return S.one_op(code, [("x", (4, 33), F32, None, None, x)], ((4, 33), F32, None))
    return build


def power(rng):
    x = (np.abs(rng.normal(size=(4, 9))) + 0.1).astype(F32)
    return S.one_op(OP.POW, [("x", (4, 9), F32, None, None, x),
                             ("e", (1,), F32, None, np.float32([3.0]), None)],
                    ((4, 9), F32, None))


def gelu(dtype, approximate):
    def build(rng):
        opt = _opts(schema.GeluOptionsT, approximate=approximate)
        if dtype == F32:
            x = (3 * rng.normal(size=(4, 64))).astype(F32)
            return S.one_op(OP.GELU, [("x", (4, 64), F32, None, None, x)], ((4, 64), F32, None),
                            OPT.GeluOptions, opt)
        x = _i8(rng, (4, 64))
        return S.one_op(OP.GELU, [("x", (4, 64), I8, _q(rng, 0.02, 0.06), None, x)],
                        ((4, 64), I8, _q(rng, 0.01, 0.03)), OPT.GeluOptions, opt)
    return build


def reduce(code, dtype, axes=(2,), keep=True):
    def build(rng):
        shape = (2, 5, 24)
        out = tuple(1 if i in axes else d for i, d in enumerate(shape)) if keep else \
            tuple(d for i, d in enumerate(shape) if i not in axes)
        opt = _opts(schema.ReducerOptionsT, keepDims=keep)
        ax = ("axes", (len(axes),), I32, None, np.array(axes, I32), None)
        if dtype == F32:
            x = rng.normal(size=shape).astype(F32)
            return S.one_op(code, [("x", shape, F32, None, None, x), ax], (out, F32, None),
                            OPT.ReducerOptions, opt)
        qi = _q(rng)
        qo = qi if code != OP.SUM else _q(rng, 0.1, 0.4)
        return S.one_op(code, [("x", shape, I8, qi, None, _i8(rng, shape)), ax], (out, I8, qo),
                        OPT.ReducerOptions, opt)
    return build


def hybrid_fc(asymmetric, per_channel=True):
    def build(rng):
        rows, k, o = 8, 32, 16
        ws = rng.uniform(0.002, 0.02, o if per_channel else 1).astype(F32)
        x = (rng.normal(size=(1, rows, k)) + 0.3).astype(F32)
        opt = _opts(schema.FullyConnectedOptionsT, keepNumDims=True,
                    asymmetricQuantizeInputs=asymmetric)
        return S.one_op(OP.FULLY_CONNECTED, [
            ("x", (1, rows, k), F32, None, None, x),
            ("w", (o, k), I8, Quant.of(ws, 0), rng.integers(-127, 128, (o, k)).astype(I8), None),
            ("b", (o,), F32, None, rng.normal(size=o).astype(F32), None)],
            ((1, rows, o), F32, None), OPT.FullyConnectedOptions, opt)
    return build


def fc_3d_int8(rng):
    rows, k, o = 8, 48, 24
    xq = _q(rng)
    ws = rng.uniform(0.002, 0.02, o).astype(F32)
    bs = (np.float32(xq.scale[0]) * ws).astype(F32)
    opt = _opts(schema.FullyConnectedOptionsT, keepNumDims=True)
    return S.one_op(OP.FULLY_CONNECTED, [
        ("x", (2, rows, k), I8, xq, None, _i8(rng, (2, rows, k))),
        ("w", (o, k), I8, Quant.of(ws, 0), rng.integers(-127, 128, (o, k)).astype(I8), None),
        ("b", (o,), I32, Quant.of(bs, 0), rng.integers(-3000, 3000, o).astype(I32), None)],
        ((2, rows, o), I8, _q(rng, 0.05, 0.3)), OPT.FullyConnectedOptions, opt)


def batch_matmul(dtype, b_zero_point, adj_y=False, adj_x=False):
    def build(rng):
        m, k, n = 24, 40, 24
        def q(lo=0.005, hi=0.05, zp=True):
            return Quant.of(np.float32(rng.uniform(lo, hi)),
                            int(rng.integers(-20, 20)) if zp and dtype == I8 else 0)
        info = np.iinfo(dtype)
        a = rng.integers(info.min, info.max + 1, (1, 2, k, m) if adj_x else (1, 2, m, k)
                         ).astype(dtype)
        bshape = (1, 2, n, k) if adj_y else (1, 2, k, n)
        b = rng.integers(info.min, info.max + 1, bshape).astype(dtype)
        qb = Quant.of(np.float32(rng.uniform(0.005, 0.05)),
                      0 if not b_zero_point or dtype == I16 else int(rng.integers(1, 20)))
        out_scales = (0.1, 0.4) if dtype == I8 else (40.0, 120.0)
        opt = _opts(schema.BatchMatMulOptionsT, adjX=adj_x, adjY=adj_y)
        return S.one_op(OP.BATCH_MATMUL, [("a", a.shape, dtype, q(), None, a),
                                          ("b", bshape, dtype, qb, None, b)],
                        ((1, 2, m, n), dtype, q(*out_scales)), OPT.BatchMatMulOptions, opt)
    return build


CASES = {
    "gather_int8_table": gather_int8,
    "gather_float_axis1": gather_float_axis1,
    "gather_nd": gather_nd,
    "dequantize_per_channel": dequantize_per_channel,
    "cast_int64_float": _cast(I64, F32, lambda r: r.integers(-9, 9, (2, 8)).astype(I64)),
    "cast_int8_float": _cast(I8, F32, lambda r: _i8(r, (2, 8))),
    "cast_float_int32": _cast(F32, I32, lambda r: (5 * r.normal(size=(2, 8))).astype(F32)),
    "cast_float_bool": _cast(F32, B, lambda r: r.integers(-1, 2, (2, 8)).astype(F32)),
    "select_v2_float": select_v2(F32),
    "select_v2_int8": select_v2(I8),
    "broadcast_to": broadcast_to,
    "strided_slice": strided_slice,
    "equal_float": compare(OP.EQUAL, F32),
    "not_equal_float": compare(OP.NOT_EQUAL, F32),
    "greater_int64": compare(OP.GREATER, I64),
    "greater_equal_float": compare(OP.GREATER_EQUAL, F32),
    "less_int8_quantized": compare(OP.LESS, I8),
    "less_equal_int8_quantized": compare(OP.LESS_EQUAL, I8),
    "logical_and": logical(OP.LOGICAL_AND, 2),
    "logical_or": logical(OP.LOGICAL_OR, 2),
    "logical_not": logical(OP.LOGICAL_NOT, 1),
    "sqrt": float_unary(OP.SQRT, positive=True),
    "rsqrt": float_unary(OP.RSQRT, positive=True),
    "neg": float_unary(OP.NEG),
    "pow": power,
    "gelu_float": gelu(F32, False),
    "gelu_float_tanh": gelu(F32, True),
    "gelu_int8": gelu(I8, False),
    "gelu_int8_tanh": gelu(I8, True),
    "sum_float": reduce(OP.SUM, F32),
    "sum_int8": reduce(OP.SUM, I8),
    "sum_int8_axis1_drop": reduce(OP.SUM, I8, axes=(1,), keep=False),
    "reduce_max_int8": reduce(OP.REDUCE_MAX, I8),
    "reduce_min_int8": reduce(OP.REDUCE_MIN, I8, axes=(1, 2)),
    "reduce_max_float": reduce(OP.REDUCE_MAX, F32),
    "hybrid_fc_asymmetric": hybrid_fc(True),
    "hybrid_fc_symmetric_per_tensor": hybrid_fc(False, per_channel=False),
    "fully_connected_3d_keep_dims": fc_3d_int8,
    "batch_matmul_int8_b_zp0": batch_matmul(I8, False),
    "batch_matmul_int8_adj_y": batch_matmul(I8, True, adj_y=True),
    "batch_matmul_int8_b_zp0_adj_y": batch_matmul(I8, False, adj_y=True),
    "batch_matmul_int16": batch_matmul(I16, False),
    "batch_matmul_int8_adj_x": batch_matmul(I8, True, adj_x=True),
    "batch_matmul_int16_adj_x_adj_y": batch_matmul(I16, False, adj_y=True, adj_x=True),
}


@pytest.mark.parametrize("xnnpack", [False, True], ids=["builtin", "xnnpack"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_transformer_op_matches_litert(case, xnnpack, tmp_path):
    path = tmp_path / f"{case}.tflite"
    for seed in range(SEEDS):
        data, feeds = CASES[case](np.random.default_rng(seed))
        path.write_bytes(data)
        expect = ReferenceInterpreter(data, "xnnpack" if xnnpack else "builtin").run(feeds)[0]
        got = LiteRTRunner(path, xnnpack=xnnpack).run(feeds, raw=True)[0]
        assert got.dtype == expect.dtype and got.shape == expect.shape
        if got.dtype.kind == "f":
            tol = FLOAT_RTOL * max(float(np.abs(got).max()), 1.0)
            np.testing.assert_allclose(expect, got, rtol=0, atol=tol, err_msg=f"seed {seed}")
            continue
        bad = np.argwhere(expect.astype(np.int64) != got.astype(np.int64))
        assert bad.size == 0, f"seed {seed}: {len(bad)} mismatches, first at {bad[0].tolist()}: " \
            f"LiteRT {got[tuple(bad[0])]} vs reference {expect[tuple(bad[0])]}"


def test_unsupported_op_names_operator_index_and_op():
    x = np.zeros((2, 3), F32)
    data, _ = S.one_op(OP.EXP, [("x", (2, 3), F32, None, None, x)], ((2, 3), F32, None))
    with pytest.raises(UnsupportedOpError, match=r"operator 0 is EXP, which is not implemented"):
        ReferenceInterpreter(data)


def test_negative_gather_index_is_a_clear_error():
    data, feeds = gather_int8(np.random.default_rng(0))
    feeds["ids"][0, 0] = -1
    with pytest.raises(Exception, match=r"operator 0 \(GATHER\).*index -1 is outside \[0, 40\)"):
        ReferenceInterpreter(data).run(feeds)


def test_every_op_the_exporter_writes_is_implemented():
    """Every ``OP.<NAME>`` the ``.tflite`` exporter's sources name runs in the reference."""
    import re
    from pathlib import Path

    from edgequant.export.tflite import convert
    from edgequant.interp.tflite.reference import _OPS

    written = set()
    for f in Path(convert.__file__).parent.glob("*.py"):
        written |= set(re.findall(r"\bOP\.([A-Z][A-Z0-9_]+)", f.read_text()))
    assert len(written) > 40, sorted(written)
    assert written - set(_OPS) == set()


def test_cli_verify_refuses_an_unsupported_op_by_index_and_name(tmp_path):
    from typer.testing import CliRunner

    from edgequant.cli import app

    x = np.zeros((2, 3), F32)
    data, feeds = S.one_op(OP.EXP, [("x", (2, 3), F32, None, None, x)], ((2, 3), F32, None))
    (tmp_path / "m.tflite").write_bytes(data)
    np.savez(tmp_path / "d.npz", **feeds)
    res = CliRunner().invoke(app, ["verify", str(tmp_path / "m.tflite"), "--data",
                                   str(tmp_path / "d.npz")])
    assert res.exit_code not in (0, None)
    assert "operator 0 is EXP, which is not implemented" in " ".join(res.output.split())
