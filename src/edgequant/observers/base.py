"""The ``Observer`` protocol and the input checks every observer shares.

An observer sees one tensor's calibration batches one at a time (``update``) and keeps a
fixed-size state (a running min/max or a fixed-bin histogram), so its memory does not grow
with the number of samples. ``range()`` is the clipping range it recommends at the spec's
granularity and ``qparams()`` turns that range into :class:`~edgequant.qparams.QParams`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from edgequant.qparams import QParams


@runtime_checkable
class Observer(Protocol):
    """Streaming range estimator for one tensor."""

    def update(self, x: np.ndarray) -> None:
        """Fold one calibration batch (any shape) into the state; NaN/Inf/empty → ValueError."""
        ...

    def range(self) -> tuple[np.ndarray, np.ndarray]:
        """(min, max) clipping range at the spec's granularity (shapes as in ``QParams``)."""
        ...

    def qparams(self) -> QParams:
        """Scale and zero point for the observed range (``choose_qparams``)."""
        ...

    def reset(self) -> None:
        """Forget everything observed so far."""
        ...


def check_batch(x: np.ndarray, tensor: str, observer: str) -> np.ndarray:
    """Validate one batch and return it as float64 (exact for float32/float16 inputs).

    Rejects empty arrays and NaN/Inf with a message naming the tensor, the observer and
    how many bad values were seen — a silent NaN would poison every later scale.
    """
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise TypeError(
            f"observer {observer!r} for tensor {tensor!r} got dtype {arr.dtype}: "
            "use a numeric (float or integer) array"
        )
    if arr.size == 0:
        raise ValueError(
            f"observer {observer!r} for tensor {tensor!r} got an empty batch (shape "
            f"{arr.shape}): every calibration batch needs at least one value"
        )
    arr = arr.astype(np.float64, copy=False)
    finite = np.isfinite(arr)
    if not finite.all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(arr.size - finite.sum() - n_nan)
        raise ValueError(
            f"observer {observer!r} for tensor {tensor!r} got {n_nan} NaN and {n_inf} Inf "
            f"values in a batch of shape {arr.shape}: only finite values can be calibrated"
        )
    return arr


def not_observed(tensor: str, observer: str) -> ValueError:
    """The error for asking a range before any batch was seen."""
    return ValueError(
        f"observer {observer!r} for tensor {tensor!r} has seen no batches: call update() first"
    )
