"""Calibration sanity: flag activation ranges that would make a silently broken model, and
clip ranges that a handful of extreme values dominate.

:class:`RangeStats` streams beside the observers (fixed memory: the ``K + 1`` largest and
smallest values, a count, and a small random sample of values). :func:`check_ranges` then
looks at every calibrated tensor, model inputs first, in graph order:

* **constant** — every value equal (zero width): the data carry no information, every range
  downstream is fitted to one point;
* **denormal width** — ``0 < max − min < 1.18e-38`` (the smallest normal float32): scales
  underflow, the tensor quantizes to noise;
* **outlier-dominated** — a handful of *samples* (at most 1 %, and at most ``K``) stretch
  the range more than ``OUTLIER_RATIO``× the range of all other samples (one image with a
  1e30 pixel). Counting samples, not values, matters: that one pixel becomes hundreds of
  huge values in every tensor downstream, all from the same sample. Remedy, applied
  automatically to per-tensor ranges: the range of the other samples. It drops ≤ 1 % of the
  samples, and only when they would cost over 4 bits of resolution, so it never hurts a
  sane set;
* **one-sided input** — a model input calibrated on values ≤ 0 only (with some < 0): every
  positive input will be clipped to 0 (a sign or normalization mistake, e.g. ``-x`` or
  ``x - 1`` for images in [0, 1]);
* **step above typical magnitude** — the quantization step exceeds the 99th percentile of
  ``|x|``: 99 % of values land within one step of zero.

Each finding is one warning naming the tensor and the numbers (``report["warnings"]``), and
an error under ``strict``. Only numeric degeneracy is flagged, never "unusual" data (an
all-negative input is legitimate for some models; what it does downstream — ReLU outputs that
are always 0 — is flagged where it happens).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from edgequant.errors import CalibrationError
from edgequant.qparams import QParams, choose_qparams
from edgequant.spec import PerTensor, QuantSpec

#: Most extreme samples per side that may be clipped as outliers ...
K = 8
#: ... and at most one per this many samples (so fewer than 100 samples are never clipped).
SAMPLES_PER_OUTLIER = 100
#: The full range must exceed the others' range by this factor (4 bits) to count as dominated.
OUTLIER_RATIO = 16.0
#: Values kept per batch and in total for the typical-magnitude estimate.
SAMPLE_PER_BATCH = 512
SAMPLE_MAX = 8192
#: At most this many tensors are named; the rest are counted (one cause cascades downstream).
MAX_NAMED = 6
FLOAT32_TINY = float(np.finfo(np.float32).tiny)


@dataclass
class RangeStats:
    """Streaming facts about one tensor's calibration values (memory independent of data)."""

    count: int = 0
    samples: int = 0
    top: np.ndarray = field(default_factory=lambda: np.empty(0))  # K+1 largest sample maxima
    bottom: np.ndarray = field(default_factory=lambda: np.empty(0))  # K+1 smallest minima
    sample: np.ndarray = field(default_factory=lambda: np.empty(0))
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def update(self, x: np.ndarray, n: int | None = None) -> None:
        """Fold one batch (finite) of ``n`` samples on axis 0 into the statistics; a tensor
        whose first dim is not ``n`` counts as one sample."""
        arr = np.asarray(x)  # native dtype: no float64 copy of a whole batch
        if arr.size == 0:
            return
        flat = arr.reshape(-1)  # (values,)
        self.count += flat.size
        per = arr.reshape(n, -1) if n and arr.ndim and arr.shape[0] == n else flat[None]
        self.samples += per.shape[0]
        hi = per.max(axis=1).astype(np.float64)  # (samples,) float64
        lo = per.min(axis=1).astype(np.float64)
        self.top = np.sort(np.concatenate([self.top, hi]))[-(K + 1):]
        self.bottom = np.sort(np.concatenate([self.bottom, lo]))[:K + 1]
        pick = flat if flat.size <= SAMPLE_PER_BATCH else \
            flat[self.rng.integers(0, flat.size, SAMPLE_PER_BATCH)]
        self.sample = np.concatenate([self.sample, pick.astype(np.float64)])
        if self.sample.size > SAMPLE_MAX:
            self.sample = self.rng.choice(self.sample, SAMPLE_MAX, replace=False)

    @property
    def min(self) -> float:
        """Smallest value seen."""
        return float(self.bottom[0]) + 0.0  # -0.0 → 0.0 in messages

    @property
    def max(self) -> float:
        """Largest value seen."""
        return float(self.top[-1]) + 0.0

    def bulk(self, k: int) -> tuple[float, float]:
        """The range without the ``k`` most extreme samples on each side."""
        return float(self.bottom[k]), float(self.top[-(k + 1)])

    def typical(self) -> float:
        """99th percentile of ``|x|`` over the kept sample."""
        return float(np.percentile(np.abs(self.sample), 99)) if self.sample.size else 0.0


def _outliers(st: RangeStats) -> tuple[int, float, float] | None:
    """(k, clipped range) when k ≤ K samples (≤ 1 %) dominate the range, else None."""
    k = min(K, st.samples // SAMPLES_PER_OUTLIER)
    if k == 0:
        return None
    lo, hi = st.bulk(k)
    full, bulk = st.max - st.min, hi - lo
    if bulk <= 0 or full <= OUTLIER_RATIO * bulk:
        return None
    far = int(np.sum(st.top > hi + bulk)) + int(np.sum(st.bottom < lo - bulk))
    return max(far, 1), lo, hi


def check_ranges(stats: Mapping[str, RangeStats], specs: Mapping[str, QuantSpec],
                 qparams: dict[str, QParams], sources: Mapping[str, str], order: Iterable[str],
                 *, inputs: Iterable[str] = (), strict: bool = False) -> list[str]:
    """Flag degenerate ranges (see the module docstring); clip outlier-dominated per-tensor
    ranges in ``qparams`` in place. ``stats`` are keyed by observed tensor, ``specs`` /
    ``qparams`` by plan key, ``sources`` maps a key to its tensor. Returns the warnings;
    ``strict`` raises :class:`CalibrationError` instead."""
    ins = set(inputs)
    rank = {t: i for i, t in enumerate(order)}
    findings: list[str] = []
    for key in sorted(specs, key=lambda k: (rank.get(sources.get(k, k), len(rank)), k)):
        tensor = sources.get(key, key)
        st = stats.get(tensor)
        if st is None or st.count == 0:
            continue
        what = f"{'input' if tensor in ins else 'tensor'} {tensor!r}"
        width = st.max - st.min
        if width == 0:
            findings.append(f"{what} is constant: all {st.count:,} calibration values are "
                            f"{st.min:.6g}, so it (and every range after it) carries no "
                            "information; give representative samples")
            continue
        if width < FLOAT32_TINY:
            findings.append(f"{what} has a denormal range [{st.min:.3g}, {st.max:.3g}] (width "
                            f"{width:.3g} < {FLOAT32_TINY:.3g}): it quantizes to noise; check "
                            "the data's scaling")
            continue
        if tensor in ins and st.max <= 0:
            findings.append(f"{what} was calibrated on values <= 0 only ([{st.min:.4g}, "
                            f"{st.max:.4g}]): every positive input will be clipped to 0; check "
                            "the data's sign and normalization")
        clip = _outliers(st)
        qp = qparams.get(key)
        if clip is not None and qp is not None:
            k, lo, hi = clip
            note = ""
            if isinstance(specs[key].granularity, PerTensor):
                robust = choose_qparams(lo, hi, specs[key])
                if float(robust.scale) < float(qp.scale):
                    qparams[key] = qp = robust
                    note = f"; range clipped to [{lo:.4g}, {hi:.4g}]"
            findings.append(f"{what}: {k} of {st.samples:,} samples set its range "
                            f"[{st.min:.4g}, {st.max:.4g}], {width / (hi - lo):.3g}x the range "
                            f"[{lo:.4g}, {hi:.4g}] of the others{note}")
        if qp is not None and qp.scale.size == 1:
            step, typical = float(qp.scale), st.typical()
            if 0 < typical < step:
                findings.append(f"{what}: quantization step {step:.4g} exceeds the typical "
                                f"magnitude (99th percentile of |x| = {typical:.4g}): 99% of "
                                "its values quantize to within one step of zero")
    if strict and findings:
        raise CalibrationError(f"--strict: calibration range problem(s) in {len(findings)} "
                               f"tensor(s): {findings[0]}")
    if len(findings) > MAX_NAMED:
        more = len(findings) - MAX_NAMED
        findings = [*findings[:MAX_NAMED], f"{more} more tensor(s) downstream have degenerate "
                    "calibration ranges (likely the same cause)"]
    return [f"calibration: {f}" for f in findings]
