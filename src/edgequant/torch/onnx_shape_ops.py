"""ONNX shape, indexing and reduction ops as torch functions (see :mod:`onnx_ops`).

Same calling convention: ``(inputs, attrs)`` → tensor or tuple; integer shape tensors are
read with :func:`_ints`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_DTYPES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 5: torch.int16, 6: torch.int32,
           7: torch.int64, 9: torch.bool, 10: torch.float16, 11: torch.float64}


def _ints(t: torch.Tensor | None) -> list[int]:
    return [] if t is None else [int(v) for v in t.reshape(-1).tolist()]


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
    x = i[0]
    pads = _ints(i[1])
    n = len(pads) // 2
    axes = _ints(i[3]) if len(i) > 3 and i[3] is not None else list(range(n))
    full = [0] * (2 * x.ndim)  # ONNX layout: every axis' begin, then every axis' end
    for k, ax in enumerate(axes):
        full[ax % x.ndim], full[ax % x.ndim + x.ndim] = pads[k], pads[k + n]
    mode = a.get("mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    value = i[2].item() if len(i) > 2 and i[2] is not None and i[2].numel() else 0.0
    torch_pads = [p for k in reversed(range(x.ndim)) for p in (full[k], full[k + x.ndim])]
    while torch_pads and torch_pads[-2:] == [0, 0]:
        torch_pads = torch_pads[:-2]  # reflect / replicate pad only the trailing axes
    torch_mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}[mode]
    return F.pad(x, torch_pads, mode=torch_mode, value=value if mode == "constant" else None)
