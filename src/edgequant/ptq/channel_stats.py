"""Per-input-feature statistics of MatMul inputs on calibration data.

SmoothQuant and the outlier decomposition both need, for a tensor ``X (..., K)``, the
largest ``|x|`` of each of its ``K`` features over the calibration set, and a sample of
rows to measure a layer's output error on. One onnxruntime session computes them all;
memory stays bounded (``max_rows`` rows kept per tensor).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from edgequant.errors import CalibrationError
from edgequant.runtime.sessions import ort_session

#: Rows (tokens) kept per tensor for per-layer error searches.
MAX_ROWS = 512


@dataclass
class ChannelStats:
    """``absmax`` (K,) float32 over every row seen; ``rows`` (R, K) a uniform sample."""

    absmax: np.ndarray
    rows: np.ndarray


def channel_stats(model: onnx.ModelProto, tensors: Sequence[str],
                  batches: Callable[[], Iterable[dict[str, np.ndarray]]],
                  max_rows: int = MAX_ROWS, seed: int = 0) -> dict[str, ChannelStats]:
    """Stats of each tensor in ``tensors`` (features on the last axis) over ``batches()``."""
    names = sorted(set(tensors))
    if not names:
        return {}
    sess = ort_session(model, extra_outputs=names)
    outs = [o.name for o in sess.get_outputs()]
    idx = [outs.index(n) for n in names]
    rng = np.random.default_rng(seed)
    absmax: dict[str, np.ndarray] = {}
    rows: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feeds in batches():
        try:
            results = sess.run(None, dict(feeds))
        except Exception as exc:  # onnxruntime raises its own exception types
            raise CalibrationError(f"onnxruntime failed on a calibration batch: {exc}") from exc
        for n, i in zip(names, idx, strict=True):
            x = np.asarray(results[i], dtype=np.float32)
            x = x.reshape(-1, x.shape[-1])  # (rows, K) float32
            if not np.all(np.isfinite(x)):
                raise CalibrationError(f"tensor {n!r} holds NaN/Inf on calibration data")
            m = np.abs(x).max(axis=0)  # (K,)
            absmax[n] = m if n not in absmax else np.maximum(absmax[n], m)
            take = rng.choice(len(x), size=min(len(x), max_rows), replace=False)
            rows[n].append(x[take])
    if not absmax:
        raise CalibrationError("the calibration set is empty: give at least one sample")
    out = {}
    for n in names:
        r = np.concatenate(rows[n])  # (R_total, K)
        if len(r) > max_rows:
            r = r[rng.choice(len(r), size=max_rows, replace=False)]
        out[n] = ChannelStats(absmax[n], r)
    return out
