"""What lowering emits, and the wiring shared by the per-op rules in :mod:`lower_ops`.

:class:`Emit` carries the integer nodes replacing an anchor; :func:`finish` connects a core
integer node to the Q output (with an exact integer clamp for a fused Relu/Clip);
:func:`conform` bridges int8 ↔ uint8 activations; :func:`widen_int4` and :func:`int32_bias`
turn weights and biases into what the kernels take.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from edgequant.export.qop.index import OutputQ, QdqIndex, QTensor

log = logging.getLogger(__name__)

#: Relative difference allowed between a bias DQ's scale and input_scale·weight_scale before
#: the int32 bias is re-scaled (float32 products computed in a different order differ by
#: a few ulp; anything larger means the bias was quantized with another scale).
BIAS_SCALE_RTOL = 1e-6


@dataclass(frozen=True)
class Emit:
    """Integer nodes replacing an anchor, and the nodes (activation, Q) they absorb."""

    nodes: list[onnx.NodeProto]
    consumed: list[onnx.NodeProto]


def quantize_bound(value: float, out: QTensor) -> int:
    """Q(value) with the output's qparams (ONNX QuantizeLinear: half-to-even, saturate)."""
    if np.isinf(value):
        return out.qmin if value < 0 else out.qmax
    q = np.rint(np.float32(value) / out.scale_value.astype(np.float32).ravel()[0])
    return int(np.clip(q + int(out.zp_value.ravel()[0]), out.qmin, out.qmax))


def conform(idx: QdqIndex, qts: list[QTensor], dtype: np.dtype
            ) -> tuple[list[QTensor], list[onnx.NodeProto]]:
    """``qts`` re-expressed in the 8-bit ``dtype`` (the output's): kernels take one type.

    int8 ↔ uint8 with the same scale is exact: q' = q ± 128 and zero point ± 128 give the
    same real values and the same saturation range. Done with integer ops (Cast to int16,
    Add, Cast back) so the model stays integer-only. This bridges integer model I/O of one
    type and internal activations of the other (``io="int8"`` with uint8 activations).
    """
    out, pre = [], []
    for q in qts:
        if q.dtype == dtype:
            out.append(q)
            continue
        shift = 128 if dtype == np.uint8 else -128
        wide = idx.unique(f"{q.name}_int16")
        shifted = idx.unique(f"{q.name}_shifted")
        name = idx.unique(f"{q.name}_as_{dtype}")
        k = idx.add_const(f"{q.name}_shift", np.asarray(shift, np.int16))
        zp = (q.zp_value.astype(np.int64) + shift).astype(dtype)
        zp_name = idx.add_const(f"{q.zero_point}_as_{dtype}", zp)
        onnx_type = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        pre += [helper.make_node("Cast", [q.name], [wide], to=onnx.TensorProto.INT16,
                                 name=idx.unique(f"{q.name}_widen")),
                helper.make_node("Add", [wide, k], [shifted], name=idx.unique(f"{q.name}_shift")),
                helper.make_node("Cast", [shifted], [name], to=onnx_type,
                                 name=idx.unique(f"{q.name}_narrow"))]
        out.append(QTensor(name, q.scale, zp_name, q.scale_value, zp, None, np.dtype(dtype)))
    return out, pre


def finish(idx: QdqIndex, core: onnx.NodeProto, oq: OutputQ, extra_lo: float = -np.inf,
           extra_hi: float = np.inf, pre: list[onnx.NodeProto] | None = None) -> Emit:
    """Wire ``core`` (whose output is still unnamed) to the Q output, clamping if needed.

    A fused Relu/Clip becomes an integer Clip to [Q(lo), Q(hi)]: quantization is monotonic
    and saturating, so Q(clip(y, lo, hi)) = clip(Q(y), Q(lo), Q(hi)) exactly. The Clip is
    dropped when that range already covers [qmin, qmax] (e.g. Relu with uint8 zero point 0).
    """
    lo, hi = max(oq.lo, extra_lo), min(oq.hi, extra_hi)
    qlo, qhi = quantize_bound(lo, oq.out), quantize_bound(hi, oq.out)
    pre = pre or []
    if qlo <= oq.out.qmin and qhi >= oq.out.qmax:
        core.output[:] = [oq.out.name]
        return Emit([*pre, core], oq.consumed)
    tmp = idx.unique(f"{oq.out.name}_unclamped")
    core.output[:] = [tmp]
    lo_name = idx.add_const(f"{oq.out.name}_qmin", np.asarray(qlo, dtype=oq.out.dtype))
    hi_name = idx.add_const(f"{oq.out.name}_qmax", np.asarray(qhi, dtype=oq.out.dtype))
    clip = helper.make_node("Clip", [tmp, lo_name, hi_name], [oq.out.name],
                            name=idx.unique(f"{core.name}_clamp"))
    return Emit([*pre, core, clip], oq.consumed)


def int32_bias(node: onnx.NodeProto, idx: QdqIndex, i: int, x: QTensor, w: QTensor,
               n_out: int) -> str | tuple[str]:
    """Name of an int32 bias with scale x_scale·w_scale for input ``i``; a 1-tuple on error."""
    b = idx.dq_input(node.input[i])
    if isinstance(b, str) or b.name not in idx.consts or b.dtype != np.int32:
        return (f"bias '{node.input[i]}' is not an int32 initializer behind DequantizeLinear",)
    q = idx.consts[b.name].astype(np.int64) - b.zp_value.astype(np.int64)  # (N,)
    want = (x.scale_value.astype(np.float32) * w.scale_value.astype(np.float32)).ravel()
    have = np.broadcast_to(b.scale_value.ravel(), want.shape) if want.size > 1 else b.scale_value
    if q.ndim != 1 or q.shape[0] != n_out:
        return (f"bias '{node.input[i]}' has shape {q.shape}; expected ({n_out},)",)
    if np.allclose(have, want, rtol=BIAS_SCALE_RTOL, atol=0) and not b.zp_value.any():
        return b.name
    # Re-express the bias at the kernel's implied scale; one rounding, logged.
    log.warning("%s '%s': bias scale differs from input_scale*weight_scale; re-scaling bias",
                node.op_type, node.name)
    real = q.astype(np.float64) * np.asarray(have, np.float64).ravel()  # (N,) float bias
    q32 = np.clip(np.rint(real / want.astype(np.float64)), -(2**31), 2**31 - 1)
    return idx.add_const(f"{node.input[i]}_int32", q32.astype(np.int32))


def widen_int4(idx: QdqIndex, w: QTensor) -> QTensor:
    """A constant int4/uint4 weight stored as int8/uint8: same integers, so exact (w4a8)."""
    wide = np.dtype(np.int8 if w.dtype.name == "int4" else np.uint8)
    q = idx.consts[w.name].astype(wide)  # same shape, values in [-8, 7] or [0, 15]
    zp = w.zp_value.astype(wide)
    return QTensor(idx.add_const(f"{w.name}_8bit", q), w.scale,
                   idx.add_const(f"{w.zero_point}_8bit", zp), w.scale_value, zp, w.axis, wide)
