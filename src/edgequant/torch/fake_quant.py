"""Torch twin of :func:`edgequant.primitives.fake_quantize`, with straight-through gradients.

The forward pass is bit-exact with the numpy version (ONNX QuantizeLinear/DequantizeLinear):
``x / scale`` in float32, round half to even (or half away), add the zero point, clamp to
``[qmin, qmax]``, then ``(q − zero_point) · scale`` in float32. It is implemented inside
``torch.autograd.Function`` s rather than with the ``x + (fq(x) − x).detach()`` trick, because
that trick rounds twice in float32 and is *not* bit-exact — and the whole point of QAT here is
that the deployed integer model computes what training saw.

Gradients:

| function                | d/dx                                  | d/dscale                           |
|-------------------------|---------------------------------------|------------------------------------|
| ``fake_quantize``       | 1 inside ``[qmin, qmax]``, 0 outside   | none (scale is a buffer)           |
| ``fake_quantize_lsq``   | same clipped straight-through          | LSQ (Esser et al. 2020), times     |
|                         |                                       | ``grad_scale = 1/sqrt(N · qmax)``  |
"""

from __future__ import annotations

import math

import numpy as np
import torch

from edgequant.qparams import MIN_SCALE, QParams
from edgequant.spec import Granularity, PerChannel, PerTensor, QType, Rounding


def _broadcast(p: torch.Tensor, axis: int | None, ndim: int) -> torch.Tensor:
    """Reshape a per-channel parameter to broadcast along ``axis`` of an ``ndim`` tensor."""
    if axis is None or p.ndim == 0:
        return p
    axis = axis % ndim
    return p.reshape([-1 if i == axis else 1 for i in range(ndim)])


def _round(v: torch.Tensor, rounding: Rounding) -> torch.Tensor:
    """Round half to even (``torch.round``, like ``np.rint``) or half away from zero."""
    if rounding == "half_even":
        return torch.round(v)
    return torch.sign(v) * torch.floor(torch.abs(v) + 0.5)


def _integers(
    x: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor, qmin: int, qmax: int, rounding: Rounding
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(q, v)``: the clamped integers (as float32) and the unclamped ``round(x/s) + zp``."""
    v = _round(torch.div(x, scale), rounding) + zp  # float32, same ops as numpy's quantize
    # NaN has no integer: onnxruntime (and edgequant.primitives) give qmin.
    v = torch.nan_to_num(v, nan=float(qmin), posinf=float(qmax), neginf=float(qmin))
    return torch.clamp(v, qmin, qmax), v


class _FakeQuantSTE(torch.autograd.Function):
    """Fake quantization with a clipped straight-through estimator for ``x``."""

    @staticmethod
    def forward(ctx, x, scale, zp, qmin, qmax, rounding):  # type: ignore[override]
        q, v = _integers(x, scale, zp, qmin, qmax, rounding)
        ctx.save_for_backward((v >= qmin) & (v <= qmax))
        return (q - zp) * scale  # float32: small integers are exact, one rounding in the product

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None, None


class _FakeQuantLSQ(torch.autograd.Function):
    """Fake quantization whose scale is learned (LSQ): gradients for ``x`` and ``scale``."""

    @staticmethod
    def forward(ctx, x, scale, zp, qmin, qmax, rounding, axis, grad_scale):  # type: ignore[override]
        q, v = _integers(x, scale, zp, qmin, qmax, rounding)
        ctx.save_for_backward(x, scale, q, v, zp)
        ctx.qrange = (qmin, qmax)
        ctx.axis = axis
        ctx.grad_scale = grad_scale
        return (q - zp) * scale

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, scale, q, v, zp = ctx.saved_tensors
        qmin, qmax = ctx.qrange
        inside = (v >= qmin) & (v <= qmax)
        # Inside the range x̂ = round(x/s)·s, so dx̂/ds = round(x/s) − x/s; clamped values are
        # (qmin − zp)·s or (qmax − zp)·s, so dx̂/ds = q − zp there.
        dscale = torch.where(inside, (v - zp) - x / scale, q - zp)
        g = grad * dscale * ctx.grad_scale
        if ctx.axis is None:
            gs = g.sum().reshape(scale.shape)
        else:
            axis = ctx.axis % x.ndim
            gs = g.sum(dim=[i for i in range(x.ndim) if i != axis]).reshape(scale.shape)
        return grad * inside, gs, None, None, None, None, None, None


def _axis_of(granularity: Granularity) -> int | None:
    if isinstance(granularity, PerTensor):
        return None
    if isinstance(granularity, PerChannel):
        return granularity.axis
    raise ValueError(
        f"granularity {granularity!r} is not allowed for QAT fake quantization: "
        "use PerTensor or PerChannel"
    )


def fake_quantize(
    x: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor,
    qtype: QType,
    axis: int | None = None,
    rounding: Rounding = "half_even",
) -> torch.Tensor:
    """Fake-quantize ``x`` (float32) with ONNX semantics and a clipped straight-through gradient.

    ``scale`` / ``zero_point`` are 0-d (per tensor) or 1-d along ``axis`` (per channel);
    ``zero_point`` holds integers stored as float32.
    """
    s = _broadcast(scale.to(torch.float32), axis, x.ndim)
    z = _broadcast(zero_point.to(torch.float32), axis, x.ndim)
    return _FakeQuantSTE.apply(x.to(torch.float32), s, z, qtype.qmin, qtype.qmax, rounding)


def fake_quantize_lsq(
    x: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor,
    qtype: QType,
    axis: int | None = None,
    rounding: Rounding = "half_even",
    grad_scale: float | None = None,
) -> torch.Tensor:
    """Like :func:`fake_quantize` but ``scale`` (a leaf, e.g. a Parameter) gets the LSQ gradient.

    ``grad_scale`` defaults to ``1 / sqrt(N · qmax)`` with ``N`` the number of elements
    sharing one scale (per channel: elements per channel), as in the LSQ paper.
    """
    if grad_scale is None:
        n = x.numel() if axis is None or scale.ndim == 0 else x.numel() // max(1, scale.numel())
        grad_scale = 1.0 / math.sqrt(max(1, n) * max(1, qtype.qmax))
    s = _broadcast(scale.to(torch.float32).clamp_min(MIN_SCALE), axis, x.ndim)
    z = _broadcast(zero_point.to(torch.float32), axis, x.ndim)
    ax = None if scale.ndim == 0 else axis
    return _FakeQuantLSQ.apply(
        x.to(torch.float32), s, z, qtype.qmin, qtype.qmax, rounding, ax, grad_scale
    )


def fake_quantize_qparams(
    x: torch.Tensor, qp: QParams, rounding: Rounding = "half_even"
) -> torch.Tensor:
    """:func:`fake_quantize` with an :class:`edgequant.qparams.QParams` (PerTensor/PerChannel)."""
    scale = torch.from_numpy(np.asarray(qp.scale, dtype=np.float32))
    zp = torch.from_numpy(np.asarray(qp.zero_point).astype(np.float32))
    return fake_quantize(x, scale, zp, qp.qtype, _axis_of(qp.granularity), rounding)
