"""LiteRT's float SOFTMAX, emulated bit for bit for ``kernels="litert"``.

A float SOFTMAX (β = 1, over the last axis) runs in XNNPACK's ``softmax_nc_f32`` operator: the
row maximum (exact in any order), then ``f32-raddstoreexpminusmax`` — ``exp(x − max)`` of every
value, stored, and summed — then ``1.0f / sum`` (one float32 division) and a float32 multiply
of every stored exponential by it (``vmulc``). On an AVX-512 CPU the exponential kernel is
``xnn_f32_raddstoreexpminusmax_ukernel__avx512f_rr2_p5_u64_acc2``:

* ``n = round(x·log₂e)`` by a magic-number FMA, ``s = 2ⁿ`` from its low bits shifted into the
  exponent field, Cody-Waite reduction ``t = x − n·ln2_hi − n·ln2_lo`` (two FMAs), a degree-5
  polynomial in Horner form (FMAs), ``f = s + (t·s)·p`` (FMA), and ``f = 0`` below
  ``x < −87.34`` (the underflow cutoff; masked attention scores land there);
* the sum: two 16-lane accumulators over blocks of 64 values (blocks 0 and 2 into the first,
  1 and 3 into the second), added lane-wise, then one accumulator over the remaining blocks of
  16 and the masked tail, then the 16 lanes summed by halves (8, 4, 2, 1: ``reduce_add``).

:func:`xnnpack_softmax` computes the same float32 operations in the same order (FMAs as
:func:`edgequant.torch.xnnpack_float32.fma32`: one float64 multiply-add rounded to float32).
Measured equal to LiteRT 2.3's SOFTMAX on an AVX-512 CPU (rows of 8 … 200 values, attention
masks included); torch's softmax differs from it on most rows by an ULP or a few.
"""

from __future__ import annotations

import numpy as np
import torch

from edgequant.torch.integer_sim_litert_norm import LANES
from edgequant.torch.xnnpack_float32 import fma32, ftz

LOG2E = np.float32(float.fromhex("0x1.715476p+0"))
#: 1.5·2²³ + 127: ``x·log₂e + MAGIC_BIAS`` holds ``round(x·log₂e) + 127`` in its low bits
MAGIC_BIAS = np.float32(float.fromhex("0x1.8000FEp23"))
MINUS_LN2_HI = np.float32(float.fromhex("-0x1.62E400p-1"))
MINUS_LN2_LO = np.float32(float.fromhex("-0x1.7F7D1Cp-20"))
#: ``exp(t) ≈ 1 + t·(c1 + t·(c2 + t·(c3 + t·(c4 + t·c5))))`` on [−ln2/2, ln2/2]
EXP_C = tuple(np.float32(float.fromhex(h)) for h in (
    "0x1.FFFFF6p-1", "0x1.FFFDC6p-2", "0x1.555A80p-3", "0x1.573A1Ap-5", "0x1.0F9F9Cp-7"))
DENORM_CUTOFF = np.float32(float.fromhex("-0x1.5D589Ep6"))


def xnnpack_exp_minus_max(x: torch.Tensor, row_max: torch.Tensor) -> torch.Tensor:
    """``exp(x − max)`` of float32 ``x`` (…, n) as XNNPACK's AVX-512 ``rr2_p5`` kernel
    computes it (module docstring); ``row_max`` (…, 1)."""
    vx = ftz(x.float() - row_max.float())  # (…, n) float32, ≤ 0
    vn = ftz(fma32(vx, float(LOG2E), float(MAGIC_BIAS)))
    vs = (vn.view(torch.int32).long() << 23).to(torch.int32).view(torch.float32)  # 2^n
    vn = vn - float(MAGIC_BIAS)
    vt = ftz(fma32(vn, float(MINUS_LN2_HI), vx))
    vt = ftz(fma32(vn, float(MINUS_LN2_LO), vt))
    vp = ftz(fma32(torch.full_like(vt, float(EXP_C[4])), vt, float(EXP_C[3])))
    for c in EXP_C[2::-1]:
        vp = ftz(fma32(vp, vt, float(c)))
    vt = ftz(vt * ftz(vs))
    vf = ftz(fma32(vt, vp, ftz(vs)))
    return torch.where(vx < float(DENORM_CUTOFF), torch.zeros_like(vf), vf)


def xnnpack_sum(f: torch.Tensor) -> torch.Tensor:
    """float32 sum over the last axis in the ``u64_acc2`` kernel's order (module docstring)
    → (…, 1)."""
    n = f.shape[-1]
    lead = f.shape[:-1]
    big = n // 64 * 64
    acc0 = torch.zeros(*lead, LANES, dtype=torch.float32)
    acc1 = torch.zeros_like(acc0)
    for b in range(0, big, 64):
        acc0 = acc0 + f[..., b:b + 16]
        acc1 = acc1 + f[..., b + 16:b + 32]
        acc0 = acc0 + f[..., b + 32:b + 48]
        acc1 = acc1 + f[..., b + 48:b + 64]
    acc = acc0 + acc1
    for b in range(big, n, LANES):
        block = f[..., b:b + LANES]
        if block.shape[-1] < LANES:  # the masked tail: the other lanes keep their sums
            acc = torch.cat([ftz(acc[..., :block.shape[-1]] + block),
                             acc[..., block.shape[-1]:]], -1)
        else:
            acc = acc + block
    while acc.shape[-1] > 1:
        h = acc.shape[-1] // 2
        acc = acc[..., :h] + acc[..., h:]
    return acc


def xnnpack_softmax(x: torch.Tensor) -> torch.Tensor:
    """float32 softmax over the last axis as LiteRT's SOFTMAX (β = 1) runs it on XNNPACK."""
    x = x.detach().float()
    f = xnnpack_exp_minus_max(x, x.amax(-1, keepdim=True))  # (…, n)
    scale = ftz(1.0 / xnnpack_sum(f))  # (…, 1) float32 division
    return ftz(f * scale)


class SoftmaxKernel:
    """LiteRT's float SOFTMAX for :class:`IntegerSim` (mixin)."""

    def litert_softmax(self, node, ins: list) -> torch.Tensor | None:
        """A float Softmax over the last axis (its input not quantized: the exporter writes a
        float SOFTMAX) as XNNPACK computes it, else None."""
        x = ins[0]
        axis = int(node.attrs.get("axis", -1)) % x.ndim
        if axis != x.ndim - 1 or self.input_grid(node.inputs[0], node.label) is not None:
            return None
        return xnnpack_softmax(x)


__all__ = ["SoftmaxKernel", "xnnpack_exp_minus_max", "xnnpack_softmax", "xnnpack_sum"]
