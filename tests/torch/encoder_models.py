"""A tiny BERT-like encoder for whole-graph QAT tests (random weights: numerics, not accuracy).

It holds every construct the MiniLM graph has: embedding Gathers (token + position), Linear
on 3-D activations (MatMul + bias Add), multi-head attention (Reshape / Transpose, Q·Kᵀ and
P·V MatMuls of two activations, scale Mul, an additive padding mask built with Where),
Softmax, residual Adds, LayerNorm, exact GELU (Erf) and masked mean pooling (Expand,
ReduceSum, Div).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

VOCAB = 40
SEQ = 8


class Attention(nn.Module):
    """Multi-head self-attention with a key padding mask."""

    def __init__(self, dim: int, heads: int, mask: str = "additive") -> None:
        super().__init__()
        self.heads, self.mask = heads, mask
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        n, s, d = h.shape

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(n, s, self.heads, d // self.heads).transpose(1, 2)  # (N, H, S, Dh)

        q, k, v = split(self.q(h)), split(self.k(h)), split(self.v(h))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)  # (N, H, S, S)
        if self.mask == "masked_fill":  # a Where between the scores and Softmax
            scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
        else:  # the padding mask as an additive bias, like Hugging Face's eager BERT attention
            scores = scores + torch.where(keep, 0.0, torch.finfo(torch.float32).min
                                          )[:, None, None, :]
        ctx = torch.softmax(scores, -1) @ v  # (N, H, S, Dh)
        return self.o(ctx.transpose(1, 2).reshape(n, s, d))  # (N, S, D)


class Block(nn.Module):
    """Post-LayerNorm transformer block (BERT): attention, then a GELU feed-forward."""

    def __init__(self, dim: int, heads: int, ffn: int, mask: str = "additive") -> None:
        super().__init__()
        self.attn = Attention(dim, heads, mask)
        self.ln1 = nn.LayerNorm(dim)
        self.ff1 = nn.Linear(dim, ffn)
        self.ff2 = nn.Linear(ffn, dim)
        self.ln2 = nn.LayerNorm(dim)

    def forward(self, h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        h = self.ln1(h + self.attn(h, keep))
        return self.ln2(h + self.ff2(F.gelu(self.ff1(h))))


class TinyEncoder(nn.Module):
    """``(ids (N, S) int64, mask (N, S) int64)`` → masked mean of the last hidden states (N, D)."""

    def __init__(self, dim: int = 16, heads: int = 2, ffn: int = 32, layers: int = 2,
                 mask: str = "additive") -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, dim)
        self.pos = nn.Embedding(SEQ, dim)
        self.ln0 = nn.LayerNorm(dim)
        self.blocks = nn.ModuleList(Block(dim, heads, ffn, mask) for _ in range(layers))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln0(self.tok(ids) + self.pos(torch.arange(ids.shape[1])))  # (N, S, D)
        keep = mask > 0  # (N, S) bool
        for block in self.blocks:
            h = block(h, keep)
        m = mask[..., None].to(h.dtype).expand_as(h)  # (N, S, D)
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)  # (N, D)


def encoder(seed: int = 0, **kwargs) -> TinyEncoder:
    """A seeded :class:`TinyEncoder` in eval mode."""
    torch.manual_seed(seed)
    return TinyEncoder(**kwargs).eval()


def token_batch(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random sequences of random length 2..SEQ: (ids, mask), padding id 0."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, SEQ + 1, (n,), generator=g)  # (N,)
    mask = (torch.arange(SEQ)[None, :] < lengths[:, None]).to(torch.int64)  # (N, S)
    ids = torch.randint(1, VOCAB, (n, SEQ), generator=g) * mask  # (N, S) int64
    return ids, mask


def trained_encoder(ids: torch.Tensor, mask: torch.Tensor):
    """The encoder captured, w8a8 QAT-trained a few steps on 48 rows of ``ids`` / ``mask``
    (weights off PTQ's grid) and converted: ``(qat, QuantizedModel)``."""
    import edgequant.torch as eqt
    from edgequant.recipes.builtin import get_recipe
    from edgequant.torch.capture import capture, qat_from_capture

    cap = capture(encoder(), (ids[:2], mask[:2]))
    qat = qat_from_capture(cap, get_recipe("w8a8"), calibration=[(ids[:32], mask[:32])])
    batches = [(ids[s:s + 8], mask[s:s + 8]) for s in range(0, 48, 8)]
    eqt.fit_qat(qat, batches, teacher=encoder(), labels=False, distill="mse", lr=1e-3,
                show_progress=False, freeze_observers_step=3)
    return qat, eqt.convert(qat)
