"""Learned rounding inside whole-graph QAT (network-wise AdaRound): each quantized weight may
only take ``⌊w/s⌋`` or ``⌊w/s⌋ + 1``, and a continuous variable per weight picks which.

PTQ's AdaRound (:mod:`edgequant.ptq.recovery.adaround_layer`) learns up/down roundings layer by
layer, each layer matching its own float outputs. Here the same relaxation — the integer is
``clip(⌊w_ref/s⌋ + h(V) + z) − z`` with AdaRound's rectified sigmoid ``h``
(:mod:`edgequant.ptq.recovery.adaround_relax`) — sits inside the QAT graph, so the rounding
variables ``V`` are trained end to end by the task or distillation loss through every later
layer (as BRECQ / NWQ do), and ``fit_qat`` adds the annealed regulariser
``λ · mean(1 − |2h − 1|^β)`` (β 20 → 2 after a warm-up) that drives each ``h`` to 0 or 1.
Only one bit per weight is free: with few training photos that is what can be taught without
fitting them (moving int4 weights freely overfits six photos: docs/qat.md, "4-bit weights").

:func:`learn_rounding` swaps each weight's :class:`~edgequant.torch.quantizers.WeightQuantizer`
for a :class:`LearnedRoundingQuantizer` that keeps the same qparams:

- training mode: the soft weight ``s · (clip(⌊w_ref/s⌋ + h(V) + z) − z)``; gradients reach
  ``V`` and, with LSQ, the scale (``d/ds = q − z``, LSQ's gradient scaling); with
  ``straight_through=True`` the hardened weight, with the soft weight's gradients;
- eval mode: the hardened integers (``h ≥ ½``), exactly what ``convert`` ships;
- every forward writes the hardened weight's grid points ``s · (q − z)`` into the weight
  parameter itself, so after a forward ``GraphQAT.value(name)`` rounds to nearest back to the
  hardened integers: the integer-kernel emulation and ``state_dict`` need no special case.
  An optimizer step after the last forward may flip roundings or move a scale, so ``convert``
  rewrites the grid points first (``graph_convert._refresh_weights``).

The qparams stay fixed (a plain quantizer recomputes them from the weight's range at every
step; here the weight is the integers): only a learned (LSQ) scale moves, by gradient, and the
int32-bias fit (``GraphQAT.fit_weight_qparams``) may still raise a channel's scale.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch import nn

from edgequant.ptq.recovery.adaround_relax import (
    rectified_logit,
    rectified_sigmoid,
    rounding_regularizer,
)
from edgequant.qparams import MIN_SCALE
from edgequant.torch.fake_quant import _broadcast
from edgequant.torch.quantizers import WeightQuantizer

log = logging.getLogger(__name__)

#: default distance of the initial ``h`` from the start's choice (0 / 1): inside the rectified
#: sigmoid's unsaturated range, so gradients reach every ``V`` from the first step
DEFAULT_MARGIN = 0.1


def _grad_scaled(x: torch.Tensor, g: float) -> torch.Tensor:
    """``x`` in the forward pass, its gradient times ``g`` (LSQ's gradient scaling)."""
    return (x - x * g).detach() + x * g


class LearnedRoundingQuantizer(WeightQuantizer):
    """A weight quantizer whose integers are ``⌊w_ref/s⌋`` plus a learned bit per weight.

    Made by :func:`learn_rounding` from a fitted :class:`WeightQuantizer` (same spec, qparams,
    clip ratios); ``base`` holds ``⌊w_ref/s⌋`` (float32 integers, the weight's shape) and
    ``v`` the rounding variables. The weight the forward receives only gives the grid points
    of the hardened integers back (see the module docstring)."""

    def __init__(self, source: WeightQuantizer, base: torch.Tensor, v0: torch.Tensor,
                 straight_through: bool = False) -> None:
        channels = source.scale.numel() if source.axis is not None else 1
        super().__init__(source.spec, channels, source.learn_scale)
        self.load_state_dict(source.state_dict())
        self.register_buffer("base", base.to(torch.float32).clone())
        self.v = nn.Parameter(v0.to(torch.float32).clone())
        #: training forward on the hardened integers, gradients through ``h`` (STE)
        self.straight_through = straight_through

    def soft(self) -> torch.Tensor:
        """``h(V)`` in [0, 1] per weight."""
        return rectified_sigmoid(self.v)

    def hard(self) -> torch.Tensor:
        """The hardened choice per weight: 1.0 (round up) where ``h(V) ≥ ½``, else 0.0."""
        return (self.soft() >= 0.5).to(torch.float32)

    def integers(self) -> torch.Tensor:
        """The hardened integers (float32 values, the weight's shape) the model ships."""
        z = _broadcast(self.zero_point, self.axis, self.base.ndim)
        return torch.clamp(self.base + self.hard() + z, self.spec.qtype.qmin,
                           self.spec.qtype.qmax)

    def _update(self, w: torch.Tensor) -> None:
        if not bool(self.initialized):  # qparams are fixed once fitted (learn_rounding fits)
            super()._update(w)

    @torch.no_grad()
    def grid_weight(self) -> torch.Tensor:
        """``s · (q − z)`` of the hardened integers (float32): rounds back to them exactly
        (``|q − z| ≤ 2^bits``, far below the float32 error that could cross half a step)."""
        s = _broadcast(self.effective_scale(), self.axis, self.base.ndim)
        z = _broadcast(self.zero_point, self.axis, self.base.ndim)
        return (self.integers() - z) * s

    def forward(self, w: torch.Tensor, update: bool = True) -> torch.Tensor:
        """Soft (training) or hardened (eval) weight; writes the hardened grid points into
        ``w`` (the weight parameter) as a side effect."""
        with torch.no_grad():
            w.copy_(self.grid_weight())
        z = _broadcast(self.zero_point, self.axis, self.base.ndim)
        if not self.training:
            h = self.hard()
        elif self.straight_through:  # the hardened value, the soft value's gradient
            soft = self.soft()
            h = self.hard() + (soft - soft.detach())
        else:
            h = self.soft()
        q = torch.clamp(self.base + h + z, self.spec.qtype.qmin, self.spec.qtype.qmax)
        if self.learn_scale:
            n = self.base.numel() // max(1, self.scale.numel())  # weights per scale
            g = 1.0 / math.sqrt(max(1, n) * max(1, self.spec.qtype.qmax))
            s = _grad_scaled(self.scale, g).clamp_min(MIN_SCALE)
        else:
            s = self.scale
        return (q - z) * _broadcast(s.to(torch.float32), self.axis, self.base.ndim)

    def extra_repr(self) -> str:
        return super().extra_repr() + ", learned rounding"


def rounding_quantizers(module: nn.Module) -> list[LearnedRoundingQuantizer]:
    """The learned-rounding quantizers of ``module`` (empty: no learned rounding)."""
    return [m for m in module.modules() if isinstance(m, LearnedRoundingQuantizer)]


def rounding_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The rounding variables ``V`` of ``module`` (one tensor per weight)."""
    return [q.v for q in rounding_quantizers(module)]


def rounding_loss(module: nn.Module, beta: float) -> torch.Tensor:
    """AdaRound's regulariser ``1 − |2h − 1|^β`` averaged over every rounding variable."""
    qs = rounding_quantizers(module)
    total = sum(rounding_regularizer(q.soft(), beta).sum() for q in qs)
    return total / max(1, sum(q.v.numel() for q in qs))


@torch.no_grad()
def rounding_stats(module: nn.Module) -> dict[str, float]:
    """``undecided``: fraction of ``h`` still in (0.01, 0.99); ``up``: fraction rounded up;
    ``weights``: how many rounding variables."""
    qs = rounding_quantizers(module)
    n = sum(q.v.numel() for q in qs)
    if not n:
        return {"weights": 0, "undecided": 0.0, "up": 0.0}
    und = sum(int(((q.soft() > 0.01) & (q.soft() < 0.99)).sum()) for q in qs)
    up = sum(int(q.hard().sum()) for q in qs)
    return {"weights": n, "undecided": und / n, "up": up / n}


@torch.no_grad()
def learn_rounding(qat: nn.Module, reference: dict[str, np.ndarray] | None = None,
                   margin: float | None = DEFAULT_MARGIN, straight_through: bool = False
                   ) -> list[str]:
    """Give every quantized weight of the whole-graph QAT model ``qat`` a learned rounding,
    in place; returns the weights' names.

    ``reference``: the float weights (by initializer name) whose ``⌊w/s⌋`` / ``⌊w/s⌋ + 1``
    are the two allowed integers; a weight missing there uses its current value
    (round-to-nearest start). None: ``qat.rounding_reference`` — from PTQ's AdaRound start
    (``prepare_qat`` with ``adaround=True``), the recovered float weights AdaRound rounded (the
    QAT weights are then its grid points), else nothing. Each weight starts at the integer its current
    value rounds to (AdaRound's or nearest's choice), moved to the nearer allowed one if it is
    neither; ``h`` starts ``margin`` away from that choice (0 < margin < ½), or with
    ``margin=None`` at the reference's fractional part ``w/s − ⌊w/s⌋`` (AdaRound's own start:
    the soft weight equals the float weight). The qparams are those the next forward would
    compute (the int32-bias fit included) and stay fixed from now on (LSQ scales still train).
    ``straight_through=True``: the training forward uses the hardened integers too (the
    loss sees the deployed rounding; gradients reach ``V`` through ``h`` unchanged, a
    straight-through estimator), so a weight flips when its ``h`` crosses ½.
    """
    from edgequant.torch.graph_qat import GraphQAT

    if not isinstance(qat, GraphQAT):
        raise TypeError(f"learned rounding needs a whole-graph QAT model (GraphQAT, from "
                        f"prepare_qat(..., example_inputs=...)), got {type(qat).__name__}")
    if margin is not None and not 0.0 < margin < 0.5:
        raise ValueError(f"margin={margin!r} is not allowed: use 0 < margin < 0.5, or None "
                         "(start h at the float weight's fractional part)")
    reference = dict(qat.rounding_reference if reference is None else reference)
    names = []
    for name in qat.initializer_names():
        q = qat.quantizer(name)
        if (not isinstance(q, WeightQuantizer) or isinstance(q, LearnedRoundingQuantizer)
                or qat.plan.tensors[name].role != "weight"):
            continue
        w = qat.value(name)
        if not q.learn_scale or not bool(q.initialized):
            q._update(w)
        qat.fit_weight_qparams(name)  # the scale the forward would use (int32-bias fit)
        s = _broadcast(q.effective_scale(), q.axis, w.ndim)
        ref = torch.from_numpy(np.array(reference.get(name, w.detach().numpy()), np.float32))
        if ref.shape != w.shape:
            raise ValueError(f"reference {name!r}: shape {tuple(ref.shape)} is not the "
                             f"weight's {tuple(w.shape)}")
        ratio = torch.div(ref, s)  # float32, as quantize() divides
        base = torch.floor(ratio)
        if margin is None:
            h0 = torch.clamp(ratio - base, 1e-4, 1 - 1e-4)
        else:
            up = torch.round(torch.div(w.detach(), s)) > base  # the start's integer
            h0 = torch.where(up, torch.tensor(1 - margin), torch.tensor(margin))
        v0 = torch.from_numpy(rectified_logit(h0.numpy()).astype(np.float32))
        k = qat._key[name]
        qat.weight_quant[k] = LearnedRoundingQuantizer(q, base, v0, straight_through)
        qat.weight_quant[k](w)  # the weight parameter on the hardened grid points
        names.append(name)
    log.info("learned rounding: %d weight(s), %d rounding variables", len(names),
             sum(q.v.numel() for q in rounding_quantizers(qat)))
    return names


__all__ = ["DEFAULT_MARGIN", "LearnedRoundingQuantizer", "learn_rounding", "rounding_loss",
           "rounding_parameters", "rounding_quantizers", "rounding_stats"]
