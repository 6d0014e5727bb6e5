"""Percentile clipping from a streaming histogram (onnxruntime's ``Percentile`` calibrator).

Symmetric specs clip at the ``percentile``-th percentile of ``|x|``; affine specs clip each
tail separately at the ``100 − percentile`` and ``percentile`` percentiles of ``x``.
"""

from __future__ import annotations

from edgequant.observers.histogram import DEFAULT_BINS, HistogramObserver, quantile
from edgequant.spec import QuantSpec

#: onnxruntime's default percentile.
DEFAULT_PERCENTILE = 99.99


class PercentileObserver(HistogramObserver):
    """Clip at a percentile of the observed distribution (PerTensor)."""

    name = "percentile"

    def __init__(
        self,
        spec: QuantSpec,
        tensor: str = "<tensor>",
        percentile: float = DEFAULT_PERCENTILE,
        bins: int = DEFAULT_BINS,
    ) -> None:
        percentile = float(percentile)
        if not 50.0 < percentile <= 100.0:
            raise ValueError(
                f"observer 'percentile' for tensor {tensor!r}: percentile={percentile} is not "
                "allowed: use a value in (50, 100]"
            )
        self.percentile = percentile
        super().__init__(spec, tensor, bins)

    def _clip_range(self) -> tuple[float, float]:
        h, q = self.hist, self.percentile / 100.0
        if self.spec.symmetric:
            t = quantile(h.abs_counts(), 0.0, h.width, q)
            return -t, t
        lo = quantile(h.counts, -h.radius, h.width, 1.0 - q)
        hi = quantile(h.counts, -h.radius, h.width, q)
        return lo, hi
