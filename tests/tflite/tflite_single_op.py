"""Single-operator ``.tflite`` models built directly with the flatbuffer writer.

Each builder returns ``(bytes, feeds)``: one TFLite op with random integer data and qparams,
so the reference executor's kernel can be checked against LiteRT op by op.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgequant.export.tflite.builder import Quant, TFLiteBuilder
from edgequant.export.tflite.convert import OP, OPT


def _q(rng, lo=0.005, hi=0.05, zp=True, dtype=np.int8) -> Quant:
    z = int(rng.integers(-20, 20)) if zp and dtype == np.int8 else 0
    return Quant.of(np.float32(rng.uniform(lo, hi)), z)


def _finish(b: TFLiteBuilder, ins: list[int], outs: list[int]) -> bytes:
    b.inputs, b.outputs = ins, outs
    return b.finish()


def _rand(rng, shape, dtype=np.int8):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, shape).astype(dtype)


def conv(rng, depthwise=False, padding="SAME", stride=1, act=0, cin=8, mult=1, k=3,
         dtype=np.int8):
    """CONV_2D (OHWI) or DEPTHWISE_CONV_2D (1HWC), per-channel int8 weights, int32 bias."""
    b = TFLiteBuilder()
    n, h, w = 1, 9, 10
    cout = cin * mult if depthwise else 16
    xq = _q(rng, dtype=dtype)
    wshape = (1, k, k, cout) if depthwise else (cout, k, k, cin)
    wv = rng.integers(-127, 128, wshape).astype(np.int8)
    ws = rng.uniform(0.002, 0.02, cout).astype(np.float32)
    bias_dtype = np.int64 if dtype == np.int16 else np.int32
    bs = (np.float32(xq.scale[0]) * ws).astype(np.float32)
    bv = rng.integers(-3000, 3000, cout).astype(bias_dtype)
    yq = _q(rng, 0.05, 0.3, dtype=dtype)
    x = b.add_tensor("x", (n, h, w, cin), dtype, quant=xq)
    wt = b.add_tensor("w", wshape, np.int8, wv, Quant.of(ws, 0, 3 if depthwise else 0))
    bt = b.add_tensor("b", (cout,), bias_dtype, bv, Quant.of(bs, 0))
    oh = -(-h // stride) if padding == "SAME" else (h - k) // stride + 1
    ow = -(-w // stride) if padding == "SAME" else (w - k) // stride + 1
    y = b.add_tensor("y", (n, oh, ow, cout), dtype, quant=yq)
    if depthwise:
        opt = schema.DepthwiseConv2DOptionsT()
        opt.depthMultiplier = mult
        code, ot = OP.DEPTHWISE_CONV_2D, OPT.DepthwiseConv2DOptions
    else:
        opt = schema.Conv2DOptionsT()
        code, ot = OP.CONV_2D, OPT.Conv2DOptions
    opt.padding = getattr(schema.Padding, padding)
    opt.strideH = opt.strideW = stride
    opt.fusedActivationFunction = act
    b.add_op(code, [x, wt, bt], [y], ot, opt)
    return _finish(b, [x], [y]), {"x": _rand(rng, (n, h, w, cin), dtype)}


def fully_connected(rng, act=0, k=64, o=10, per_channel=True, dtype=np.int8, rows=1,
                    out_scales=(0.05, 0.3)):
    """FULLY_CONNECTED (O, K) int8 weights, int32 bias (int64 for int16 activations);
    ``rows`` input rows, output scale drawn from ``out_scales``."""
    b = TFLiteBuilder()
    xq = _q(rng, dtype=dtype)
    bias_dtype = np.int64 if dtype == np.int16 else np.int32
    ws = rng.uniform(0.002, 0.02, o if per_channel else 1).astype(np.float32)
    wv = rng.integers(-127, 128, (o, k)).astype(np.int8)
    bs = (np.float32(xq.scale[0]) * ws).astype(np.float32)
    x = b.add_tensor("x", (rows, k), dtype, quant=xq)
    wt = b.add_tensor("w", (o, k), np.int8, wv, Quant.of(ws, 0))
    bt = b.add_tensor("b", (o,), bias_dtype, rng.integers(-3000, 3000, o).astype(bias_dtype),
                      Quant.of(bs, 0))
    y = b.add_tensor("y", (rows, o), dtype, quant=_q(rng, *out_scales, dtype=dtype))
    opt = schema.FullyConnectedOptionsT()
    opt.fusedActivationFunction = act
    b.add_op(OP.FULLY_CONNECTED, [x, wt, bt], [y], OPT.FullyConnectedOptions, opt)
    return _finish(b, [x], [y]), {"x": _rand(rng, (rows, k), dtype)}


def binary(rng, code, act=0, shape=(1, 5, 6, 8), bshape=None, dtype=np.int8):
    """ADD / SUB / MUL of two int8 / int16 activations (``bshape`` broadcasts the second)."""
    b = TFLiteBuilder()
    bshape = bshape or shape
    a = b.add_tensor("a", shape, dtype, quant=_q(rng, dtype=dtype))
    c = b.add_tensor("b", bshape, dtype, quant=_q(rng, dtype=dtype))
    y = b.add_tensor("y", shape, dtype, quant=_q(rng, 0.01, 0.06, dtype=dtype))
    opts = {OP.ADD: (OPT.AddOptions, schema.AddOptionsT()),
            OP.SUB: (OPT.SubOptions, schema.SubOptionsT()),
            OP.MUL: (OPT.MulOptions, schema.MulOptionsT())}
    ot, opt = opts[code]
    opt.fusedActivationFunction = act
    b.add_op(code, [a, c], [y], ot, opt)
    return _finish(b, [a, c], [y]), {"a": _rand(rng, shape, dtype), "b": _rand(rng, bshape, dtype)}


def pool(rng, code, k=3, stride=2, padding="SAME", shape=(1, 9, 10, 8), dtype=np.int8):
    """MAX_POOL_2D / AVERAGE_POOL_2D int8 / int16 (same qparams in and out)."""
    b = TFLiteBuilder()
    q = _q(rng, dtype=dtype)
    x = b.add_tensor("x", shape, dtype, quant=q)
    oh = -(-shape[1] // stride) if padding == "SAME" else (shape[1] - k) // stride + 1
    ow = -(-shape[2] // stride) if padding == "SAME" else (shape[2] - k) // stride + 1
    y = b.add_tensor("y", (shape[0], oh, ow, shape[3]), dtype, quant=q)
    opt = schema.Pool2DOptionsT()
    opt.padding = getattr(schema.Padding, padding)
    opt.strideH = opt.strideW = stride
    opt.filterHeight = opt.filterWidth = k
    b.add_op(code, [x], [y], OPT.Pool2DOptions, opt)
    return _finish(b, [x], [y]), {"x": _rand(rng, shape, dtype)}


def unary(rng, code, out_q: Quant | None = None, shape=(2, 10), opt_type=0, opt=None,
          dtype=np.int8, in_scales: tuple[float, float] | None = None):
    """LOGISTIC / TANH / SOFTMAX / RELU / HARD_SWISH / QUANTIZE / DEQUANTIZE, int8 / int16."""
    b = TFLiteBuilder()
    lo, hi = in_scales or ((0.02, 0.2) if dtype == np.int8 else (1e-4, 1e-3))
    x = b.add_tensor("x", shape, dtype, quant=_q(rng, lo, hi, dtype=dtype))
    if code == OP.DEQUANTIZE:
        y = b.add_tensor("y", shape, np.float32)
    else:
        y = b.add_tensor("y", shape, dtype, quant=out_q or _q(rng, dtype=dtype))
    b.add_op(code, [x], [y], opt_type, opt)
    return _finish(b, [x], [y]), {"x": _rand(rng, shape, dtype)}


def mean(rng, shape=(1, 7, 7, 16), axes=(1, 2), keep=True):
    """MEAN over axes of an int8 tensor with different output qparams."""
    b = TFLiteBuilder()
    x = b.add_tensor("x", shape, np.int8, quant=_q(rng))
    out_shape = tuple(1 if i in axes else d for i, d in enumerate(shape)) if keep else \
        tuple(d for i, d in enumerate(shape) if i not in axes)
    y = b.add_tensor("y", out_shape, np.int8, quant=_q(rng, 0.003, 0.02))
    ax = b.add_tensor("axes", (len(axes),), np.int32, np.array(axes, np.int32))
    opt = schema.ReducerOptionsT()
    opt.keepDims = keep
    b.add_op(OP.MEAN, [x, ax], [y], OPT.ReducerOptions, opt)
    return _finish(b, [x], [y]), {"x": _rand(rng, shape)}


def quantize_input(rng, n=4099, dtype=np.int8):
    """QUANTIZE float → int8 / int16 on values placed at and around rounding ties."""
    b = TFLiteBuilder()
    q = _q(rng, dtype=dtype)
    x = b.add_tensor("x", (1, n), np.float32)
    y = b.add_tensor("y", (1, n), dtype, quant=q)
    b.add_op(OP.QUANTIZE, [x], [y])
    k = rng.integers(-100, 100, n)
    v = ((k + 0.5) * q.scale[0]).astype(np.float32)
    v = np.nextafter(v, v + rng.choice([-1, 0, 1], n).astype(np.float32)).astype(np.float32)
    return _finish(b, [x], [y]), {"x": v[None]}


def batch_matmul(rng, m=9, k=6, n=9):
    """int8 BATCH_MATMUL of two activations (per-tensor qparams)."""
    b = TFLiteBuilder()
    a = b.add_tensor("a", (1, m, k), np.int8, quant=_q(rng))
    c = b.add_tensor("b", (1, k, n), np.int8, quant=_q(rng))
    y = b.add_tensor("y", (1, m, n), np.int8, quant=_q(rng, 0.05, 0.2))
    b.add_op(OP.BATCH_MATMUL, [a, c], [y], OPT.BatchMatMulOptions, schema.BatchMatMulOptionsT())
    return _finish(b, [a, c], [y]), {"a": _rand(rng, (1, m, k)), "b": _rand(rng, (1, k, n))}


def one_op(code, inputs, out, opt_type=0, opt=None, version: int = 1):
    """Any single op: ``inputs`` [(name, shape, dtype, quant or None, constant data or None,
    feed or None)], ``out`` (shape, dtype, quant or None). Returns ``(bytes, feeds)``; inputs
    with a feed become model inputs."""
    b = TFLiteBuilder()
    idx, feeds, graph_ins = [], {}, []
    for name, shape, dtype, quant, data, feed in inputs:
        t = b.add_tensor(name, shape, dtype, data, quant) if data is not None else \
            b.add_tensor(name, shape, dtype, quant=quant)
        idx.append(t)
        if data is None:
            graph_ins.append(t)
            feeds[name] = feed
    shape, dtype, quant = out
    y = b.add_tensor("y", shape, dtype, quant=quant)
    b.add_op(code, idx, [y], opt_type, opt, version=version)
    return _finish(b, graph_ins, [y]), feeds
