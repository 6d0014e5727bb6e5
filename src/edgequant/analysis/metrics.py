"""Fidelity metrics between a reference output and a test output (first axis = samples).

| metric            | formula                                              | identical inputs |
|-------------------|------------------------------------------------------|------------------|
| ``sqnr_db``       | ``10·log10(Σ ref² / Σ (ref − test)²)``                | ``+inf``         |
| ``cosine``        | mean over samples of ``⟨r, t⟩ / (‖r‖·‖t‖)``           | ``1.0``          |
| ``top1_agreement``| fraction of samples with equal argmax                | ``1.0``          |
| ``confident_agreement`` | ``top1_agreement`` where softmax(ref) top-1 ≥ ``p`` | ``1.0``  |
| ``top1_in_topk``  | fraction with the ref argmax among test's ``k`` largest | ``1.0``       |
| ``accuracy``      | fraction of samples with ``argmax == label``         |                  |
| ``lsb_error``     | ``max |a − b| / scale`` (in quantization steps)       | ``0.0``          |

All sums run in float64 so float32 outputs of any size do not lose the small differences
these metrics are about. Per-sample values flatten every axis after the first.
"""

from __future__ import annotations

import numpy as np


def _pair(reference: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(reference, dtype=np.float64)
    t = np.asarray(test, dtype=np.float64)
    if r.shape != t.shape:
        raise ValueError(f"reference shape {r.shape} and test shape {t.shape} differ")
    return r, t


def _rows(x: np.ndarray) -> np.ndarray:
    """(N, ...) → (N, D); a 0-d or 1-d array is one sample."""
    if x.ndim <= 1:
        return x.reshape(1, -1)
    return x.reshape(x.shape[0], -1)


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB; ``+inf`` when ``test == reference``."""
    r, t = _pair(reference, test)
    noise = float(np.sum((r - t) ** 2))
    signal = float(np.sum(r**2))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(signal / noise))


def cosine(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean per-sample cosine similarity (each sample flattened).

    A sample where both vectors are zero counts as 1 (identical); one zero vector as 0.
    """
    r, t = _pair(reference, test)
    r, t = _rows(r), _rows(t)  # (N, D) float64
    dot = np.sum(r * t, axis=1)  # (N,)
    norms = np.linalg.norm(r, axis=1) * np.linalg.norm(t, axis=1)  # (N,)
    both_zero = (np.linalg.norm(r, axis=1) == 0) & (np.linalg.norm(t, axis=1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), 0.0)  # (N,)
    cos = np.where(both_zero, 1.0, cos)
    return float(np.mean(cos))


def top1(logits: np.ndarray) -> np.ndarray:
    """Per-sample argmax over the flattened per-sample output: (N, ...) → (N,) int64."""
    return np.argmax(_rows(np.asarray(logits)), axis=1)


def top1_agreement(reference: np.ndarray, test: np.ndarray) -> float:
    """Fraction of samples whose argmax class is the same in both outputs."""
    r, t = _pair(reference, test)
    return float(np.mean(top1(r) == top1(t)))


def softmax_top1(logits: np.ndarray) -> np.ndarray:
    """Per-sample softmax probability of the argmax class of logits: (N, ...) → (N,) float64."""
    z = _rows(np.asarray(logits, dtype=np.float64))  # (N, D)
    z = z - z.max(axis=1, keepdims=True)  # the top logit becomes 0: exp(0) / Σ exp
    return 1.0 / np.sum(np.exp(z), axis=1)


def confident_agreement(reference: np.ndarray, test: np.ndarray,
                        min_probability: float = 0.5) -> tuple[float, int]:
    """Top-1 agreement restricted to the samples where the reference is confident (softmax of
    its logits gives the top-1 class at least ``min_probability``), and how many samples
    that is; ``nan`` agreement when there are none.

    On inputs where the float model has no clear answer, a small quantization error flips
    the argmax between near-equal classes; this agreement leaves them out.
    """
    r, t = _pair(reference, test)
    sure = softmax_top1(r) >= min_probability  # (N,) bool
    n = int(np.sum(sure))
    if n == 0:
        return float("nan"), 0
    return float(np.mean(top1(r)[sure] == top1(t)[sure])), n


def top1_in_topk(reference: np.ndarray, test: np.ndarray, k: int = 5) -> float:
    """Fraction of samples whose reference argmax class is among the ``k`` largest of the
    test output (ties counted in its favour: fewer than ``k`` classes score strictly higher)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k={k!r} is not allowed: use an integer >= 1")
    r, t = _pair(reference, test)
    t = _rows(t)  # (N, D)
    ref_class = top1(r)  # (N,)
    ref_score = t[np.arange(t.shape[0]), ref_class][:, None]  # (N, 1) test score of that class
    return float(np.mean(np.sum(t > ref_score, axis=1) < k))


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose argmax equals the integer label."""
    pred = top1(logits)  # (N,)
    lab = np.asarray(labels).reshape(-1)
    if lab.shape[0] != pred.shape[0]:
        raise ValueError(f"{lab.shape[0]} labels for {pred.shape[0]} samples: counts must match")
    return float(np.mean(pred == lab))


def lsb_error(a: np.ndarray, b: np.ndarray, scale: float | np.ndarray) -> float:
    """Largest ``|a − b|`` in units of ``scale`` (one quantization step = 1 LSB).

    ``scale`` is a scalar or broadcasts against ``a`` (per-channel scales reshaped by the
    caller, e.g. ``(1, C, 1, 1)``).
    """
    x, y = _pair(a, b)
    s = np.asarray(scale, dtype=np.float64)
    if np.any(s <= 0):
        raise ValueError(f"lsb_error scale must be > 0, got min {float(np.min(s))}")
    if x.size == 0:
        return 0.0
    return float(np.max(np.abs(x - y) / s))
