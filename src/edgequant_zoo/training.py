"""A small, seeded training loop for the zoo's MNIST-sized classifiers."""

from __future__ import annotations

import logging

import numpy as np

from edgequant_zoo.mnist import MnistSplit

__all__ = ["accuracy", "predict_logits", "train_classifier"]

log = logging.getLogger(__name__)


def train_classifier(
    module,
    split: MnistSplit,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 64,
    seed: int = 0,
    weight_decay: float = 0.0,
    threads: int | None = None,
):
    """Train ``module`` in place with Adam + cross-entropy on ``split``'s training half.

    Seeding happens inside ``torch.random.fork_rng`` so the caller's global RNG is left as
    it was, and the shuffling order comes from ``np.random.default_rng(seed)``. ``threads``
    temporarily sets torch's intra-op thread count (restored afterwards). Returns the module
    in eval mode.
    """
    import torch

    if epochs < 0:
        raise ValueError(f"epochs={epochs}: allowed is epochs >= 0")
    x = torch.from_numpy(split.x_train)  # (N, C, H, W) float32
    y = torch.from_numpy(split.y_train)  # (N,) int64
    rng = np.random.default_rng(seed)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        _train(module, x, y, rng, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
               weight_decay=weight_decay)
    finally:
        torch.set_num_threads(old_threads)
    return module.eval()


def _train(module, x, y, rng, *, epochs, lr, batch_size, seed, weight_decay) -> None:
    import torch
    import torch.nn.functional as F

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        opt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
        steps = epochs * -(-len(x) // batch_size)
        # One-cycle keeps a short schedule stable at a high peak learning rate.
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1))
        module.train()
        for epoch in range(epochs):
            order = torch.from_numpy(rng.permutation(len(x)))
            total = 0.0
            for start in range(0, len(x), batch_size):
                idx = order[start : start + batch_size]
                loss = F.cross_entropy(module(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
            log.info("epoch %d: train loss %.4f", epoch + 1, total / len(x))


def predict_logits(module, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Run ``module`` in eval mode on ``images`` (N, C, H, W) float32 → logits (N, K) float32."""
    import torch

    module.eval()
    outs = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            outs.append(module(torch.from_numpy(images[start : start + batch_size])).numpy())
    return np.concatenate(outs)  # (N, K) float32


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of ``logits`` (N, K) against int labels (N,)."""
    return float(np.mean(np.argmax(logits, axis=1) == labels))
