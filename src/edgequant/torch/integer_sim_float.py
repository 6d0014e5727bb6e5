"""LiteRT's float kernels between the integer ones, emulated for ``kernels="litert"``.

A quantized transformer still runs some ops in float32 (the plan leaves them float): on
all-MiniLM-L6-v2 w8a8 the FFN-in bias Add, GELU, the FFN-out projection, the residual Adds,
LayerNorm, the attention scale / mask and Softmax. LiteRT's default CPU path (XNNPACK)
computes two of them differently from torch, and the difference is not one float32 rounding:

* **GELU** (float): XNNPACK's ``f32-vgelu`` evaluates ``0.5·x·(1 + erf(x/√2))`` with a
  12/10-degree rational approximation of ``erf`` (fused multiply-adds, Horner), within a few
  ULP of the true value but not equal to torch's ``erf`` (35 % of the values of MiniLM's layer
  0 differ by up to 1e-6);
* **FULLY_CONNECTED** (float weights, the bias folded in by the exporter,
  ``export/tflite/patterns_bias.py``): XNNPACK's f32 GEMM starts each accumulator at the
  bias and adds ``a[k]·w[k]`` for k = 0 … K−1 with one fused multiply-add each; torch's GEMM
  sums in blocks (97 % of MiniLM's FFN-out values differed by a few ULP).

Those ULPs reach the residual stream, and once in ~10⁴ values a LayerNorm output lands on the
other side of an int8 rounding boundary; six post-LN layers amplify the flipped code. Both
kernels are emulated here value for value, measured equal (0 differing values) to LiteRT 2.3
on an x86-64 CPU with FMA (AVX-512): ``fma(a, b, c)`` is computed as one float64 multiply-add
rounded to float32 (the float32 product is exact in float64; the double rounding differs from
a true FMA only when the float64 sum falls exactly on a float32 tie, ~2⁻²⁹ of the time).
CPUs without FMA run other XNNPACK micro-kernels (separate multiply and add); not emulated.

LayerNorm (:mod:`.integer_sim_litert_norm`: XNNPACK's MEAN order, its fused mean of squares
for the variance, the AVX-512 RSQRT — the ``rsqrt14`` hardware estimate refined by one
Newton-Raphson step), float → int8 QUANTIZE (``round(x · fl(1/s))``), mean pooling's SUM and
the embedding's L2 norm (SUM of squares, SQRT) and the float SOFTMAX
(:mod:`.integer_sim_litert_softmax`) are emulated bit for bit as well, XNNPACK's
flush-to-zero included. Cost: the in-order GEMM is a Python loop over K (FFN-out: 1536
steps): the ``"litert"`` eval forward of MiniLM on 64 docstrings took 51 s (28 s without these
kernels, 13 s for ``"onnxruntime"``; 2 shared cores, load ~6); the LayerNorm / Softmax /
QUANTIZE / pooling emulation adds ~20 % (16 docstrings: 32.0 → 38.8 CPU-s, load ~7).
Training never runs it.
"""

from __future__ import annotations

import numpy as np
import torch

from edgequant.torch.integer_sim_litert_norm import (
    layer_norm_decomposed,
    xnnpack_reduce_l2,
    xnnpack_reduce_sum,
)
from edgequant.torch.xnnpack_float32 import fma32

#: XNNPACK ``f32-vgelu`` rational 12/10 erf approximation: |x| is clamped here (the FMA
#: kernels' constant), odd numerator α₁ … α₁₁ and even denominator 1, β₂ … β₁₀ (float32).
GELU_MAX_ABS_X = np.float32(5.1638283730e+00)
GELU_ALPHA = tuple(np.float32(v) for v in (7.9788452387e-01, 6.6972173750e-02, 9.3065137044e-03,
                                           3.2973114867e-04, 1.2609783880e-05, 4.5835321316e-08))
GELU_BETA = tuple(np.float32(v) for v in (1.0, 2.5060352683e-01, 2.8431978077e-02,
                                          1.8622842617e-03, 7.2267655923e-05, 1.1988805682e-06))


def xnnpack_gelu(x: torch.Tensor) -> torch.Tensor:
    """float32 GELU as XNNPACK's ``f32_vgelu_ukernel__*_rational_12_10_div`` computes it."""
    x = x.float()
    xc = x.clamp(-float(GELU_MAX_ABS_X), float(GELU_MAX_ABS_X))
    x2 = xc * xc  # float32
    p = fma32(x2, GELU_ALPHA[5], GELU_ALPHA[4])
    for a in GELU_ALPHA[3::-1]:
        p = fma32(x2, p, a)
    p = xc * p  # odd numerator
    q = fma32(x2, GELU_BETA[5], GELU_BETA[4])
    for b in GELU_BETA[3::-1]:
        q = fma32(x2, q, b)
    erf = p / q  # float32 division
    return (x * 0.5) * (erf + 1.0)


def xnnpack_fully_connected(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """float32 ``a @ w + bias`` as XNNPACK's f32 GEMM: each accumulator starts at the bias and
    takes one FMA per k, in order. ``a`` (…, K), ``w`` (K, N), ``bias`` (N,) → (…, N)."""
    lead = a.shape[:-1]
    a64 = a.detach().reshape(-1, a.shape[-1]).double()  # (M, K)
    w64 = w.detach().double()  # (K, N)
    acc = bias.detach().float().reshape(1, -1).expand(a64.shape[0], -1).double()  # (M, N)
    for k in range(a64.shape[1]):
        acc = torch.addcmul(acc, a64[:, k:k + 1], w64[k]).float().double()  # one FMA per k
    return acc.float().reshape(*lead, w.shape[-1])


class FloatKernels:
    """LiteRT's float GELU, FULLY_CONNECTED, LayerNorm, SUM, L2 norm and (through
    :class:`~edgequant.torch.integer_sim_litert_softmax.SoftmaxKernel`) SOFTMAX for
    :class:`IntegerSim` (mixin)."""

    def float_kernel(self, node, ins: list) -> torch.Tensor | None:
        """``node``'s value as LiteRT's float kernel computes it, or None (torch's op then):
        a float GELU, the float MatMul + bias Add the exporter folds into one
        FULLY_CONNECTED (the MatMul defers to its Add), a LayerNorm, a float Softmax or a
        float ReduceSum / ReduceL2 over one axis."""
        reduce = node.op_type in ("ReduceSum", "ReduceL2")
        data = ins[:1] if reduce else ins  # a reduction's axes: an int64 input
        if self.kernels != "litert" or any(x is not None and not x.is_floating_point()
                                           for x in data):
            return None
        if node.op_type == "LayerNormalization":
            return self._layer_norm(node, ins)
        if node.op_type == "Softmax":  # a float SOFTMAX, whatever grid its output is read on
            return self.litert_softmax(node, ins)
        if self.output_grid(node.outputs[0]) is not None:
            return None  # an integer kernel's output (or one emulated elsewhere)
        if reduce:
            return self._reduce(node, ins)
        if node.op_type == "Gelu" and node.attrs.get("approximate", "none") == "none" and \
                self.input_grid(node.inputs[0], node.label) is None:
            return xnnpack_gelu(ins[0])
        if node.op_type == "Add" and any(t in self._pending_float for t in node.inputs):
            mm_out = node.inputs[0] if node.inputs[0] in self._pending_float else node.inputs[1]
            a, w = self._pending_float.pop(mm_out)
            bias = self.qat.value(node.inputs[1] if node.inputs[0] == mm_out else node.inputs[0])
            return xnnpack_fully_connected(a, w, bias.reshape(-1))
        if node.op_type == "MatMul" and self._float_bias_add(node) is not None:
            self._pending_float[node.outputs[0]] = (ins[0], self.qat.value(node.inputs[1]))
        return None

    def _layer_norm(self, node, ins: list) -> torch.Tensor | None:
        """A float LayerNorm over the last axis as the export decomposes it
        (:func:`layer_norm_decomposed`), else None."""
        x = ins[0]
        axis = int(node.attrs.get("axis", -1)) % x.ndim
        if axis != x.ndim - 1 or (len(node.outputs) > 1 and \
                any(node.outputs[1:])) or self.input_grid(node.inputs[0], node.label) is not None:
            return None
        gamma = ins[1] if len(ins) > 1 else None
        beta = ins[2] if len(ins) > 2 else None
        return layer_norm_decomposed(x, gamma, beta, float(node.attrs.get("epsilon", 1e-5)))

    def _reduce(self, node, ins: list) -> torch.Tensor | None:
        """A float ReduceSum / ReduceL2 over one constant axis (mean pooling's sum over the
        sequence, the embedding's L2 norm) as XNNPACK computes the export's SUM (and MUL,
        SQRT): :func:`xnnpack_reduce_sum`, :func:`xnnpack_reduce_l2`; else None."""
        x = ins[0]
        axes = node.attrs.get("axes")
        if axes is None and len(ins) > 1 and ins[1] is not None:
            axes = [int(a) for a in ins[1].reshape(-1).tolist()]
        if axes is None or len(axes) != 1:
            return None
        fn = xnnpack_reduce_sum if node.op_type == "ReduceSum" else xnnpack_reduce_l2
        return fn(x, int(axes[0]), bool(node.attrs.get("keepdims", 1)))

    def _float_bias_add(self, mm) -> object | None:
        """The Add the TFLite exporter folds into float MatMul ``mm`` (a constant, unquantized
        2-D weight; a constant bias along the last axis; both outputs float), else None."""
        w = mm.inputs[1] if len(mm.inputs) == 2 else None
        if w is None or self.qat.quantizer(w) is not None or not (
                w in self.qat._param_index or w in self.qat._const):
            return None
        weight = self.qat.value(w)
        y = mm.outputs[0]
        users = self._consumers.get(y, [])
        if weight.ndim != 2 or len(users) != 1 or users[0].op_type != "Add" or \
                y in self.qat.output_names or self.output_grid(y) is not None:
            return None
        add = users[0]
        other = add.inputs[1] if add.inputs[0] == y else add.inputs[0]
        if not (other in self.qat._param_index or other in self.qat._const):
            return None
        bias = self.qat.value(other)
        if bias.numel() != weight.shape[1] or any(d != 1 for d in bias.shape[:-1]) or \
                self.output_grid(add.outputs[0]) is not None:
            return None
        return add


__all__ = ["FloatKernels", "fma32", "xnnpack_fully_connected", "xnnpack_gelu"]
