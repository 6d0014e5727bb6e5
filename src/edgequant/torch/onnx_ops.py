"""ONNX ops as differentiable torch functions, for training on the exact graph that ships.

:class:`edgequant.torch.graph_qat.GraphQAT` runs the prepared float ONNX graph (the one the
plan was resolved on and ``convert`` writes Q/DQ into) node by node with these functions, so
every tensor a plan decision names exists in training under the same name. One function per
op, named like the op, taking ``(inputs, attrs)``: ``inputs`` a list of tensors (``None`` for
an omitted optional input), ``attrs`` the node's attributes as Python values. Each returns a
tensor or a tuple of tensors (multi-output ops).

Float semantics follow onnxruntime's CPU kernels in float32 (same formulas; reductions may
associate differently, within float32 rounding).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from edgequant.torch import onnx_extra_ops, onnx_shape_ops, onnx_upsample_ops

Op = Callable[[list, dict], torch.Tensor | tuple[torch.Tensor, ...]]

def _pads_2d(attrs: dict, x: torch.Tensor, kernel: list[int], strides: list[int],
             dilations: list[int]) -> tuple[torch.Tensor, list[int]]:
    """Explicitly pad ``x`` (N, C, H, W) per ONNX ``pads`` / ``auto_pad``; returns (x, [0, 0])."""
    spatial = x.shape[2:]
    auto = attrs.get("auto_pad", "NOTSET")
    if isinstance(auto, bytes):
        auto = auto.decode()
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads_b, pads_e = [], []
        for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
            out = -(-size // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
            small, big = total // 2, total - total // 2
            pads_b.append(small if auto == "SAME_UPPER" else big)
            pads_e.append(big if auto == "SAME_UPPER" else small)
        pads = pads_b + pads_e
    else:
        pads = list(attrs.get("pads", [0] * (2 * len(spatial))))
    n = len(spatial)
    return pads[:n], pads[n:]


def Conv(i, a):
    x, w, b = i[0], i[1], i[2] if len(i) > 2 else None
    nd = w.ndim - 2
    strides = list(a.get("strides", [1] * nd))
    dil = list(a.get("dilations", [1] * nd))
    begin, end = _pads_2d(a, x, list(w.shape[2:]), strides, dil)
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    if begin == end:
        return fn(x, w, b, strides, begin, dil, a.get("group", 1))
    pad = [p for pair in zip(reversed(begin), reversed(end), strict=True) for p in pair]
    return fn(F.pad(x, pad), w, b, strides, 0, dil, a.get("group", 1))


def Gemm(i, a):
    x, w = i[0], i[1]
    if a.get("transA", 0):
        x = x.t()
    if a.get("transB", 0):
        w = w.t()
    y = a.get("alpha", 1.0) * (x @ w) if a.get("alpha", 1.0) != 1.0 else x @ w
    if len(i) > 2 and i[2] is not None:
        c = i[2]
        y = y + (a.get("beta", 1.0) * c if a.get("beta", 1.0) != 1.0 else c)
    return y


def MatMul(i, a):
    return torch.matmul(i[0], i[1])


def _pool_args(a: dict, x: torch.Tensor):
    k = list(a["kernel_shape"])
    s = list(a.get("strides", [1] * len(k)))
    d = list(a.get("dilations", [1] * len(k)))
    begin, end = _pads_2d(a, x, k, s, d)
    return k, s, d, begin, end


def MaxPool(i, a):
    x = i[0]
    k, s, d, begin, end = _pool_args(a, x)
    ceil = bool(a.get("ceil_mode", 0))
    if begin != end:
        pad = [p for pair in zip(reversed(begin), reversed(end), strict=True) for p in pair]
        x, begin = F.pad(x, pad, value=-math.inf), [0] * len(k)
    return F.max_pool2d(x, k, s, begin, d, ceil_mode=ceil)


def AveragePool(i, a):
    x = i[0]
    k, s, _, begin, end = _pool_args(a, x)
    include = bool(a.get("count_include_pad", 0))
    ceil = bool(a.get("ceil_mode", 0))
    if begin != end:
        pad = [p for pair in zip(reversed(begin), reversed(end), strict=True) for p in pair]
        if not include:
            raise NotImplementedError("asymmetric AveragePool padding without count_include_pad")
        x, begin = F.pad(x, pad), [0] * len(k)
    return F.avg_pool2d(x, k, s, begin, ceil_mode=ceil, count_include_pad=include)


def GlobalAveragePool(i, a):
    x = i[0]
    return x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)


def Relu(i, a):
    return F.relu(i[0])


def Clip(i, a):
    lo = i[1] if len(i) > 1 and i[1] is not None else None
    hi = i[2] if len(i) > 2 and i[2] is not None else None
    return torch.clamp(i[0], lo, hi)


def Sigmoid(i, a):
    return torch.sigmoid(i[0])


def HardSigmoid(i, a):
    return torch.clamp(a.get("alpha", 0.2) * i[0] + a.get("beta", 0.5), 0, 1)


def HardSwish(i, a):
    return F.hardswish(i[0])


def LeakyRelu(i, a):
    return F.leaky_relu(i[0], a.get("alpha", 0.01))


def Tanh(i, a):
    return torch.tanh(i[0])


def Erf(i, a):
    return torch.erf(i[0])


def Gelu(i, a):
    approx = a.get("approximate", "none")
    return F.gelu(i[0], approximate=approx.decode() if isinstance(approx, bytes) else approx)


def Softmax(i, a):
    return torch.softmax(i[0], dim=a.get("axis", -1))


def LayerNormalization(i, a):
    x, w = i[0], i[1]
    b = i[2] if len(i) > 2 else None
    axis = a.get("axis", -1) % x.ndim
    return F.layer_norm(x, x.shape[axis:], w, b, a.get("epsilon", 1e-5))


def Add(i, a):
    return i[0] + i[1]


def Sub(i, a):
    return i[0] - i[1]


def Mul(i, a):
    return i[0] * i[1]


def Div(i, a):
    if not i[0].is_floating_point():
        return torch.div(i[0], i[1], rounding_mode="trunc")
    return i[0] / i[1]


def Pow(i, a):
    return torch.pow(i[0], i[1])


def Sqrt(i, a):
    return torch.sqrt(i[0])


def Neg(i, a):
    return -i[0]


def Max(i, a):
    y = i[0]
    for t in i[1:]:
        y = torch.maximum(y, t)
    return y


def Min(i, a):
    y = i[0]
    for t in i[1:]:
        y = torch.minimum(y, t)
    return y


def Equal(i, a):
    return i[0] == i[1]


def Less(i, a):
    return i[0] < i[1]


def Greater(i, a):
    return i[0] > i[1]


def Not(i, a):
    return ~i[0]


def And(i, a):
    return i[0] & i[1]


def Or(i, a):
    return i[0] | i[1]


def Abs(i, a):
    return torch.abs(i[0])


def Exp(i, a):
    return torch.exp(i[0])


def Log(i, a):
    return torch.log(i[0])


def Reciprocal(i, a):
    return torch.reciprocal(i[0])


def IsNaN(i, a):
    return torch.isnan(i[0])


def GatherND(i, a):
    if a.get("batch_dims", 0):
        raise NotImplementedError("GatherND with batch_dims > 0")
    data, idx = i[0], i[1].to(torch.int64)
    k = idx.shape[-1]
    idx = torch.where(idx < 0, idx + torch.tensor(data.shape[:k]), idx)
    return data[tuple(idx[..., j] for j in range(k))]


def Where(i, a):
    return torch.where(i[0], i[1], i[2])


def Identity(i, a):
    return i[0]


Dropout = Identity


OPS: dict[str, Op] = {
    name: fn for name, fn in [*globals().items(), *vars(onnx_shape_ops).items(),
                              *vars(onnx_upsample_ops).items(), *vars(onnx_extra_ops).items()]
    if name[:1].isupper() and callable(fn) and not isinstance(fn, type)
    and name not in ("Op", "Callable")}
