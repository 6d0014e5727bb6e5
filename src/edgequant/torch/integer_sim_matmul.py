"""The deployed integer MatMuls of a transformer, emulated for :class:`IntegerSim`.

onnxruntime fuses every ``DQ → MatMul → Q`` of the QDQ graph into ``QLinearMatMul`` (exact
int32 accumulator of the two integer operands, requantized by the float32 multiplier
``s_a · s_b / s_y``, per output column for per-channel weights): the Q, K, V, O and FFN-in
projections and the Q·Kᵀ and P·V products of an int8 BERT. Its bias Add stays a float Add
between a DequantizeLinear and the next QuantizeLinear.

The ``.tflite`` export runs the same graph differently in two places, both deliberate (fewer
ops, and graphs XNNPACK delegates whole), so ``kernels="litert"`` emulates what it writes:

* ``MatMul(x, W) → Add(·, b)`` with both outputs quantized is one FULLY_CONNECTED with an
  int32 bias at ``s_x · s_W`` (``export/tflite/patterns_bias.py``): one rounding onto the Add's
  grid instead of QLinearMatMul's rounding onto the MatMul's grid, then the float Add's;
* the right-hand operand of an int8 BATCH_MATMUL (Kᵀ, V) is requantized to zero point 0
  over the same range (``export/tflite/ops_batch_matmul.py``; XNNPACK's QUANTIZE), a second
  rounding onto a step up to 1.2x coarser; the product is requantized in fp32 (XNNPACK).
"""

from __future__ import annotations

import numpy as np
import torch

from edgequant.interp.ops.qlinear import QLinearMatMul
from edgequant.interp.requant import real_multiplier, requantize
from edgequant.interp.tflite.kernels import requantize_tensor


class MatMulKernels:
    """``_MatMul`` and the fused FULLY_CONNECTED bias of :class:`IntegerSim` (mixin)."""

    def _matmul_weight(self, name: str):
        """``(integers (K, N), scales, zero points)`` of a weight quantized per column or per
        tensor, else None."""
        q = self.qat.quantizer(name)
        w = self._weight(name)
        if w is None or w[0].ndim != 2 or q.axis not in (None, 1):
            return None
        return w

    def _rhs(self, node, ins):
        """The right-hand operand as ``(integers, scales, zero points, grid)``: a quantized
        weight (grid None) or an 8-bit activation; None when it is neither."""
        w = self._matmul_weight(node.inputs[1])
        if w is not None:
            return (*w, None)
        b = self.input_grid(node.inputs[1], node.label)
        if b is None or b.qtype.bits != 8:
            return None
        return b.integers(ins[1]), np.asarray(b.scale), np.asarray(b.zero_point), b

    def _fused_bias_add(self, mm) -> object | None:
        """The bias Add the TFLite exporter folds into MatMul ``mm``'s FULLY_CONNECTED (both
        outputs quantized, constant 2-D weight, constant bias along the last axis), or None."""
        y = mm.outputs[0]
        users = self._consumers.get(y, [])
        if (self._matmul_weight(mm.inputs[1]) is None or len(users) != 1 or users[0].op_type != "Add"
                or y in self.qat.output_names):
            return None
        add = users[0]
        other = add.inputs[1] if add.inputs[0] == y else add.inputs[0]
        if other in self.qat._param_index or other in self.qat._const:
            bias = self.qat.value(other)
            if bias.numel() == self.qat.value(mm.inputs[1]).shape[-1] and \
                    self.output_grid(add.outputs[0]) is not None:
                return add
        return None

    def _MatMul(self, node, ins, y) -> torch.Tensor | None:
        a = self.input_grid(node.inputs[0], node.label)
        rhs = self._rhs(node, ins)
        if a is None or rhs is None or a.qtype.bits != 8 or ins[0].ndim < 2:
            return None
        bq, bs, bz, grid = rhs
        aq = a.integers(ins[0])  # (…, M, K) int64
        if self.kernels == "litert":
            if self._fused_bias_add(node) is not None:
                self._pending[node.outputs[0]] = (aq, a, rhs[:3])  # the Add computes the FC
                return None
            if grid is not None:  # BATCH_MATMUL: the right-hand side at zero point 0
                bq, bs, bz = _zero_point_0(bq, float(bs), int(bz), grid)
        acc = (aq - a.zero_point).astype(np.float64) @ (bq - bz).astype(np.float64)  # exact
        if self.kernels == "litert":
            mult = real_multiplier(a.scale, bs, y.scale, "float")
            q = requantize(acc.astype(np.int32), mult, np.asarray(y.zero_point),
                           y.qtype.numpy_dtype, "float")
            return y.values(q)
        q = QLinearMatMul(self._ctx(node, "QLinearMatMul"), a.container(aq), a.scale,
                          np.asarray(a.zero_point, a.qtype.numpy_dtype), bq.astype(np.int32), bs,
                          bz.astype(np.int32), y.scale, np.asarray(y.zero_point, y.qtype.numpy_dtype))
        return y.values(q)

    def _fc_with_bias(self, add, y) -> torch.Tensor | None:
        """LiteRT's FULLY_CONNECTED with the folded bias, on the Add's output grid."""
        mm_out = add.inputs[0] if add.inputs[0] in self._pending else add.inputs[1]
        aq, a, (wq, ws, wz) = self._pending.pop(mm_out)
        bias_name = add.inputs[1] if add.inputs[0] == mm_out else add.inputs[0]
        acc = (aq - a.zero_point).astype(np.float64) @ (wq - wz).astype(np.float64)  # (…, N)
        scale = (np.float32(a.scale) * ws.astype(np.float32)).astype(np.float32)  # (N,)
        b = self.qat.value(bias_name).detach().numpy().astype(np.float64).reshape(-1)
        bias = np.clip(np.rint(b / scale.astype(np.float64)), -2**31, 2**31 - 1)  # int32
        mult = real_multiplier(a.scale, ws, y.scale, "float")  # (N,) float32
        q = requantize((acc + bias).astype(np.int32), mult, np.asarray(y.zero_point),
                       y.qtype.numpy_dtype, "float")
        return y.values(q)


def _zero_point_0(q: np.ndarray, scale: float, zero_point: int, grid
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exporter's QUANTIZE of an int8 right-hand BATCH_MATMUL operand to zero point 0."""
    from edgequant.export.tflite.ops_batch_matmul import zero_point_0_scale

    z8 = zero_point - 128 if not grid.qtype.signed else zero_point  # LiteRT's int8 zero point
    if z8 == 0:
        return q, np.asarray(np.float32(scale)), np.asarray(zero_point)
    s0 = zero_point_0_scale(np.float32(scale), z8)
    x8 = (q - zero_point + z8).astype(np.int8)
    r = requantize_tensor(x8, (np.array([scale], np.float32), np.array([z8])),
                          (np.array([s0], np.float32), np.array([0])), np.int8, "xnnpack")
    return r.astype(np.int64), np.asarray(s0), np.asarray(0)


__all__ = ["MatMulKernels"]
