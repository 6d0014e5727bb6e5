"""Per-channel statistics of float tensors over calibration batches, in flat memory.

One onnxruntime session reduces the wanted tensors per channel inside the graph; each batch
updates running min, max, sum and sum of squares per channel, so neither the number of
samples nor the number of observed tensors grows the memory beyond one batch's activations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgequant.errors import CalibrationError
from edgequant.runtime.sessions import ort_session

#: Name prefix of the tensors and nodes recovery adds to its measuring copies of a model.
PREFIX = "edgequant_recovery"

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
        """Fold one batch (the whole tensor) in."""
        rows = np.moveaxis(np.asarray(x, np.float64), self.axis, 0).reshape(x.shape[self.axis], -1)
        self.fold(rows.min(axis=1), rows.max(axis=1), rows.sum(axis=1),
                  np.einsum("ij,ij->i", rows, rows), rows.shape[1])

    def fold(self, lo: np.ndarray, hi: np.ndarray, s: np.ndarray, q: np.ndarray, n: int) -> None:
        """Fold one batch's per-channel (C,) min, max, sum, sum of squares over ``n`` values."""
        if self.min is None:
            self.min, self.max, self.total, self.squares = lo, hi, s, q
        else:
            self.min, self.max = np.minimum(self.min, lo), np.maximum(self.max, hi)
            self.total, self.squares = self.total + s, self.squares + q
        self.count += n

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
    """Per-channel statistics of each tensor in ``axes`` (tensor → channel axis, ≥ 0 or -1).

    Reductions run inside the session (ReduceMin / ReduceMax / ReduceSum of x and x²), so a
    batch hands back four (C,) vectors per tensor, never the tensor itself.
    """
    names = sorted(axes)
    stats = {n: ChannelStats(0) for n in names}
    if not names:
        return stats
    ranks = _ranks(model, names)
    aug = onnx.ModelProto()
    aug.CopyFrom(model)
    outputs = []
    for i, n in enumerate(names):
        rank = ranks[n]
        axis = axes[n] % rank
        p = f"{PREFIX}/stats/{i}"
        aug.graph.initializer.append(numpy_helper.from_array(
            np.array([a for a in range(rank) if a != axis], np.int64), f"{p}/axes"))
        aug.graph.node.extend([
            helper.make_node("Mul", [n, n], [f"{p}/x2"]),
            *[helper.make_node(op, [src, f"{p}/axes"], [f"{p}/{key}"], keepdims=0)
              for op, src, key in (("ReduceMin", n, "min"), ("ReduceMax", n, "max"),
                                   ("ReduceSum", n, "sum"), ("ReduceSum", f"{p}/x2", "sq"))],
            helper.make_node("Size", [n], [f"{p}/size"]),
        ])
        outputs += [f"{p}/{k}" for k in ("min", "max", "sum", "sq", "size")]
    sess = ort_session(aug, extra_outputs=outputs)
    outs = [o.name for o in sess.get_outputs()]
    idx = [outs.index(o) for o in outputs]
    seen = 0
    for feeds in batches():
        try:
            res = sess.run(None, dict(feeds))
        except Exception as exc:  # onnxruntime raises its own exception types
            raise CalibrationError(f"onnxruntime failed on a calibration batch: {exc}") from exc
        for j, n in enumerate(names):
            lo, hi, tot, sq, size = (np.asarray(res[idx[5 * j + k]], np.float64) for k in range(5))
            stats[n].fold(lo, hi, tot, sq, int(size) // max(lo.size, 1))
        seen += 1
    if not seen:
        raise CalibrationError("the calibration set is empty: give at least one sample")
    return stats


def _ranks(model: onnx.ModelProto, names: list[str]) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    found = {vi.name: len(vi.type.tensor_type.shape.dim)
             for vi in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]
             if vi.type.tensor_type.HasField("shape")}
    missing = [n for n in names if n not in found]
    if missing:
        raise CalibrationError(f"tensor(s) {missing} have no known rank: cannot reduce per channel")
    return {n: found[n] for n in names}
