"""Weight updates measured in quantization steps (``fit_qat(step_lr=...)``).

Adam moves every parameter by about ``lr`` per update whatever its gradient's size, so one
absolute learning rate means very different things to different int4 weights: a channel
whose step (scale) is 0.003 is moved across many levels by ``lr = 1e-4`` over a few hundred
updates, while a channel with step 0.3 (BN-folded depthwise weights) never leaves its level
— a weight change below half a step does not change the rounded weight at all. Measured on
EfficientNet-Lite0 w4a8 (docs/qat.md): lr 1e-5 trained little but biases, lr 1e-4 scrambled
the small-step layers and fell far below PTQ.

``step_lr`` expresses the weights' learning rate in units of *their own* quantization step
instead: after each optimizer step the update of every quantized weight is rescaled by its
current per-channel scale, so ``step_lr = 0.02`` moves any weight by ~2 % of one of its
integer steps per update — the same meaning for every layer and every bit width (an int8
weight moves 16× less than an int4 weight of the same range). Other parameters (biases,
float constants, LSQ scales) keep their absolute learning rates.
"""

from __future__ import annotations

import torch
from torch import nn

from edgequant.torch.fake_quant import _broadcast
from edgequant.torch.quantizers import WeightQuantizer


class StepScaledUpdates:
    """The quantized weights of a whole-graph QAT model and their step-scaled updates.

    Use: optimise :attr:`params` with learning rate ``step_lr``; call :meth:`before` just
    before ``optimizer.step()`` and :meth:`after` just after it.
    """

    def __init__(self, qat: nn.Module) -> None:
        from edgequant.torch.graph_qat import GraphQAT

        if not isinstance(qat, GraphQAT):
            raise TypeError(f"step_lr needs a whole-graph QAT model (GraphQAT, from "
                            f"prepare_qat(..., example_inputs=...)), got {type(qat).__name__}")
        #: (parameter, its weight quantizer)
        self.pairs = [(qat.value(name), qat.quantizer(name)) for name in qat.initializer_names()
                      if isinstance(qat.quantizer(name), WeightQuantizer)]
        if not self.pairs:
            raise ValueError("step_lr: the model has no quantized trainable weight")
        self._old: list[tuple[torch.Tensor, torch.Tensor]] = []

    @property
    def params(self) -> list[nn.Parameter]:
        """The quantized weight parameters (give them learning rate ``step_lr``)."""
        return [p for p, _ in self.pairs]

    @torch.no_grad()
    def before(self) -> None:
        """Remember the weights and the steps the forward pass used (before the optimizer
        step moves learned scales)."""
        self._old = [(p.detach().clone(), _broadcast(q.effective_scale(), q.axis, p.ndim))
                     for p, q in self.pairs]  # (weight, step (C, 1, ...) or ())

    @torch.no_grad()
    def after(self) -> None:
        """Rescale each weight's update by its quantization step (per channel)."""
        for (p, _), (old, step) in zip(self.pairs, self._old, strict=True):
            p.copy_(old + (p - old) * step)
        self._old = []


__all__ = ["StepScaledUpdates"]
