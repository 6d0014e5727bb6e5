"""Fidelity metrics between a reference output and a test output (first axis = samples).

| metric            | formula                                              | identical inputs |
|-------------------|------------------------------------------------------|------------------|
| ``sqnr_db``       | ``10·log10(Σ ref² / Σ (ref − test)²)``                | ``+inf``         |
| ``cosine``        | mean over samples of ``⟨r, t⟩ / (‖r‖·‖t‖)``           | ``1.0``          |
| ``top1_agreement``| fraction of samples with equal argmax                | ``1.0``          |
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
