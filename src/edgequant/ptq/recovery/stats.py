"""Per-channel statistics of float tensors over calibration batches, in flat memory.

One onnxruntime session exposes the wanted tensors; each batch updates running min, max,
sum and sum of squares per channel and is dropped before the next one runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from edgequant.errors import CalibrationError
from edgequant.runtime.sessions import ort_session

#: A callable returning a fresh iterable of feeds (input name → batch) each time it is called.
Batches = Callable[[], Iterable[Mapping[str, np.ndarray]]]


@dataclass
class ChannelStats:
    """Running per-channel statistics of one tensor (channel axis given at creation)."""

    axis: int
    min: np.ndarray | None = None  # (C,) float64
    max: np.ndarray | None = None  # (C,) float64
    total: np.ndarray | None = None  # (C,) float64 sum
    squares: np.ndarray | None = None  # (C,) float64 sum of squares
    count: int = 0  # values per channel seen

    def update(self, x: np.ndarray) -> None:
        """Fold one batch in."""
        rows = np.moveaxis(np.asarray(x, np.float64), self.axis, 0).reshape(x.shape[self.axis], -1)
        lo, hi = rows.min(axis=1), rows.max(axis=1)  # (C,)
        s, q = rows.sum(axis=1), np.einsum("ij,ij->i", rows, rows)  # (C,)
        if self.min is None:
            self.min, self.max, self.total, self.squares = lo, hi, s, q
        else:
            self.min, self.max = np.minimum(self.min, lo), np.maximum(self.max, hi)
            self.total, self.squares = self.total + s, self.squares + q
        self.count += rows.shape[1]

    @property
    def mean(self) -> np.ndarray:
        """Per-channel mean, (C,)."""
        return self.total / max(self.count, 1)

    @property
    def std(self) -> np.ndarray:
        """Per-channel standard deviation, (C,)."""
        return np.sqrt(np.maximum(self.squares / max(self.count, 1) - self.mean ** 2, 0.0))


def channel_stats(model: onnx.ModelProto, axes: Mapping[str, int], batches: Batches
                  ) -> dict[str, ChannelStats]:
    """Per-channel statistics of each tensor in ``axes`` (tensor → channel axis)."""
    names = sorted(axes)
    stats = {n: ChannelStats(axes[n]) for n in names}
    if not names:
        return stats
    sess = ort_session(model, extra_outputs=names)
    outs = [o.name for o in sess.get_outputs()]
    idx = [outs.index(n) for n in names]
    seen = 0
    for feeds in batches():
        try:
            res = sess.run(None, dict(feeds))
        except Exception as exc:  # onnxruntime raises its own exception types
            raise CalibrationError(f"onnxruntime failed on a calibration batch: {exc}") from exc
        for n, i in zip(names, idx, strict=True):
            stats[n].update(res[i])
        seen += 1
    if not seen:
        raise CalibrationError("the calibration set is empty: give at least one sample")
    return stats
