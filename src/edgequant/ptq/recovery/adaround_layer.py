"""AdaRound for one layer (Nagel et al. 2020, "Up or Down? Adaptive Rounding for Post-Training
Quantization"), in torch on CPU.

Each weight is ``s · (clip(⌊w/s⌋ + h(V) + z) − z)`` with the rectified sigmoid
``h(V) = clip(σ(V)·(ζ−γ) + γ, 0, 1)``; Adam fits ``V`` to minimise the layer's output MSE on
sampled rows plus ``λ · Σ (1 − |2h(V) − 1|^β)``, with β annealed from 20 to 2 after a
warm-up, which drives every ``h`` to 0 or 1. The result rounds each weight to ``⌊w/s⌋`` or
``⌊w/s⌋ + 1``: the same integer grid (scale, zero point, range) as round-to-nearest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from edgequant.errors import EdgequantError
from edgequant.primitives import broadcast_param, quantize
from edgequant.ptq.recovery.adaround_relax import (
    WARM_UP,
    annealed_beta,
    rectified_logit,
    rectified_sigmoid,
    rounding_regularizer,
)
from edgequant.ptq.recovery.layer_rows import Layer
from edgequant.qparams import QParams

# λ: the paper's 0.01 left 15–58 % of h(V) undecided after 1000 steps on EfficientNet-Lite0
# (our loss sums over outputs); 0.1 decides all but ~2 % and halves the 4-bit layer error
REG_WEIGHT = 0.1
LEARNING_RATE = 1e-2
MINIBATCH = 256                  # rows per Adam step


def import_torch():
    """torch, or one clear error naming the extra that installs it."""
    try:
        import torch
    except ImportError as exc:
        raise EdgequantError("AdaRound needs PyTorch: pip install 'edgequant[torch]'") from exc
    return torch


def rows_times(x, w_gok):
    """(r, G, K) rows through (G, O, K) weights → (r, G, O), in torch.

    The two common shapes get a dense kernel: one group (a plain matrix product) and one
    output per group (depthwise: an elementwise product summed over K). A general einsum
    runs those through batched tiny matrix products, ~50× slower on CPU, which made the
    time budget end depthwise layers after a few dozen steps.
    """
    g, o, _ = w_gok.shape
    if g == 1:
        return (x[:, 0, :] @ w_gok[0].T)[:, None, :]  # (r, 1, O)
    if o == 1:
        return (x * w_gok[:, 0, :]).sum(-1)[:, :, None]  # (r, G, 1)
    import torch

    return torch.einsum("rgk,gok->rgo", x, w_gok)


def second_moments(xq, xf, qdrop: float = 0.0):
    """``(E[x xᵀ], E[xf xᵀ])`` per group, (G, K, K) each, over the (r, G, K) torch rows, where
    the layer input ``x`` is ``xq`` with each element replaced by ``xf``'s with probability
    ``qdrop`` (QDrop). ``x = xq + m⊙(xf − xq)``, ``m ~ Bernoulli(p)`` per element, has
    ``E[x xᵀ] = a aᵀ + diag(p(1−p)(xf − xq)²)`` with ``a = E[x] = xq + p(xf − xq)``."""
    import torch

    n = float(xq.shape[0])
    a = xq + qdrop * (xf - xq)  # (r, G, K) E[x]
    a_xx = torch.einsum("rgk,rgl->gkl", a, a) / n  # (G, K, K)
    if qdrop:
        a_xx = a_xx + torch.diag_embed((qdrop * (1 - qdrop)) * ((xf - xq) ** 2).mean(0))
    return a_xx, torch.einsum("rgk,rgl->gkl", xf, a) / n


@dataclass
class LayerResult:
    """Integers chosen for one weight and the row MSE of RTN vs AdaRound."""

    ints: np.ndarray        # weight shape, qtype container dtype
    mse_rtn: float
    mse_adaround: float
    iterations: int
    seconds: float
    budget_hit: bool
    kept_rtn: bool          # AdaRound did not beat RTN on the rows: RTN kept
    undecided: float = 0.0  # fraction of h(V) still in (0.01, 0.99) at the end (should be ~0)
    flipped: float = 0.0    # fraction of weights rounded the other way than RTN


def adaround_layer(layer: Layer, weight: np.ndarray, qp: QParams, x_quant: np.ndarray,
                   x_float: np.ndarray, *, iters: int, seconds: float, seed: int,
                   qdrop: float = 0.0, bias: np.ndarray | None = None,
                   clip: tuple[float, float] | None = None) -> LayerResult:
    """Learn up/down rounding of ``weight`` on the grid of ``qp``.

    ``x_quant`` (r, G, K) are the layer's input rows as the quantized model sees them,
    ``x_float`` the same rows in the float model; the target is the float layer on the float
    rows. ``seconds`` > 0 bounds the wall time (the β schedule follows whichever of
    iterations and time runs out first); 0 means iterations only (bit-reproducible).
    ``qdrop`` (QDrop, Wei et al. 2022): the probability that an input element is taken from
    ``x_float`` instead of ``x_quant`` during the optimisation (a fresh mask per minibatch;
    the exact second-moment loss uses the expectation over masks). The final RTN-vs-AdaRound
    check always uses ``x_quant``. ``clip`` (lo, hi): the layer is followed by this Relu /
    Clip, which the loss then includes (outputs plus ``bias``, clipped, on both sides; the
    loss is then always over minibatches).
    """
    torch = import_torch()
    start = time.perf_counter()
    w = np.asarray(weight, np.float32)
    scale = broadcast_param(qp.scale.astype(np.float32), qp.granularity, w.shape)
    zp = broadcast_param(qp.zero_point.astype(np.float32), qp.granularity, w.shape)
    w_div = np.divide(w, scale, dtype=np.float32)  # as quantize() divides
    floor = np.floor(w_div)
    rest = np.clip(w_div - floor, 1e-4, 1 - 1e-4)  # (0, 1): h(V) starts at the float value
    qmin, qmax = float(qp.qtype.qmin), float(qp.qtype.qmax)

    gen = torch.Generator().manual_seed(seed)
    t_floor, t_scale = torch.from_numpy(floor), torch.from_numpy(np.broadcast_to(scale, w.shape).copy())
    t_zp = torch.from_numpy(np.broadcast_to(zp, w.shape).copy())
    v0 = rectified_logit(rest)  # h(v0) = rest
    v = torch.nn.Parameter(torch.from_numpy(v0.astype(np.float32)))
    xq, xf = torch.from_numpy(np.array(x_quant)), torch.from_numpy(np.array(x_float))
    w_gok = layer.to_gok(torch.from_numpy(w.copy()))
    if clip is not None:
        b_go = torch.from_numpy(np.zeros(layer.n_out, np.float32) if bias is None
                                else np.array(bias, np.float32)).reshape(1, layer.groups, -1)

    def out(y):  # (r, G, O) pre-activation without bias → what the loss compares
        return y if clip is None else torch.clamp(y + b_go, clip[0], clip[1])

    with torch.no_grad():
        target = out(rows_times(xf, w_gok))  # (r, G, O) float layer output

    h = rectified_sigmoid

    def dequant(rounding):
        q = torch.clamp(t_floor + rounding + t_zp, qmin, qmax)
        return (q - t_zp) * t_scale

    def mse(wq) -> float:
        with torch.no_grad():
            y = out(rows_times(xq, layer.to_gok(wq)))
            return float(((y - target) ** 2).sum((1, 2)).mean())

    # K ≤ MINIBATCH (depthwise and narrow convs): the exact loss over all rows from K × K
    # second moments costs G·O·K² a step, less than a minibatch of rows (MINIBATCH·G·O·K)
    gram = layer.k <= MINIBATCH and clip is None
    if gram:
        with torch.no_grad():
            a_qq, a_fq = second_moments(xq, xf, qdrop)  # (G, K, K) each
            b_w = torch.bmm(w_gok, a_fq)  # (G, O, K)
            c = float((target ** 2).sum((1, 2)).mean())  # E‖y‖²

    def step_loss(wq_gok):
        """Mean over rows of ‖y_quant − y_float‖² summed over outputs."""
        if gram:  # E‖xq ŵ − xf w‖² = ŵ E[xq xqᵀ] ŵᵀ − 2 ŵ E[xq xfᵀ] wᵀ + E‖xf w‖²
            return ((torch.bmm(wq_gok, a_qq) - 2 * b_w) * wq_gok).sum() + c
        idx = torch.randint(0, n_rows, (min(MINIBATCH, n_rows),), generator=gen)
        x = xq[idx]  # (b, G, K)
        if qdrop:
            x = torch.where(torch.rand(x.shape, generator=gen) < qdrop, xf[idx], x)
        return ((out(rows_times(x, wq_gok)) - target[idx]) ** 2).sum((1, 2)).mean()

    opt = torch.optim.Adam([v], lr=LEARNING_RATE)
    loop_start = time.perf_counter()  # the budget covers the optimisation steps
    n_rows = xq.shape[0]
    done, budget_hit = 0, False
    for i in range(iters):
        frac = i / iters
        if seconds > 0:
            used = (time.perf_counter() - loop_start) / seconds
            if used >= 1 and i:
                budget_hit = True
                break
            frac = max(frac, used)
        loss = step_loss(layer.to_gok(dequant(h(v))))
        beta = annealed_beta(frac, WARM_UP)
        if beta is not None:
            loss = loss + REG_WEIGHT * rounding_regularizer(h(v), beta).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        done += 1

    with torch.no_grad():
        soft = h(v)
        undecided = float(((soft > 0.01) & (soft < 0.99)).float().mean())
        up = (soft >= 0.5).to(torch.float32)
        ints = np.clip(floor + up.numpy() + zp, qmin, qmax)
        mse_ada = mse(dequant(up))
    rtn = quantize(w, qp)
    mse_rtn = mse(torch.from_numpy((rtn.astype(np.float32) - zp) * scale))
    kept = not mse_ada < mse_rtn
    chosen = rtn if kept else ints.astype(qp.qtype.numpy_dtype)
    flipped = float(np.mean(ints.astype(qp.qtype.numpy_dtype) != rtn))
    return LayerResult(chosen, mse_rtn, mse_ada, done, time.perf_counter() - start, budget_hit,
                       kept, undecided, flipped)
