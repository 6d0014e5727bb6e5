"""AdaRound's continuous relaxation of rounding (Nagel et al. 2020), shared by PTQ's layer-wise
AdaRound (:mod:`edgequant.ptq.recovery.adaround_layer`) and QAT's learned rounding
(:mod:`edgequant.torch.learned_rounding`).

A weight rounds to ``⌊w/s⌋ + h(V)`` with the rectified sigmoid
``h(V) = clip(σ(V)·(ζ − γ) + γ, 0, 1)`` — exactly 0 or 1 for large ``|V|``, so the gradient
can finish the decision — and the regulariser ``1 − |2h − 1|^β``, with β annealed from 20 to
2 after a warm-up, drives every ``h`` to 0 or 1. The functions take torch tensors but use
only their methods, so importing this module does not import torch.
"""

from __future__ import annotations

import math

import numpy as np

ZETA, GAMMA = 1.1, -0.1          # rectified sigmoid stretch (paper's values)
BETA_START, BETA_END = 20.0, 2.0
WARM_UP = 0.2                    # fraction of the run with the regulariser off


def rectified_sigmoid(v):
    """``h(V) = clip(σ(V)·(ζ − γ) + γ, 0, 1)`` elementwise (a torch tensor, same shape)."""
    return (v.sigmoid() * (ZETA - GAMMA) + GAMMA).clamp(0, 1)


def rectified_logit(h: np.ndarray) -> np.ndarray:
    """The ``V`` with ``h(V) = h`` for ``h`` strictly inside ``(0, 1)`` (numpy, float64)."""
    h = np.asarray(h, np.float64)
    return -np.log((ZETA - GAMMA) / (h - GAMMA) - 1.0)


def annealed_beta(frac: float, warm_up: float = WARM_UP) -> float | None:
    """β at fraction ``frac`` of the run: None during the warm-up (no regulariser), then a
    cosine from :data:`BETA_START` down to :data:`BETA_END`."""
    if frac < warm_up:
        return None
    rel = min(1.0, (frac - warm_up) / (1 - warm_up))
    return BETA_END + 0.5 * (BETA_START - BETA_END) * (1 + math.cos(rel * math.pi))


def rounding_regularizer(h, beta: float):
    """``1 − |2h − 1|^β`` elementwise: 1 at ``h = ½``, 0 at ``h ∈ {0, 1}``."""
    return 1 - (2 * h - 1).abs().pow(beta)


__all__ = ["BETA_END", "BETA_START", "GAMMA", "WARM_UP", "ZETA", "annealed_beta",
           "rectified_logit", "rectified_sigmoid", "rounding_regularizer"]
