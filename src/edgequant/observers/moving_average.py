"""Moving average of per-batch min / max (PyTorch ``MovingAverageMinMaxObserver``).

Outliers in one batch move the range by only ``momentum`` of their excess, which suits
activations seen over many batches (and is what QAT fake-quant uses).
"""

from __future__ import annotations

import numpy as np

from edgequant.observers.base import check_batch, not_observed
from edgequant.observers.minmax import check_same_shape
from edgequant.qparams import QParams, choose_qparams, reduce_range
from edgequant.spec import QuantSpec

#: PyTorch's ``averaging_constant`` default.
DEFAULT_MOMENTUM = 0.01


class MovingAverageObserver:
    """``min ← min + momentum · (batch_min − min)`` (likewise max); the first batch initialises."""

    name = "moving_average"

    def __init__(
        self, spec: QuantSpec, tensor: str = "<tensor>", momentum: float = DEFAULT_MOMENTUM
    ) -> None:
        momentum = float(momentum)
        if not 0.0 < momentum <= 1.0:
            raise ValueError(
                f"observer 'moving_average' for tensor {tensor!r}: momentum={momentum} is not "
                "allowed: use a value in (0, 1]"
            )
        self.spec = spec
        self.tensor = tensor
        self.momentum = momentum
        self.reset()

    def reset(self) -> None:
        """Forget everything observed so far."""
        self._min: np.ndarray | None = None
        self._max: np.ndarray | None = None

    def update(self, x: np.ndarray) -> None:
        """Fold one batch's min/max into the moving averages (float32 like PyTorch)."""
        arr = check_batch(x, self.tensor, self.name)
        lo, hi = reduce_range(arr, self.spec.granularity)  # granularity-shaped float32
        if self._min is None or self._max is None:
            self._min, self._max = lo, hi
            return
        check_same_shape(self._min, lo, self.tensor, self.name)
        c = np.float32(self.momentum)
        self._min = np.asarray(self._min + c * (lo - self._min), dtype=np.float32)
        self._max = np.asarray(self._max + c * (hi - self._max), dtype=np.float32)

    def range(self) -> tuple[np.ndarray, np.ndarray]:
        """The averaged (min, max)."""
        if self._min is None or self._max is None:
            raise not_observed(self.tensor, self.name)
        return self._min.copy(), self._max.copy()

    def qparams(self) -> QParams:
        """``choose_qparams`` over the averaged range."""
        return choose_qparams(*self.range(), self.spec)
