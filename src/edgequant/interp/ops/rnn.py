"""Recurrent layers: RNN, GRU, LSTM (layout 0, forward / reverse / bidirectional, optional
bias, sequence_lens, initial states and LSTM peepholes; the default activations only).

Shapes follow the ONNX spec: X (T, N, I), W (D, G·H, I), R (D, G·H, H), B (D, 2·G·H),
Y (T, D, N, H), Y_h / Y_c (D, N, H), with D directions and G gates. Steps past a batch row's
``sequence_lens`` leave its state unchanged and write zeros to Y (as onnxruntime).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgequant.errors import UnsupportedOpError
from edgequant.interp.registry import NodeContext, register

#: the activations each op uses when the ``activations`` attribute is absent (per direction)
DEFAULT_ACTIVATIONS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"],
                       "DynamicQuantizeLSTM": ["Sigmoid", "Tanh", "Tanh"]}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x))).astype(x.dtype)


def _check_attrs(ctx: NodeContext, n_dirs: int) -> None:
    """Reject what these kernels do not implement, naming the node and the attribute."""
    default = DEFAULT_ACTIVATIONS[ctx.op_type]
    acts = ctx.attr("activations")
    if acts is not None and [a.lower() for a in acts] != [a.lower() for a in default * n_dirs]:
        raise UnsupportedOpError(
            f"{ctx.op_type} node {ctx.name!r}: attribute activations={acts} is not supported; "
            f"only the default {default} per direction")
    for key, allowed in (("clip", None), ("layout", 0), ("input_forget", 0),
                         ("activation_alpha", None), ("activation_beta", None)):
        value = ctx.attr(key)
        if value is not None and value != allowed:
            raise UnsupportedOpError(
                f"{ctx.op_type} node {ctx.name!r}: attribute {key}={value} is not supported "
                f"(allowed: {'absent' if allowed is None else allowed})")


def _directions(ctx: NodeContext) -> list[bool]:
    """Per direction: True when it runs backwards in time."""
    d = ctx.attr("direction", "forward")
    table = {"forward": [False], "reverse": [True], "bidirectional": [False, True]}
    if d not in table:
        raise ValueError(f"{ctx.op_type} node {ctx.name!r}: direction {d!r} is not one of "
                         f"{sorted(table)}")
    return table[d]


def _scan(x: np.ndarray, seq_lens: np.ndarray, reverse: bool, states: list[np.ndarray],
          cell: Callable[[np.ndarray, list[np.ndarray]], list[np.ndarray]]
          ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Run ``cell`` over time; returns (Y (T, N, H), final states). State 0 is the output."""
    t_len = x.shape[0]
    ys = np.zeros((t_len, *states[0].shape), x.dtype)  # (T, N, H)
    for t in (range(t_len - 1, -1, -1) if reverse else range(t_len)):
        active = (t < seq_lens)[:, None]  # (N, 1) rows whose sequence reaches step t
        new = cell(x[t], states)
        states = [np.where(active, n, s) for n, s in zip(new, states, strict=True)]
        ys[t] = np.where(active, states[0], 0)
    return ys, states


def run_recurrent(ctx: NodeContext, x, w, r, b, seq_lens, initial: list, n_gates: int, make_cell,
         project: Callable[[np.ndarray, int], np.ndarray] | None = None):
    """Shared driver: per direction build the cell, scan, then stack outputs as ONNX.

    ``project(x, d)`` replaces the input projection ``x @ w[d].T`` (quantized kernels); ``w``
    is then only read for its shape (D, G·H, I)."""
    dirs = _directions(ctx)
    _check_attrs(ctx, len(dirs))
    t_len, n = x.shape[:2]
    h = int(ctx.attr("hidden_size", r.shape[-1]))
    if w.shape[0] != len(dirs) or w.shape[1] != n_gates * h:
        raise ValueError(f"{ctx.op_type} node {ctx.name!r}: W shape {w.shape} does not match "
                         f"{len(dirs)} direction(s) × {n_gates}·hidden_size {h}")
    seq = np.full(n, t_len, np.int64) if seq_lens is None else np.asarray(seq_lens, np.int64)
    if b is None:
        b = np.zeros((len(dirs), 2 * n_gates * h), x.dtype)
    ys, finals = [], []
    for d, reverse in enumerate(dirs):
        states = [np.zeros((n, h), x.dtype) if s is None else s[d] for s in initial]
        xw = (x @ w[d].T if project is None else project(x, d)) + b[d, : n_gates * h]  # (T, N, G·H)
        cell = make_cell(d, r[d], b[d, n_gates * h:], h)
        y, fin = _scan(xw, seq, reverse, states, cell)
        ys.append(y)
        finals.append(fin)
    y = np.stack(ys, axis=1)  # (T, D, N, H)
    per_state = [np.stack([f[k] for f in finals]) for k in range(len(initial))]  # (D, N, H)
    return (y, *per_state)


@register()
def RNN(ctx: NodeContext, x, w, r, b=None, seq_lens=None, initial_h=None):
    """Hₜ = tanh(Xₜ·Wᵀ + Hₜ₋₁·Rᵀ + Wb + Rb)."""
    def make_cell(d, r_d, rb, h):
        return lambda xw, s: [np.tanh(xw + s[0] @ r_d.T + rb)]

    return run_recurrent(ctx, x, w, r, b, seq_lens, [initial_h], 1, make_cell)


@register()
def GRU(ctx: NodeContext, x, w, r, b=None, seq_lens=None, initial_h=None):
    """Gates z, r, h: zₜ = σ(·), rₜ = σ(·), h̃ = tanh(Xₜ·Whᵀ + (rₜ ⊙ Hₜ₋₁)·Rhᵀ + Rbh + Wbh)
    (or rₜ ⊙ (Hₜ₋₁·Rhᵀ + Rbh) with ``linear_before_reset``), Hₜ = (1 − zₜ) ⊙ h̃ + zₜ ⊙ Hₜ₋₁."""
    before_reset = bool(ctx.attr("linear_before_reset", 0))

    def make_cell(d, r_d, rb, h):
        rz, rr, rh = r_d[:h], r_d[h: 2 * h], r_d[2 * h:]  # (H, H) each

        def cell(xw, s):
            prev = s[0]  # (N, H)
            z = _sigmoid(xw[:, :h] + prev @ rz.T + rb[:h])
            rg = _sigmoid(xw[:, h: 2 * h] + prev @ rr.T + rb[h: 2 * h])
            if before_reset:
                cand = np.tanh(xw[:, 2 * h:] + rg * (prev @ rh.T + rb[2 * h:]))
            else:
                cand = np.tanh(xw[:, 2 * h:] + (rg * prev) @ rh.T + rb[2 * h:])
            return [(1 - z) * cand + z * prev]
        return cell

    return run_recurrent(ctx, x, w, r, b, seq_lens, [initial_h], 3, make_cell)


@register()
def LSTM(ctx: NodeContext, x, w, r, b=None, seq_lens=None, initial_h=None, initial_c=None,
         p=None):
    """Gates i, o, f, c with optional peepholes P (i, o, f):
    iₜ = σ(· + Pi ⊙ Cₜ₋₁), fₜ = σ(· + Pf ⊙ Cₜ₋₁), c̃ = tanh(·), Cₜ = fₜ ⊙ Cₜ₋₁ + iₜ ⊙ c̃,
    oₜ = σ(· + Po ⊙ Cₜ), Hₜ = oₜ ⊙ tanh(Cₜ). Outputs Y, Y_h, Y_c."""
    def make_cell(d, r_d, rb, h):
        return lstm_cell(x.dtype, p, d, h, rb, lambda prev_h: prev_h @ r_d.T)

    return run_recurrent(ctx, x, w, r, b, seq_lens, [initial_h, initial_c], 4, make_cell)


def lstm_cell(dtype, p, d: int, h: int, rb: np.ndarray,
              recurrent: Callable[[np.ndarray], np.ndarray]):
    """The LSTM step of direction ``d``; ``recurrent(prev_h)`` is ``prev_h @ R[d].T``."""
    pi, po, pf = (np.zeros(h, dtype),) * 3 if p is None else (p[d, :h], p[d, h: 2 * h],
                                                               p[d, 2 * h:])

    def cell(xw, s):
        prev_h, prev_c = s
        g = xw + recurrent(prev_h) + rb  # (N, 4·H) gates i, o, f, c
        i = _sigmoid(g[:, :h] + pi * prev_c)
        f = _sigmoid(g[:, 2 * h: 3 * h] + pf * prev_c)
        c = f * prev_c + i * np.tanh(g[:, 3 * h:])
        o = _sigmoid(g[:, h: 2 * h] + po * c)
        return [o * np.tanh(c), c]
    return cell
