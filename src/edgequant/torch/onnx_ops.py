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

Op = Callable[[list, dict], torch.Tensor | tuple[torch.Tensor, ...]]

_DTYPES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 5: torch.int16, 6: torch.int32,
           7: torch.int64, 9: torch.bool, 10: torch.float16, 11: torch.float64}


def _ints(t: torch.Tensor | None) -> list[int]:
    return [] if t is None else [int(v) for v in t.reshape(-1).tolist()]


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


def Cast(i, a):
    return i[0].to(_DTYPES[a["to"]])


def Shape(i, a):
    shape = list(i[0].shape)
    start, end = a.get("start", 0), a.get("end", len(shape))
    return torch.tensor(shape[start:end], dtype=torch.int64)


def Reshape(i, a):
    shape = _ints(i[1])
    if not a.get("allowzero", 0):
        shape = [i[0].shape[k] if v == 0 else v for k, v in enumerate(shape)]
    return i[0].reshape(shape)


def Flatten(i, a):
    x = i[0]
    axis = a.get("axis", 1) % max(x.ndim, 1)
    return x.reshape(math.prod(x.shape[:axis]), -1)


def Transpose(i, a):
    perm = a.get("perm", list(reversed(range(i[0].ndim))))
    return i[0].permute(*perm)


def Squeeze(i, a):
    axes = _ints(i[1]) if len(i) > 1 and i[1] is not None else None
    if axes is None:
        return i[0].squeeze()
    return i[0].squeeze(tuple(ax % i[0].ndim for ax in axes))


def Unsqueeze(i, a):
    y = i[0]
    rank = y.ndim + len(_ints(i[1]))
    for ax in sorted(ax % rank for ax in _ints(i[1])):
        y = y.unsqueeze(ax)
    return y


def Concat(i, a):
    return torch.cat([t for t in i if t is not None], dim=a["axis"])


def Split(i, a):
    x, axis = i[0], a.get("axis", 0)
    if len(i) > 1 and i[1] is not None:
        return tuple(torch.split(x, _ints(i[1]), dim=axis))
    n = a["num_outputs"]
    size = -(-x.shape[axis] // n)
    return tuple(torch.split(x, size, dim=axis))


def Slice(i, a):
    x = i[0]
    starts, ends = _ints(i[1]), _ints(i[2])
    axes = _ints(i[3]) if len(i) > 3 and i[3] is not None else list(range(len(starts)))
    steps = _ints(i[4]) if len(i) > 4 and i[4] is not None else [1] * len(starts)
    index = [slice(None)] * x.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
        if st < 0:
            raise NotImplementedError("Slice with negative steps")
        n = x.shape[ax]
        s = max(0, min(n, s + n if s < 0 else s))
        e = max(0, min(n, e + n if e < 0 else e))
        index[ax] = slice(s, e, st)
    return x[tuple(index)]


def Gather(i, a):
    x, idx = i[0], i[1].to(torch.int64)
    axis = a.get("axis", 0) % x.ndim
    idx = torch.where(idx < 0, idx + x.shape[axis], idx)
    out = torch.index_select(x, axis, idx.reshape(-1))
    return out.reshape(*x.shape[:axis], *idx.shape, *x.shape[axis + 1:])


def Expand(i, a):
    shape = _ints(i[1])
    x = i[0]
    rank = max(x.ndim, len(shape))
    shape = [1] * (rank - len(shape)) + shape
    xs = [1] * (rank - x.ndim) + list(x.shape)
    target = [max(s, t) if s != 1 or t != 1 else 1 for s, t in zip(xs, shape, strict=True)]
    return x.reshape(xs).expand(target)


def _reduce_axes(i, a, x: torch.Tensor):
    axes = _ints(i[1]) if len(i) > 1 and i[1] is not None else list(a.get("axes", []))
    if not axes:
        return None if not a.get("noop_with_empty_axes", 0) else ()
    return tuple(ax % x.ndim for ax in axes)


def _reduce(fn):
    def op(i, a):
        x = i[0]
        axes = _reduce_axes(i, a, x)
        if axes == ():
            return x
        keep = bool(a.get("keepdims", 1))
        dims = tuple(range(x.ndim)) if axes is None else axes
        return fn(x, dims, keep)
    return op


ReduceMean = _reduce(lambda x, d, k: x.mean(dim=d, keepdim=k))
ReduceSum = _reduce(lambda x, d, k: x.sum(dim=d, keepdim=k))
ReduceMax = _reduce(lambda x, d, k: x.amax(dim=d, keepdim=k))
ReduceMin = _reduce(lambda x, d, k: x.amin(dim=d, keepdim=k))
ReduceL2 = _reduce(lambda x, d, k: torch.sqrt((x * x).sum(dim=d, keepdim=k)))


def ConstantOfShape(i, a):
    value = a.get("value")
    v = torch.zeros(1) if value is None else value
    return torch.full(_ints(i[0]), v.reshape(-1)[0].item(), dtype=v.dtype)


def Range(i, a):
    return torch.arange(i[0].item(), i[1].item(), i[2].item(), dtype=i[0].dtype)


def Pad(i, a):
    pads = _ints(i[1])
    n = len(pads) // 2
    mode = a.get("mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    value = i[2].item() if len(i) > 2 and i[2] is not None else 0.0
    torch_pads = [p for k in reversed(range(n)) for p in (pads[k], pads[k + n])]
    torch_mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}[mode]
    return F.pad(i[0], torch_pads, mode=torch_mode, value=value if mode == "constant" else None)


OPS: dict[str, Op] = {name: fn for name, fn in globals().items()
                      if name[:1].isupper() and callable(fn) and name not in ("Op", "Callable")}
