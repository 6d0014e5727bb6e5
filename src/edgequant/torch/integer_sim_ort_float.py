"""onnxruntime's float kernels between the integer ones, emulated for ``kernels="onnxruntime"``.

A quantized transformer still runs some ops in float32 (the plan leaves them float): on
all-MiniLM-L6-v2 w8a8 the FFN-in bias Add, GELU, the FFN-out projection, the residual Adds,
LayerNorm, the attention scale / mask and Softmax. onnxruntime (CPU execution provider,
``ORT_ENABLE_ALL``, as :func:`edgequant.runtime.sessions.ort_session` opens it) runs them,
after its graph optimizations, as (onnxruntime 1.31.1 on x86-64 with AVX-512F, read from the
optimized MiniLM / test-encoder graphs and the kernel sources, checked value by value):

| float op (QDQ graph)          | kernel that runs                          | same as torch?      |
|-------------------------------|-------------------------------------------|---------------------|
| Add, Sub, Mul, Div, Where     | element-wise, one IEEE rounding           | yes                 |
| bias Add → Gelu               | ``com.microsoft.BiasGelu`` (fused)        | no: MLAS erf        |
| MatMul (constant weight), Add | MLAS SGEMM (B pre-packed), then the Add   | no: K-blocked FMAs  |
| LayerNormalization            | ``MlasLayerNormKernelAvx2``               | no: see below       |
| Softmax (last axis)           | MLAS softmax, AVX-512F kernels            | no: polynomial exp  |

No SkipLayerNormalization, Gemm or FusedMatMul fusion happens on these graphs (the residual
Add and the 3-D MatMul + Add with a dynamic batch stay separate nodes; with static 3-D shapes
onnxruntime rewrites MatMul + Add to Reshape → Gemm → Reshape, whose values differ from this
emulation — not covered).
The four kernels that differ are emulated here value for value:

* **LayerNormalization** (``MlasLayerNormKernelAvx2``, rows of 8 or more, a multiple of 8):
  the mean from a float64 sum in 4 lanes divided in float64, rounded to float32; the variance
  ``Σ(x − mean)²`` as FMAs into 8 float32 lanes reduced 4 + 4, 2 + 2, 1 + 1;
  ``inv = 1 / sqrt(var / n + ε)``; ``y = fma((x − mean) · inv, γ, β)``. (The disassembly of
  this onnxruntime build shows exactly these instructions.) torch's ``sqrt`` on float32 is not
  correctly rounded on this CPU (~0.6 % of values one ULP off), so the square root goes
  through float64;
* **GELU** (``BiasGelu`` and ``Gelu`` alike): ``(0.5·v) · (erf(v · float(1/√2)) + 1)`` with
  MLAS's ``MlasErfKernelFma3``: |x| clamped at 3.925, a degree-5 polynomial in x² up to
  |x| = 0.921875, above it ``1 − exp(−p(|x|))`` with a degree-6 polynomial exp scaled by
  ``2^round(x/ln 2)``, every step one fused multiply-add;
* **MatMul** with a constant 2-D weight: MLAS's AVX-512F SGEMM kernel: per K block of
  :data:`SGEMM_STRIDE_K` (the pre-packed stride), each output an in-order chain of FMAs
  from 0, added to the running output (one float32 addition per block); the bias Add follows
  as its own node. Each block is computed with torch's float32 GEMM, which on this CPU is the
  same in-order FMA chain for K ≤ 256 — checked on every call on a few rows against the exact
  chain (:func:`fast_fma_chain`; the exact, slow chain is used if they ever differ);
* **Softmax** over the last axis: ``MlasComputeSumExpF32KernelAvx512F`` (``exp(x − max)``
  with x − max clamped at −103.97, a degree-6 FMA polynomial scaled by ``2^m`` with
  subnormal results kept, summed in 16 lanes (element i into lane i mod 16), reduced 8 + 8,
  pairwise, then (0+1 + 2+3) + (4+5 + 6+7)), times ``1 / sum``.

Fused multiply-adds are emulated exactly (:func:`fma32`: float64 product and sum, the
double-rounding case corrected). GELU's and the softmax exp's polynomials are evaluated once
per distinct input value (:func:`on_distinct`): their inputs come from int8 codes.

What runs elsewhere differs: MLAS dispatches by CPU (an AVX2-only CPU runs 8-lane softmax /
SGEMM kernels, ARM runs NEON or KleidiAI kernels, a CPU without AVX2 the scalar LayerNorm) and
onnxruntime versions change kernels (the AVX2 LayerNorm kernel is recent). Not emulated:
ReduceSum / ReduceL2 / Div (the pooling head: float output, no int8 code downstream), float
MatMuls of two activations, LayerNorm rows narrower than 8 or not a multiple of 8.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger(__name__)

#: float32 lanes of MLAS's AVX2 LayerNorm kernel (and its minimum row width)
LAYER_NORM_LANES = 8
#: MLAS SGEMM K-block for a pre-packed (constant) B: ``MLAS_SGEMM_PACKED_STRIDEK``.
SGEMM_STRIDE_K = 256
#: rows of every GEMM block checked against the exact FMA chain (:func:`fast_fma_chain`)
CHAIN_CHECK_ROWS = 5
#: float32(1/√2) as the Gelu kernels multiply by it (``M_SQRT1_2`` and ``1 / sqrt2_v<float>``
#: round to the same float32).
SQRT1_2 = np.float32(0.7071067811865476)

#: ``MlasErfConstants`` (onnxruntime/core/mlas/lib/erf.cpp), float32.
ERF_UPPER_ABS = np.float32(3.925)
ERF_SPLIT = np.float32(0.921875)
ERF_SMALL = tuple(np.float32(v) for v in (-5.99104969e-4, 4.99339588e-3, -2.67667342e-2,
                                          1.12818025e-1, -3.76124859e-1, 1.28379151e-1))
ERF_BIG = tuple(np.float32(v) for v in (1.72948930e-5, -3.83208680e-4, 3.88393435e-3,
                                        -2.42545605e-2, 1.06777847e-1, 6.34846687e-1,
                                        1.28717512e-1))
ERF_EXP_LOWER = np.float32(-88.3762626647949)
ERF_EXP = tuple(np.float32(v) for v in (1.38319808e-3, 8.37550033e-3, 4.16689515e-2,
                                        1.66664466e-1, 4.99999851e-1, 1.0, 1.0))
LOG2E = np.float32(1.44269504088896341)
LN2_HI = np.float32(-6.93145752e-1)
LN2_LO = np.float32(-1.42860677e-6)
#: 1.5 · 2²³: adding it rounds a float32 to an integer (``MLAS_ROUNDING_BIAS_MAGIC``).
ROUNDING_BIAS = np.float32(12582912.0)

#: ``MlasExpConstants`` (onnxruntime/core/mlas/lib/compute.cpp) for the softmax exp.
#: (the AVX-512F kernel clamps at ``LowerRange``, not the C kernel's ``LowerRangeSumExp``)
SOFTMAX_EXP_LOWER = np.float32(-103.9720840454)
SOFTMAX_POLY = tuple(np.float32(float.fromhex(h)) for h in (
    "0x1.694000p-10", "0x1.125edcp-7", "0x1.555b5ap-5", "0x1.555450p-3", "0x1.fffff6p-2",
    "0x1.000000p+0"))
#: lanes of the AVX-512F sum-of-exp accumulator
SOFTMAX_LANES = 16

#: float64 bit pattern of a float32 rounding midpoint: the 29 mantissa bits float32 drops
#: are exactly 1000…0 (valid for results in float32's normal range).
_DROPPED = (1 << 29) - 1
_HALF = 1 << 28


def _f32(v) -> torch.Tensor:
    return v.float() if isinstance(v, torch.Tensor) else torch.tensor(float(np.float32(v)))


def fma32(a: torch.Tensor | float, b: torch.Tensor | float, c: torch.Tensor | float
          ) -> torch.Tensor:
    """float32 ``a·b + c`` rounded once, as a hardware FMA. The float64 product of two
    float32 is exact; the float64 sum is rounded, and rounding that to float32 again
    differs from one rounding only when the float64 sum lands exactly on a float32 midpoint
    while the exact sum does not: those elements are nudged one float64 ULP toward the
    exact sum (its error from Knuth's two-sum) before the float32 rounding."""
    p = _f32(a).double() * _f32(b).double()  # exact
    c64 = _f32(c).double()
    s = p + c64
    tie = (s.view(torch.int64) & _DROPPED) == _HALF
    if bool(tie.any()):
        bb = s - p
        err = (p - (s - bb)) + (c64 - bb)  # p + c == s + err exactly
        s = torch.where(tie & (err != 0), _toward(s, err), s)
    return s.float()


def _fma_chain_step(acc64: torch.Tensor, a64: torch.Tensor, b64: torch.Tensor) -> torch.Tensor:
    """One in-place FMA step of a GEMM on float64 holders of float32 values:
    ``acc ← float32(acc + a·b)`` rounded once (as :func:`fma32`)."""
    s = torch.addcmul(acc64, a64, b64)  # exact product, one float64 rounding
    tie = (s.view(torch.int64) & _DROPPED) == _HALF
    if bool(tie.any()):
        p = (a64 * b64).expand_as(s)
        bb = s - p
        err = (p - (s - bb)) + (acc64 - bb)
        s = torch.where(tie & (err != 0), _toward(s, err), s)
    return s.float().double()


def _toward(s: torch.Tensor, err: torch.Tensor) -> torch.Tensor:
    """``s`` moved one float64 ULP in the direction of ``err``'s sign."""
    return torch.nextafter(s, torch.where(err > 0, torch.inf, -torch.inf).to(s.dtype))


def mlas_erf(x: torch.Tensor) -> torch.Tensor:
    """float32 erf as MLAS's ``MlasErfKernelFma3`` computes it (every lane alike)."""
    x = x.float()
    sign = torch.signbit(x)
    a = torch.minimum(x.abs(), _f32(ERF_UPPER_ABS))  # (…) |x| clamped
    s = a * a
    r = _f32(ERF_SMALL[0]).expand_as(a)
    for c in ERF_SMALL[1:]:
        r = fma32(r, s, c)
    small = fma32(r, a, a)
    big_lane = a > _f32(ERF_SPLIT)
    ab = torch.where(big_lane, a, torch.zeros_like(a))
    r = _f32(ERF_BIG[0]).expand_as(a)
    for c in ERF_BIG[1:]:
        r = fma32(r, ab, c)
    r = fma32(r, ab, ab)
    e = torch.maximum(-r, _f32(ERF_EXP_LOWER))  # exponent argument −p(|x|)
    m = fma32(LOG2E, e, ROUNDING_BIAS) - _f32(ROUNDING_BIAS)  # round(e / ln 2)
    f = fma32(m, LN2_HI, e)
    f = fma32(m, LN2_LO, f)
    y = _f32(ERF_EXP[0]).expand_as(a)
    for c in ERF_EXP[1:]:
        y = fma32(y, f, c)
    y = 1.0 - _scale2(y, m)  # 1 − exp(e)
    out = torch.where(big_lane, y, small)
    return torch.where(sign, -out, out)


def ort_gelu(v: torch.Tensor) -> torch.Tensor:
    """Exact GELU as onnxruntime's ``Gelu`` / ``BiasGelu`` kernels compute it from the
    (bias-added) float32 input ``v``: ``(0.5·v) · (erf(v · float(1/√2)) + 1)``."""
    v = v.float()
    return torch.where(v == 0, v, on_distinct(_gelu, v))  # GELU(±0) = ±0


def _gelu(v: torch.Tensor) -> torch.Tensor:
    return (v * 0.5) * (mlas_erf(v * _f32(SQRT1_2)) + 1.0)


def on_distinct(fn, x: torch.Tensor) -> torch.Tensor:
    """Element-wise ``fn(x)`` evaluated once per distinct value of ``x`` (exact: the same
    function of the same float32). The float ops here read few distinct values — a GELU's
    input is a dequantized int8 code plus a per-channel bias (≤ 256 · channels values), a
    softmax's ``x − max`` a difference of two such scores — so this cuts the emulation's
    cost several times. −0.0 and 0.0 are one value here."""
    values, index = torch.unique(x.reshape(-1), return_inverse=True)
    return fn(values)[index].reshape(x.shape)


def ort_layer_norm(x: torch.Tensor, gamma: torch.Tensor | None, beta: torch.Tensor | None,
                   eps: float) -> torch.Tensor:
    """LayerNormalization over the last axis as MLAS's ``MlasLayerNormKernelAvx2`` computes it
    (rows of 8 or more values, a multiple of 8; :func:`ort_layer_norm_supported`): the mean
    from a float64 sum in 4 lanes (i mod 4, reduced (0+2) + (1+3)) divided in float64 and
    rounded to float32; the variance ``Σ(x − mean)²`` as FMAs into 8 float32 lanes (reduced
    4 + 4, 2 + 2, 1 + 1); ``inv = 1 / sqrt(var / n + ε)``; ``y = fma((x − mean) · inv, γ, β)``."""
    x = x.float()
    n = x.shape[-1]
    lanes4 = x.double().reshape(*x.shape[:-1], n // 4, 4)  # (…, n/4, 4) float64
    s4 = lanes4[..., 0, :]
    for i in range(1, n // 4):
        s4 = s4 + lanes4[..., i, :]  # in order, per lane
    s2 = s4[..., :2] + s4[..., 2:]
    mean = ((s2[..., 0] + s2[..., 1]) / n).float()[..., None]  # (…, 1) float32
    d = x - mean  # (…, n) float32
    lanes8 = d.reshape(*x.shape[:-1], n // 8, 8)
    v = torch.zeros(*x.shape[:-1], 8)
    for i in range(n // 8):
        v = fma32(lanes8[..., i, :], lanes8[..., i, :], v)  # (…, 8) float32
    v = v[..., :4] + v[..., 4:]
    v = v[..., :2] + v[..., 2:]
    var = (v[..., 0] + v[..., 1])[..., None]  # (…, 1)
    inv = 1.0 / _sqrt32(var / float(n) + float(np.float32(eps)))  # (…, 1)
    y = d * inv  # (…, n)
    g = gamma.float() if gamma is not None else torch.ones(())
    return fma32(y, g, beta.float()) if beta is not None else y * g


def _sqrt32(x: torch.Tensor) -> torch.Tensor:
    """Correctly rounded float32 square root (``vsqrtss``): through float64, where rounding
    twice is harmless for sqrt. torch's own float32 ``sqrt`` is not correctly rounded on
    this CPU (1 ULP off on ~0.5 % of the LayerNorm rows measured)."""
    return torch.sqrt(x.double()).float()


def ort_layer_norm_supported(width: int) -> bool:
    """Whether :func:`ort_layer_norm` covers rows of ``width`` values: MLAS dispatches rows of
    8 or more to its AVX2 kernel; widths that are not a multiple of 8 take scalar tails
    (contracted to FMAs by the compiler: not emulated)."""
    return width >= LAYER_NORM_LANES and width % LAYER_NORM_LANES == 0


def fma_chain(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """float32 ``a @ w`` with each output an in-order FMA chain from 0 over k, exactly
    (:func:`fma32` per step). ``a`` (M, K), ``w`` (K, N) → (M, N). Slow: one pass per k."""
    a64 = a.detach().double()  # (M, K)
    w64 = w.detach().double()  # (K, N)
    acc = torch.zeros(a64.shape[0], w64.shape[1], dtype=torch.float64)  # (M, N)
    for k in range(a64.shape[1]):
        acc = _fma_chain_step(acc, a64[:, k:k + 1], w64[k])
    return acc.float()


def fast_fma_chain(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """:func:`fma_chain`, fast: torch's float32 GEMM (MKL on x86-64) computes each output of a
    block of ``K ≤ SGEMM_STRIDE_K`` as the same in-order FMA chain (measured equal); this is
    checked on every call against :func:`fma_chain` on :data:`CHAIN_CHECK_ROWS` rows (the
    first, the last, a few between: every column), and the exact chain is used if any differ."""
    a = a.detach().float()
    w = w.detach().float()
    y = a @ w  # (M, N)
    m = a.shape[0]
    rows = sorted({min(m - 1, int(i)) for i in np.linspace(0, m - 1, CHAIN_CHECK_ROWS)})
    if torch.equal(fma_chain(a[rows], w), y[rows]):
        return y
    log.warning("torch's GEMM is not an in-order FMA chain here: exact (slow) SGEMM emulation")
    return fma_chain(a, w)


def mlas_sgemm(a: torch.Tensor, w: torch.Tensor, stride_k: int = SGEMM_STRIDE_K) -> torch.Tensor:
    """float32 ``a @ w`` as MLAS's AVX-512F SGEMM with a pre-packed constant ``w``: per K block
    of ``stride_k``, each output an in-order FMA chain from 0; the first block stored, each
    later one added to it (``fma(acc, alpha=1, C)``: one float32 addition).
    ``a`` (…, K), ``w`` (K, N) → (…, N)."""
    lead = a.shape[:-1]
    a2 = a.detach().reshape(-1, a.shape[-1]).float()  # (M, K)
    out = None
    for k0 in range(0, a2.shape[1], stride_k):
        blk = fast_fma_chain(a2[:, k0:k0 + stride_k], w[k0:k0 + stride_k])  # (M, N)
        out = blk if out is None else out + blk
    return out.reshape(*lead, w.shape[-1])


def mlas_softmax(x: torch.Tensor) -> torch.Tensor:
    """float32 softmax over the last axis as MLAS (AVX-512F kernels) computes it."""
    x = x.float()
    neg_max = -x.max(dim=-1, keepdim=True).values  # (…, 1)
    e = on_distinct(_softmax_exp, x + neg_max)  # (…, D)
    d = x.shape[-1]
    pad = (-d) % SOFTMAX_LANES
    lanes = torch.nn.functional.pad(e, (0, pad)).reshape(*e.shape[:-1], -1, SOFTMAX_LANES)
    acc = lanes[..., 0, :]
    for i in range(1, lanes.shape[-2]):
        acc = acc + lanes[..., i, :]  # (…, 16) float32, element i into lane i % 16
    a8 = acc[..., 8:] + acc[..., :8]  # vextractf64x4 + vaddps
    h1 = a8[..., 0::2] + a8[..., 1::2]  # vhaddps: (a0+a1, a2+a3 | a4+a5, a6+a7)
    total = (h1[..., 0] + h1[..., 1]) + (h1[..., 2] + h1[..., 3])  # vhaddps, vaddss
    return e * (1.0 / total)[..., None]


def _softmax_exp(v: torch.Tensor) -> torch.Tensor:
    """exp(v) for v ≤ 0 as ``MlasComputeSumExpF32KernelAvx512F`` computes each lane."""
    v = torch.maximum(v, _f32(SOFTMAX_EXP_LOWER))
    m = fma32(v, LOG2E, ROUNDING_BIAS) - _f32(ROUNDING_BIAS)  # round(v / ln 2)
    v = fma32(m, LN2_HI, v)
    v = fma32(m, LN2_LO, v)
    p = _f32(SOFTMAX_POLY[0]).expand_as(v)
    for c in SOFTMAX_POLY[1:] + SOFTMAX_POLY[-1:]:
        p = fma32(p, v, c)
    return _scale2(p, m)  # vscalefps: p · 2^m


def _scale2(p: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """float32 ``p · 2^m`` for integer-valued ``m``, rounded once (subnormal results too, as
    ``vscalefps`` and the exponent-add of MLAS do): exact in float64, then float32."""
    return (p.double() * torch.pow(2.0, m.double())).float()


class OrtFloatKernels:
    """onnxruntime's float LayerNorm, GELU, constant-weight MatMul and Softmax for
    :class:`~edgequant.torch.integer_sim.IntegerSim` (mixin; ``kernels="onnxruntime"``)."""

    def ort_float_kernel(self, node, ins: list) -> torch.Tensor | None:
        """``node``'s float32 value as onnxruntime's float kernel computes it, or None (torch's
        op then: the element-wise ops round alike). Called for nodes the deployed model does
        not run as integer kernels; their float operands are the dequantized values the QDQ
        graph hands them."""
        if self.kernels != "onnxruntime" or any(
                x is not None and not x.is_floating_point() for x in ins):
            return None
        op = node.op_type
        if op == "LayerNormalization":
            return self._ort_layer_norm(node, ins)
        if op == "Gelu" and _text(node.attrs.get("approximate", "none")) == "none":
            return ort_gelu(ins[0])
        if op == "Softmax" and int(node.attrs.get("axis", -1)) % ins[0].ndim == ins[0].ndim - 1:
            return mlas_softmax(ins[0])
        if op == "MatMul" and self._ort_float_weight(node) is not None and not (
                ins[0].ndim < 3 and any(u.op_type == "Add"
                                        for u in self._consumers.get(node.outputs[0], []))):
            return mlas_sgemm(ins[0], ins[1])  # (2-D input + Add: fused into Gemm, not covered)
        return None

    def _ort_layer_norm(self, node, ins: list) -> torch.Tensor | None:
        x = ins[0]
        axis = int(node.attrs.get("axis", -1)) % x.ndim
        if axis != x.ndim - 1 or not ort_layer_norm_supported(x.shape[-1]) or (
                len(node.outputs) > 1 and any(node.outputs[1:])):
            return None
        gamma = ins[1] if len(ins) > 1 else None
        beta = ins[2] if len(ins) > 2 else None
        return ort_layer_norm(x, gamma, beta, float(node.attrs.get("epsilon", 1e-5)))

    def _ort_float_weight(self, mm) -> str | None:
        """The constant, unquantized 2-D float weight of MatMul ``mm`` whose other operand is
        a float (unquantized) activation — what onnxruntime runs as MLAS SGEMM with a
        pre-packed B — else None."""
        if len(mm.inputs) != 2 or self.input_grid(mm.inputs[0], mm.label) is not None:
            return None
        w = mm.inputs[1]
        if self.qat.quantizer(w) is not None or not (
                w in self.qat._param_index or w in self.qat._const):
            return None
        return w if self.qat.value(w).ndim == 2 else None


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


__all__ = ["SGEMM_STRIDE_K", "OrtFloatKernels", "fast_fma_chain", "fma32", "fma_chain",
           "mlas_erf", "mlas_sgemm", "mlas_softmax", "ort_gelu", "ort_layer_norm",
           "ort_layer_norm_supported"]
