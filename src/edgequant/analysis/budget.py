"""Accuracy-budget metrics: a score in *points* (higher is better) and the drop from float.

| metric        | score (points)                                   | needs labels |
|---------------|--------------------------------------------------|--------------|
| ``agreement`` | 100 · top-1 agreement with the float model       | no           |
| ``accuracy``  | 100 · top-1 accuracy against the labels          | yes          |
| ``cosine``    | 100 · mean cosine similarity to the float output | no           |
| a callable    | ``fn(reference, output, labels) -> float``       | its choice   |

``drop = score(float, float) − score(float, quantized)``: a budget ``max_drop = 1`` allows one
point of agreement / accuracy, or a mean cosine of 0.99. Only the first model output counts.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgequant.analysis.metrics import accuracy, cosine, top1_agreement

METRICS = ("agreement", "accuracy", "cosine")

Scorer = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], float]


def _agreement(ref: np.ndarray, out: np.ndarray, labels) -> float:
    return 100.0 * top1_agreement(ref, out)


def _accuracy(ref: np.ndarray, out: np.ndarray, labels) -> float:
    return 100.0 * accuracy(out, labels)


def _cosine(ref: np.ndarray, out: np.ndarray, labels) -> float:
    return 100.0 * cosine(ref, out)


_SCORERS: dict[str, Scorer] = {"agreement": _agreement, "accuracy": _accuracy, "cosine": _cosine}


def scorer(metric: str | Scorer, labels: np.ndarray | None = None) -> Scorer:
    """The scorer of ``metric`` (a name of :data:`METRICS` or a callable); checks labels."""
    if callable(metric):
        return metric
    if metric not in _SCORERS:
        raise ValueError(f"metric {metric!r} is unknown: use one of {list(METRICS)} or a callable "
                         "fn(reference, output, labels) -> points")
    if metric == "accuracy" and labels is None:
        raise ValueError("metric 'accuracy' needs labels (--labels LABELS.npy, one integer per "
                         "sample); use agreement or cosine without labels")
    return _SCORERS[metric]


def metric_name(metric: str | Scorer) -> str:
    """A stable name for reports and cache keys."""
    if callable(metric):
        return f"callable:{getattr(metric, '__module__', '?')}.{getattr(metric, '__qualname__', '?')}"
    return metric


def check_budget(max_drop: float) -> float:
    """``max_drop`` must be a finite number >= 0 (points)."""
    if isinstance(max_drop, bool) or not isinstance(max_drop, int | float) \
            or not np.isfinite(max_drop) or max_drop < 0:
        raise ValueError(f"--max-drop {max_drop!r} is not allowed: use a number of points >= 0 "
                         "(e.g. 1 for one point of agreement)")
    return float(max_drop)
