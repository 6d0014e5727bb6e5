"""Reference kernels for the math of transformer ``.tflite`` graphs: SQRT, RSQRT, NEG, POW,
GELU, SUM, REDUCE_MAX and REDUCE_MIN (``ReferenceInterpreter`` signature:
``(ins, infos, out, opt, flavor)``).

Float kernels compute in float32 step by step where LiteRT's are elementwise (SQRT, RSQRT as
``1 / sqrt``, NEG, GELU as :func:`~edgequant.interp.tflite.activations.gelu_float32`) and in
float64 rounded once to float32 where LiteRT's order of summation is its own (SUM, POW):
a float oracle within float tolerance, not bit exact. Integer kernels follow LiteRT:

* int8 GELU: the 256-entry LUT of the float32 function (``LUTPopulateInt8``);
* int8 / int16 SUM: LiteRT's optimized ``QuantizedMeanOrSum`` with ``compute_sum``: the raw
  int32 sum times ``float32(in_s / out_s)`` plus ``−zi · scale · n`` in float32, rounded half
  away from zero, plus the output zero point;
* int8 / int16 REDUCE_MAX / REDUCE_MIN: on the stored values (LiteRT requires equal input and
  output qparams).
"""

from __future__ import annotations

import numpy as np

from edgequant.errors import UnsupportedOpError
from edgequant.interp.tflite import activations as A
from edgequant.interp.tflite.kernels import tfl_round


def _is_int(info) -> bool:
    return info.dtype.kind in "iu"


def _float_only(name: str, fn):
    def run(ins, infos, out, opt, flavor="builtin"):
        """A float elementwise op (LiteRT's integer variants are not written by the
        exporter)."""
        if _is_int(infos[0]):
            raise UnsupportedOpError(f"reference executor: integer {name} is not implemented "
                                     "(the exporter writes it float)")
        return fn(*ins)
    return run


def _rsqrt(x: np.ndarray) -> np.ndarray:
    return (np.float32(1) / np.sqrt(x.astype(np.float32))).astype(np.float32)


def _pow(x: np.ndarray, e: np.ndarray) -> np.ndarray:
    return np.power(x.astype(np.float64), e.astype(np.float64)).astype(np.float32)


def gelu(ins, infos, out, opt, flavor="builtin"):
    """GELU (``approximate``: the tanh form): int8 LUT or float32."""
    approx = bool(getattr(opt, "approximate", False))
    if _is_int(infos[0]):
        return A.lut_activation(ins[0], infos[0].q, out.q, "gelu_tanh" if approx else "gelu",
                                out.dtype)
    return A.gelu_float32(ins[0], approx)


def _axes(x: np.ndarray, axes) -> tuple[int, ...]:
    return tuple(sorted({int(a) % x.ndim for a in np.ravel(axes)}))


def quantized_sum(x, axes, keep, xq, yq, dtype) -> np.ndarray:
    """int8 / int16 SUM as LiteRT's optimized ``QuantizedMeanOrSum`` (module docstring)."""
    n = int(np.prod([x.shape[a] for a in axes])) if axes else 1
    raw = x.astype(np.int64).sum(axis=axes, keepdims=keep)  # int32 in the kernel
    scale = np.float32(np.float32(xq[0][0]) / np.float32(yq[0][0]))
    bias = np.float32(np.float32(np.float32(-int(xq[1][0])) * scale) * np.float32(n))
    v = (raw.astype(np.float32) * scale).astype(np.float32)
    y = tfl_round((v + bias).astype(np.float32)).astype(np.int64) + int(yq[1][0])
    info = np.iinfo(dtype)
    return np.clip(y, info.min, info.max).astype(dtype)


def reduce_sum(ins, infos, out, opt, flavor="builtin"):
    """SUM over the axes of the second input (float: float64 sum)."""
    x, axes, keep = ins[0], _axes(ins[0], ins[1]), bool(opt.keepDims)
    if _is_int(infos[0]) and infos[0].scale is not None:
        return quantized_sum(x, axes, keep, infos[0].q, out.q, out.dtype)
    if _is_int(infos[0]):  # plain int32 / int64 data
        return x.sum(axis=axes, keepdims=keep).astype(out.dtype)
    return x.astype(np.float64).sum(axis=axes, keepdims=keep).astype(np.float32)


def _reduce_extreme(fn):
    def run(ins, infos, out, opt, flavor="builtin"):
        """REDUCE_MAX / REDUCE_MIN on the stored values."""
        x, axes = ins[0], _axes(ins[0], ins[1])
        a, b = infos[0], out
        if _is_int(a) and a.scale is not None and (
                b.scale is None or float(a.scale[0]) != float(b.scale[0])
                or int(a.zero_point[0]) != int(b.zero_point[0])):
            raise ValueError("integer REDUCE_MAX / REDUCE_MIN needs equal input and output "
                             "qparams (as LiteRT)")
        return fn(x, axis=axes, keepdims=bool(opt.keepDims)).astype(out.dtype)
    return run


OPS = {
    "SQRT": _float_only("SQRT", lambda x: np.sqrt(x.astype(np.float32))),
    "RSQRT": _float_only("RSQRT", _rsqrt),
    "NEG": _float_only("NEG", lambda x: np.negative(x.astype(np.float32))),
    "POW": _float_only("POW", _pow),
    "GELU": gelu,
    "SUM": reduce_sum,
    "REDUCE_MAX": _reduce_extreme(np.max),
    "REDUCE_MIN": _reduce_extreme(np.min),
}
