"""Running min / max: the exact range of everything seen (PyTorch ``MinMaxObserver``)."""

from __future__ import annotations

import numpy as np

from edgequant.observers.base import check_batch, not_observed
from edgequant.qparams import QParams, choose_qparams, reduce_range
from edgequant.spec import QuantSpec


class MinMaxObserver:
    """Elementwise running min and max at the spec's granularity (state: two small arrays)."""

    name = "minmax"

    def __init__(self, spec: QuantSpec, tensor: str = "<tensor>") -> None:
        self.spec = spec
        self.tensor = tensor
        self.reset()

    def reset(self) -> None:
        """Forget everything observed so far."""
        self._min: np.ndarray | None = None
        self._max: np.ndarray | None = None

    def update(self, x: np.ndarray) -> None:
        """Fold one batch in: ``min = minimum(min, batch_min)`` (likewise max)."""
        arr = check_batch(x, self.tensor, self.name)
        lo, hi = reduce_range(arr, self.spec.granularity)  # granularity-shaped float32
        if self._min is None:
            self._min, self._max = lo, hi
            return
        check_same_shape(self._min, lo, self.tensor, self.name)
        self._min = np.asarray(np.minimum(self._min, lo))  # stay an array when 0-d
        self._max = np.asarray(np.maximum(self._max, hi))

    def range(self) -> tuple[np.ndarray, np.ndarray]:
        """The exact (min, max) seen so far."""
        if self._min is None or self._max is None:
            raise not_observed(self.tensor, self.name)
        return self._min.copy(), self._max.copy()

    def qparams(self) -> QParams:
        """``choose_qparams`` over the running range."""
        return choose_qparams(*self.range(), self.spec)


def check_same_shape(state: np.ndarray, new: np.ndarray, tensor: str, observer: str) -> None:
    """Per-channel / per-group ranges of successive batches must line up."""
    if state.shape != new.shape:
        raise ValueError(
            f"observer {observer!r} for tensor {tensor!r}: this batch gives ranges of shape "
            f"{new.shape} but earlier batches gave {state.shape}; every batch must have the "
            "same size along the quantized axis"
        )
