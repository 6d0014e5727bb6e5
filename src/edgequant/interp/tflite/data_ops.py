"""Reference kernels for the data and mask plumbing of transformer ``.tflite`` graphs:
GATHER, GATHER_ND, CAST, SELECT / SELECT_V2, BROADCAST_TO, STRIDED_SLICE, the comparisons
(EQUAL, NOT_EQUAL, GREATER, GREATER_EQUAL, LESS, LESS_EQUAL) and LOGICAL_AND / OR / NOT
(``ReferenceInterpreter`` signature: ``(ins, infos, out, opt, flavor)``).

Everything here moves or compares stored values, so it is bit exact by construction: GATHER,
SELECT and BROADCAST_TO copy integers as they are (the exporter writes the output's qparams
on their inputs first), CAST converts the stored value like ``static_cast`` (float → integer
truncates toward zero; a quantized int8 input is cast raw, as LiteRT does). Comparisons of
two quantized integer tensors rescale both sides as LiteRT's ``ComparisonWithScaling``
(``(x − z) << 8`` times each side's own scale in gemmlowp fixed point).
"""

from __future__ import annotations

import numpy as np

from edgequant.errors import UnsupportedOpError
from edgequant.fixedpoint import quantize_multiplier, requantize


def _indices(idx: np.ndarray, dim: int, op: str) -> np.ndarray:
    """Run-time indices checked like LiteRT (no wrapping of negative values)."""
    idx = np.asarray(idx).astype(np.int64)
    bad = (idx < 0) | (idx >= dim)
    if np.any(bad):
        raise ValueError(f"{op}: index {int(idx[bad].ravel()[0])} is outside [0, {dim})")
    return idx


def gather(ins, infos, out, opt, flavor="builtin"):
    """GATHER along ``axis`` (``batch_dims`` 0): rows copied as stored (int8 tables keep
    their qparams)."""
    x, idx = ins
    axis = int(getattr(opt, "axis", 0) or 0) % max(x.ndim, 1)
    if int(getattr(opt, "batchDims", 0) or 0) != 0:
        raise UnsupportedOpError("reference executor: GATHER with batch_dims != 0 is not "
                                 "implemented")
    return np.take(x, _indices(idx, x.shape[axis], "GATHER"), axis=axis)


def gather_nd(ins, infos, out, opt, flavor="builtin"):
    """GATHER_ND: ``indices[..., k]`` address the first ``k`` axes of ``params``."""
    x, idx = ins
    idx = np.asarray(idx).astype(np.int64)
    k = idx.shape[-1]
    cols = tuple(_indices(idx[..., j], x.shape[j], "GATHER_ND") for j in range(k))
    return x[cols]  # (*indices.shape[:-1], *x.shape[k:])


def cast(ins, infos, out, opt, flavor="builtin"):
    """CAST of the stored value (float → integer truncates; → bool is ``!= 0``)."""
    x = ins[0]
    if out.dtype == np.bool_:
        return x != 0
    if x.dtype.kind == "f" and out.dtype.kind in "iu":
        return np.trunc(x).astype(out.dtype)
    return x.astype(out.dtype)


def select(ins, infos, out, opt, flavor="builtin"):
    """SELECT / SELECT_V2: ``cond ? x : y`` with broadcasting, values copied as stored."""
    cond, x, y = ins
    if cond.ndim == 1 and x.ndim > 1 and cond.shape[0] == x.shape[0] and cond.shape != x.shape:
        cond = cond.reshape(-1, *([1] * (x.ndim - 1)))  # SELECT (v1): a per-row condition
    return np.where(cond.astype(bool), x, y).astype(out.dtype)


def broadcast_to(ins, infos, out, opt, flavor="builtin"):
    """BROADCAST_TO the shape held by the second input."""
    return np.broadcast_to(ins[0], tuple(int(d) for d in np.ravel(ins[1]))).copy()


def _bit(mask: int, i: int) -> bool:
    return bool((int(mask or 0) >> i) & 1)


def strided_slice(ins, infos, out, opt, flavor="builtin"):
    """STRIDED_SLICE with ``begin_mask`` / ``end_mask`` / ``shrink_axis_mask`` / ``offset``
    (ellipsis and new-axis masks, which the exporter never writes, are refused)."""
    x, begin, end, strides = ins[0], *(np.ravel(v).astype(np.int64) for v in ins[1:4])
    if int(getattr(opt, "ellipsisMask", 0) or 0) or int(getattr(opt, "newAxisMask", 0) or 0):
        raise UnsupportedOpError("reference executor: STRIDED_SLICE with an ellipsis or "
                                 "new-axis mask is not implemented")
    offset = bool(getattr(opt, "offset", False))
    index: list[slice | int] = []
    for i in range(x.ndim):
        if i >= len(begin):
            index.append(slice(None))
            continue
        b, e, s = int(begin[i]), int(end[i]), int(strides[i])
        if s == 0:
            raise ValueError(f"STRIDED_SLICE: stride 0 on axis {i}")
        if offset:
            e = b + e
        if _bit(getattr(opt, "shrinkAxisMask", 0), i):
            index.append(b % x.shape[i] if -x.shape[i] <= b < x.shape[i] else b)
            continue
        start = None if _bit(getattr(opt, "beginMask", 0), i) else b
        stop = None if _bit(getattr(opt, "endMask", 0), i) else e
        index.append(slice(start, stop, s))
    return x[tuple(index)]


def _scaled(x: np.ndarray, info) -> np.ndarray:
    """LiteRT's comparison rescaling of a quantized operand: ``((x − z) << 8) · scale``."""
    m, s = quantize_multiplier(float(info.scale[0]))
    return requantize((x.astype(np.int64) - int(info.zero_point[0])) * 256, m, s)


def _compare(fn):
    def run(ins, infos, out, opt, flavor="builtin"):
        """Comparison of two tensors: quantized integers rescaled (module docstring), other
        types compared as stored."""
        a, b = ins
        quantized = [i.dtype in (np.int8, np.uint8, np.int16) and i.scale is not None
                     for i in infos]
        if all(quantized):
            if float(infos[0].scale[0]) >= 1 or float(infos[1].scale[0]) >= 1:
                raise UnsupportedOpError("reference executor: quantized comparison with a "
                                         "scale >= 1 is not modelled")
            a, b = _scaled(a, infos[0]), _scaled(b, infos[1])
        return fn(a, b)
    return run


def _logical(fn):
    def run(ins, infos, out, opt, flavor="builtin"):
        """LOGICAL_AND / OR / NOT on bool tensors."""
        return fn(*(np.asarray(i, bool) for i in ins))
    return run


OPS = {
    "GATHER": gather,
    "GATHER_ND": gather_nd,
    "CAST": cast,
    "SELECT": select,
    "SELECT_V2": select,
    "BROADCAST_TO": broadcast_to,
    "STRIDED_SLICE": strided_slice,
    "EQUAL": _compare(np.equal),
    "NOT_EQUAL": _compare(np.not_equal),
    "GREATER": _compare(np.greater),
    "GREATER_EQUAL": _compare(np.greater_equal),
    "LESS": _compare(np.less),
    "LESS_EQUAL": _compare(np.less_equal),
    "LOGICAL_AND": _logical(np.logical_and),
    "LOGICAL_OR": _logical(np.logical_or),
    "LOGICAL_NOT": _logical(np.logical_not),
}
