"""A fixed-size, exactly re-binnable histogram and the base class of histogram observers.

The histogram covers ``[-R, R)`` with ``2·bins`` equal bins, symmetric about 0, where ``R``
is the smallest power of two strictly above ``max|x|`` and ``bins`` is a power of two. Bin
``i`` holds the values with ``floor(x / w) = i − bins`` (``w = R / bins``, a power of two,
so ``x / w`` is exact). When a batch exceeds ``R``, the range doubles ``k`` times and old bin
``i`` merges into new bin ``bins + ((i − bins) >> k)`` — the bin each of its values would
have gone to directly. Hence:

* memory is ``2·bins`` counts however many batches arrive (onnxruntime's and TensorRT's
  calibrators instead append bins), and
* the histogram after streaming batches is *identical* to the one-shot histogram of their
  concatenation, so every histogram observer gives the same range either way.

The price: the data occupy between ``bins/2`` and ``bins`` bins per side. Folding the two
halves gives an exact histogram of ``|x|``.
"""

from __future__ import annotations

import math

import numpy as np

from edgequant.observers.base import check_batch, not_observed
from edgequant.qparams import QParams, choose_qparams
from edgequant.spec import PerTensor, QuantSpec

#: Bins per side of zero (TensorRT / onnxruntime use 2048 bins for |x|).
DEFAULT_BINS = 2048


class Histogram:
    """Counts of values in ``2·bins`` equal bins over ``[-radius, radius)``, plus exact min/max."""

    def __init__(self, bins: int = DEFAULT_BINS) -> None:
        if not isinstance(bins, int) or bins < 8 or bins & (bins - 1):
            raise ValueError(
                f"histogram bins={bins!r} is not allowed: use a power of two >= 8"
            )
        self.bins = bins
        self.counts = np.zeros(2 * bins, dtype=np.int64)  # (2·bins,) int64
        self.radius = 0.0
        self.min = math.inf
        self.max = -math.inf

    @property
    def total(self) -> int:
        """Number of values seen."""
        return int(self.counts.sum())

    @property
    def width(self) -> float:
        """Width of one bin (0 while every value seen is 0)."""
        return self.radius / self.bins

    def edges(self) -> np.ndarray:
        """Bin edges of the signed histogram, ``(2·bins + 1,)`` float64."""
        return np.linspace(-self.radius, self.radius, 2 * self.bins + 1)

    def abs_counts(self) -> np.ndarray:
        """Histogram of ``|x|`` over ``[0, radius)`` with ``bins`` bins (exact fold)."""
        b = self.bins
        return self.counts[b:] + self.counts[:b][::-1]  # (bins,) int64

    def add(self, values: np.ndarray) -> None:
        """Count finite float64 ``values`` (any shape), widening the range first if needed."""
        v = values.ravel()  # (n,) float64
        self.min = min(self.min, float(v.min()))
        self.max = max(self.max, float(v.max()))
        amax = max(-self.min, self.max)
        if amax > 0.0 and amax >= self.radius:  # R must stay strictly above every |x|
            self._grow(amax)
        if self.radius == 0.0:  # every value so far is 0: keep them in the bin [0, w)
            self.counts[self.bins] += v.size
            return
        # w is a power of two, so v / w and its floor are exact: no value near an edge can
        # land in a different bin than it would with another batch order.
        idx = np.floor(v / self.width).astype(np.int64) + self.bins  # (n,) in [0, 2·bins)
        self.counts += np.bincount(idx, minlength=2 * self.bins)

    def _grow(self, amax: float) -> None:
        """Set the radius to the smallest power of two > ``amax``, merging old bins exactly."""
        new_radius = math.ldexp(1.0, math.frexp(amax)[1])  # amax = f·2^e, f < 1 → 2^e > amax
        if self.radius > 0.0:
            k = round(math.log2(new_radius / self.radius))  # exact: both are powers of two
            b = self.bins
            i = np.arange(2 * b, dtype=np.int64)
            new_idx = b + ((i - b) >> min(k, 62))  # (2b,) floor division by 2^k
            self.counts = np.bincount(new_idx, weights=self.counts, minlength=2 * b).astype(
                np.int64
            )
        self.radius = new_radius


def quantile(counts: np.ndarray, lo_edge: float, width: float, q: float) -> float:
    """Value below which a fraction ``q`` of the histogram mass lies (linear within a bin)."""
    cdf = np.cumsum(counts)  # (bins,) int64
    target = q * float(cdf[-1])
    b = int(np.searchsorted(cdf, target, side="left"))
    b = min(b, len(counts) - 1)
    before = float(cdf[b - 1]) if b > 0 else 0.0
    inside = float(counts[b])
    frac = (target - before) / inside if inside > 0 else 1.0
    return lo_edge + (b + min(max(frac, 0.0), 1.0)) * width


class HistogramObserver:
    """Base of the PerTensor histogram observers: subclasses implement ``_clip_range``."""

    name = "histogram"

    def __init__(self, spec: QuantSpec, tensor: str = "<tensor>", bins: int = DEFAULT_BINS):
        if not isinstance(spec.granularity, PerTensor):
            raise ValueError(
                f"observer {self.name!r} for tensor {tensor!r} supports PerTensor only, got "
                f"{spec.granularity}: use minmax/moving_average for per-channel or per-group"
            )
        self.spec = spec
        self.tensor = tensor
        self._bins = int(bins)
        self.reset()

    def reset(self) -> None:
        """Forget everything observed so far."""
        self.hist = Histogram(self._bins)

    def update(self, x: np.ndarray) -> None:
        """Count one batch into the histogram."""
        self.hist.add(check_batch(x, self.tensor, self.name))

    def range(self) -> tuple[np.ndarray, np.ndarray]:
        """The clipping range chosen by the subclass, within the exact [min, max] seen."""
        h = self.hist
        if h.total == 0:
            raise not_observed(self.tensor, self.name)
        if h.radius == 0.0:
            lo, hi = 0.0, 0.0
        else:
            lo, hi = self._clip_range()
            lo, hi = max(lo, h.min), min(hi, h.max)
        return np.asarray(lo, dtype=np.float32), np.asarray(hi, dtype=np.float32)

    def qparams(self) -> QParams:
        """``choose_qparams`` over the clipping range."""
        return choose_qparams(*self.range(), self.spec)

    def _clip_range(self) -> tuple[float, float]:
        raise NotImplementedError
