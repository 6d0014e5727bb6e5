"""Intermediate-feature distillation for whole-graph QAT (``fit_qat(features=...)``).

Label-free distillation on a handful of photos gives the student one 1000-way soft label per
image; the quantized network can match those on the training photos while drifting away on
others (EfficientNet-Lite0 w4a8: agreement with float on held-apart photos *fell* below PTQ's).
Matching every quantized activation of the student to the same tensor of the float graph adds
dense supervision at every layer — ``C·H·W`` targets per tensor instead of one distribution —
the signal block-reconstruction PTQ (BRECQ, Li et al. 2021) learns from with ~1000 images.

Because :class:`~edgequant.torch.graph_qat.GraphQAT` runs the ONNX graph itself, a tensor has
the same name in the student and in the float graph, so no module ↔ tensor mapping is
needed: the float reference is the prepared float graph *before* PTQ's recovery
(``qat.float_graph``, set by ``qat_from_capture``; the bias-corrected graph otherwise), run
with fake quantization off.

Loss (per batch): the mean over the chosen tensors of the normalised squared error
``mean((s − t)²) / (var(t) + ε)``, so a tensor with large values weighs no more than a small
one.

Local (layer-wise) mode, ``fit_qat(features_local=True)`` (:class:`LocalFeatures`): every
matched tensor is passed on to its consumers *detached*, so the gradient of its term stops at
the previous matched tensors — each layer (the nodes between two quantized activations) learns
to reproduce the float graph's output on float inputs from the inputs its quantized
predecessors actually give it. That is sequential AdaRound's / BRECQ's reconstruction target
(``W·x_float`` from ``x_deployed``), for all layers at once in one forward pass; the logit
term then trains only the nodes after the last matched tensor.
"""

from __future__ import annotations

import torch
from torch import nn

from edgequant.torch.graph_qat import GraphQAT

#: keeps the normalisation finite for a constant teacher tensor (var 0)
FEATURE_EPS = 1e-8


def feature_names(qat: GraphQAT) -> list[str]:
    """The tensors the feature term matches: every statically quantized activation of the
    plan that a node produces (graph inputs and precision seams excluded), in plan order."""
    produced = {o for n in qat.nodes for o in n.outputs}
    return [d.tensor for k, d in qat.plan.tensors.items()
            if d.role == "activation" and d.action == "quantize" and d.mode == "static"
            and not d.consumers and k == d.tensor and d.tensor in produced
            and qat.quantizer(k) is not None]


def run_with(qat: GraphQAT, names: list[str], *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``qat``'s graph outputs followed by the tensors ``names`` (as the forward sees them:
    fake-quantized in the student, float in a ``fake_quant=False`` reference)."""
    keep = list(qat.output_names)
    qat.output_names = keep + list(names)
    try:
        out = qat(*inputs)
    finally:
        qat.output_names = keep
    return out if isinstance(out, tuple) else (out,)


def feature_loss(student: list[torch.Tensor] | tuple, teacher: list[torch.Tensor] | tuple
                 ) -> torch.Tensor:
    """Mean over tensors of ``mean((s − t)²) / (var(t) + FEATURE_EPS)`` (teacher detached)."""
    if len(student) != len(teacher) or not student:
        raise ValueError(f"feature_loss needs the same non-zero number of student and teacher "
                         f"tensors, got {len(student)} and {len(teacher)}")
    terms = []
    for s, t in zip(student, teacher, strict=True):
        t = t.detach()
        terms.append(torch.mean((s - t) ** 2) / (torch.var(t) + FEATURE_EPS))  # () float32
    return torch.stack(terms).mean()


class LocalFeatures:
    """While active (``with LocalFeatures(qat, names) as rec:``), ``qat``'s forward records the
    fake-quantized value of each tensor in ``names`` in ``rec.values`` (with its gradient
    graph) and hands its consumers the same value detached: each matched tensor's loss then
    trains only the nodes between it and the previous matched tensors.

    A precision seam (mixed recipes) re-quantizes the producer's raw output, which is not
    detached: gradient crosses a seam.
    """

    def __init__(self, qat: GraphQAT, names: list[str]) -> None:
        if not isinstance(qat, GraphQAT):
            raise TypeError(f"local feature distillation needs a whole-graph QAT model "
                            f"(GraphQAT), got {type(qat).__name__}")
        self.qat, self.names = qat, set(names)
        self.outputs = set(qat.output_names)
        self.values: dict[str, torch.Tensor] = {}

    def __enter__(self) -> LocalFeatures:
        quantize = type(self.qat)._quantize  # the class method, bound below

        def detached(name: str, x: torch.Tensor) -> torch.Tensor:
            y = quantize(self.qat, name, x)
            if name not in self.names:
                return y
            self.values[name] = y
            return y if name in self.outputs else y.detach()  # outputs keep the logit term's grad

        self.values = {}
        self.qat._quantize = detached  # instance attribute: shadows the method while active
        return self

    def __exit__(self, *exc) -> None:
        del self.qat._quantize

    def ordered(self, names: list[str]) -> list[torch.Tensor]:
        """The recorded values of ``names``, in that order."""
        missing = [n for n in names if n not in self.values]
        if missing:
            raise RuntimeError(f"local feature distillation: the forward produced no value for "
                               f"{missing[:5]}")
        return [self.values[n] for n in names]


class FloatFeatures(nn.Module):
    """The float graph of a :class:`GraphQAT` (before PTQ's recovery), frozen, returning the
    graph outputs followed by the tensors of :func:`feature_names`."""

    def __init__(self, qat: GraphQAT) -> None:
        super().__init__()
        if not isinstance(qat, GraphQAT):
            raise TypeError(f"feature distillation needs a whole-graph QAT model (GraphQAT, from "
                            f"prepare_qat(..., example_inputs=...)), got {type(qat).__name__}")
        graph = getattr(qat, "float_graph", None) or qat.graph
        self.reference = GraphQAT(graph, qat.plan)
        self.reference.fake_quant = False
        self.reference.requires_grad_(False)
        self.reference.eval()
        self.names = feature_names(qat)
        if not self.names:
            raise ValueError("feature distillation: the plan quantizes no activation of this "
                             "graph (nothing to match); use features=0")

    def train(self, mode: bool = True) -> FloatFeatures:
        """The reference stays in eval mode."""
        super().train(False)
        return self

    @torch.no_grad()
    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Graph outputs then features, float."""
        return run_with(self.reference, self.names, *inputs)


__all__ = ["FEATURE_EPS", "FloatFeatures", "LocalFeatures", "feature_loss", "feature_names", "run_with"]
