"""MSE-optimal clipping: the range whose quantize→dequantize error on the histogram is least.

The expected squared error of a candidate range is estimated by treating each histogram
bin as ``SUBPOINTS`` equally spaced values carrying its count, and running them through the
spec's real ``fake_quantize`` (its QType, narrow range, symmetric/affine zero point and
rounding) — so both clipping error and rounding error are measured, not modelled.

Symmetric specs search ``t = amax·k/candidates``; affine specs first scale both ends
together, then refine the lower and the upper end alone (one coordinate-descent round).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from edgequant.observers.histogram import DEFAULT_BINS, HistogramObserver
from edgequant.primitives import fake_quantize
from edgequant.qparams import choose_qparams
from edgequant.spec import PerChannel, QuantSpec

#: Points per bin at which the error is evaluated (a uniform density inside each bin).
SUBPOINTS = 4
#: Default number of candidate thresholds per search direction.
DEFAULT_CANDIDATES = 200
#: Candidates evaluated per vectorised step (bounds memory to ~CHUNK · 4·bins·SUBPOINTS floats).
CANDIDATE_CHUNK = 16


class MSEObserver(HistogramObserver):
    """Clip at the range minimising expected quantization MSE (PerTensor)."""

    name = "mse"

    def __init__(
        self,
        spec: QuantSpec,
        tensor: str = "<tensor>",
        bins: int = DEFAULT_BINS,
        candidates: int = DEFAULT_CANDIDATES,
    ) -> None:
        candidates = int(candidates)
        if candidates < 1:
            raise ValueError(
                f"observer 'mse' for tensor {tensor!r}: candidates={candidates} is not "
                "allowed: use a positive integer"
            )
        self.candidates = candidates
        super().__init__(spec, tensor, bins)

    def _points(self) -> tuple[np.ndarray, np.ndarray]:
        """Sample values and their weights standing for the histogram's occupied bins."""
        h = self.hist
        occupied = np.flatnonzero(h.counts)  # (m,) bin indices
        offsets = (np.arange(SUBPOINTS) + 0.5) / SUBPOINTS  # (S,) positions inside a bin
        x = -h.radius + (occupied[:, None] + offsets[None, :]) * h.width  # (m, S)
        x = np.clip(x, h.min, h.max)  # no sample outside what was really seen
        wgt = np.repeat(h.counts[occupied] / SUBPOINTS, SUBPOINTS)  # (m·S,)
        return x.ravel().astype(np.float32), wgt

    def _errors(self, x: np.ndarray, wgt: np.ndarray, lo: np.ndarray, hi: np.ndarray):
        """Weighted squared error of every candidate range ``[lo[c], hi[c]]`` at once.

        Candidates ride the PerChannel axis of one QParams, so the spec's own
        ``choose_qparams`` / ``fake_quantize`` run vectorised over (candidates, points).
        """
        spec = replace(self.spec, granularity=PerChannel(0))
        out = []
        for start in range(0, len(lo), CANDIDATE_CHUNK):
            part = slice(start, start + CANDIDATE_CHUNK)
            qp = choose_qparams(lo[part].astype(np.float32), hi[part].astype(np.float32), spec)
            tiled = np.broadcast_to(x, (len(qp.scale), x.size))  # (C, m·S) float32
            err = fake_quantize(tiled, qp, spec.rounding).astype(np.float64) - tiled  # (C, m·S)
            out.append((err * err) @ wgt)  # (C,)
        return np.concatenate(out)

    def _clip_range(self) -> tuple[float, float]:
        h, n = self.hist, self.candidates
        x, wgt = self._points()
        fractions = np.arange(1, n + 1) / n  # (n,) in (0, 1]
        ones = np.ones_like(fractions)
        if self.spec.symmetric:
            amax = max(-h.min, h.max)
            errs = self._errors(x, wgt, -amax * fractions, amax * fractions)
            t = amax * fractions[int(np.argmin(errs))]
            return -t, t
        lo0, hi0 = min(h.min, 0.0), max(h.max, 0.0)
        errs = self._errors(x, wgt, lo0 * fractions, hi0 * fractions)
        f = fractions[int(np.argmin(errs))]
        lo, hi = lo0 * f, hi0 * f
        if lo0 < 0:  # refine the lower end alone, then the upper end alone
            errs = self._errors(x, wgt, lo0 * fractions, hi * ones)
            lo = lo0 * fractions[int(np.argmin(errs))]
        if hi0 > 0:
            errs = self._errors(x, wgt, lo * ones, hi0 * fractions)
            hi = hi0 * fractions[int(np.argmin(errs))]
        return lo, hi
