"""KL-divergence (entropy) calibration, as TensorRT / MXNet / onnxruntime's ``Entropy``.

For each candidate window of histogram bins, the reference distribution ``P`` is the
window with the mass outside it folded into its edge bins (what clipping does), and the
candidate ``Q`` is the window's own counts merged into ``levels`` quantization bins and
spread back evenly over the bins where ``P`` is non-zero. The window with the smallest
``KL(P || Q)`` is the clipping range.

Symmetric specs search ``[0, t)`` on the ``|x|`` histogram with ``levels = 2^(bits−1)``
(one side of the grid); affine specs search windows ``[−t, t)`` of the signed histogram,
shrunk to the occupied bins (always keeping 0, as ``choose_qparams`` does), with
``levels = 2^bits``. The candidate windows differ from onnxruntime only in splitting the
window into ``levels`` chunks as evenly as possible (onnxruntime puts the remainder bins in
the last chunk but then leaves them out of ``Q``).
"""

from __future__ import annotations

import logging

import numpy as np

from edgequant.observers.histogram import DEFAULT_BINS, HistogramObserver
from edgequant.spec import QuantSpec

log = logging.getLogger(__name__)

#: MXNet's smoothing: zero bins get this much probability so KL stays finite.
SMOOTH_EPS = 1e-4


def smooth(p: np.ndarray, eps: float = SMOOTH_EPS) -> np.ndarray:
    """Give zero bins ``eps`` mass, taken evenly from the non-zero bins (MXNet)."""
    zero = p == 0
    n_zero = int(np.count_nonzero(zero))
    if n_zero == 0 or n_zero == p.size:
        return p
    return np.where(zero, eps, p - eps * n_zero / (p.size - n_zero))


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """``KL(P || Q)`` of two unnormalised non-negative histograms of equal length."""
    p = p / p.sum()
    q = q / q.sum()
    mask = p > 0
    with np.errstate(divide="ignore"):
        return float(np.dot(p[mask], np.log(p[mask] / q[mask])))


def window_divergence(counts: np.ndarray, start: int, stop: int, levels: int) -> float:
    """KL between the clipped reference ``P`` and its ``levels``-level quantization ``Q``."""
    sliced = counts[start:stop].astype(np.float64)  # (n,) the window's own counts
    p = sliced.copy()
    p[0] += counts[:start].sum()  # mass clipped below lands in the first bin
    p[-1] += counts[stop:].sum()  # and above in the last
    n = stop - start
    starts = np.arange(levels) * n // levels  # (levels,) chunk starts, as even as possible
    lengths = np.diff(starts, append=n)  # (levels,) >= 1 because n >= levels
    nonzero = p != 0  # (n,)
    chunk_mass = np.add.reduceat(sliced, starts)  # (levels,)
    chunk_nonzero = np.add.reduceat(nonzero.astype(np.float64), starts)  # (levels,)
    per_bin = chunk_mass / np.maximum(chunk_nonzero, 1.0)  # a chunk with no support gets 0
    q = np.repeat(per_bin, lengths) * nonzero  # (n,) expanded back, zero where P is zero
    if not q.any():
        return float("inf")
    return kl_divergence(smooth(p), smooth(q))


class EntropyObserver(HistogramObserver):
    """Clip where the quantized distribution loses the least information (PerTensor)."""

    name = "entropy"

    def __init__(self, spec: QuantSpec, tensor: str = "<tensor>", bins: int = DEFAULT_BINS):
        super().__init__(spec, tensor, bins)

    def _clip_range(self) -> tuple[float, float]:
        h, bits = self.hist, self.spec.qtype.bits
        w = h.width
        if self.spec.symmetric:
            counts, levels = h.abs_counts(), 2 ** (bits - 1)
            last = int(np.flatnonzero(counts)[-1]) + 1
            windows = [(0, i) for i in range(levels, last + 1)]
            lo_edge = 0.0
        else:
            counts, levels, b = h.counts, 2**bits, h.bins
            nz = np.flatnonzero(counts)
            lo_bin, hi_bin = min(b, int(nz[0])), max(b + 1, int(nz[-1]) + 1)
            windows = []
            for j in range(1, b + 1):
                win = (max(b - j, lo_bin), min(b + j, hi_bin))
                if win[1] - win[0] >= levels and (not windows or windows[-1] != win):
                    windows.append(win)
            lo_edge = -h.radius
        if not windows:  # the grid is finer than the histogram: clipping cannot help
            log.info("entropy observer %s: %d levels >= occupied bins, keeping min/max",
                     self.tensor, levels)
            return h.min, h.max
        kl = np.array([window_divergence(counts, s, e, levels) for s, e in windows])
        s, e = windows[int(np.argmin(kl))]
        lo, hi = lo_edge + s * w, lo_edge + e * w
        return (-hi, hi) if self.spec.symmetric else (lo, hi)
