"""Split samples into the batches a model accepts — the one batching rule for compare,
verify, calibration and ``edgequant run``.

Feeds hold samples on the first axis, or on each input's own batch axis (``axes``: e.g. a
recurrent state ``(layers, batch, hidden)`` has axis 1); a rank-0 input (a sample rate) is
one value shared by every batch. A model whose batch dimension is dynamic runs
``batch_size`` samples per call. A model whose batch dimension is fixed (say at 1, as
exported ``.tflite`` files and many ONNX exports are) runs in batches of exactly that size:
a batch-1 model fed N samples runs sample by sample, and a short last batch is padded with
copies of the last sample (the padding's outputs are dropped) — or refused with
``pad=False``, for consumers such as calibration that must not see a sample twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from edgequant.runtime.runner import Runner

#: Samples per call for models with a dynamic batch dimension.
DEFAULT_BATCH_SIZE = 32
#: Largest fixed batch a short sample set is padded up to.
MAX_PADDED_BATCH = 4096

Shapes = Mapping[str, tuple[int | None, ...]]
Axes = Mapping[str, int]


@dataclass(frozen=True)
class Batch:
    """One call's feeds; the first ``count`` samples are real, the rest padding."""

    feeds: dict[str, np.ndarray]
    count: int


def num_samples(feeds: Mapping[str, np.ndarray], axes: Axes | None = None) -> int:
    """Number of samples (on each input's batch axis, default 0), which every non-scalar
    input must share; 1 when every input is a scalar."""
    if not feeds:
        raise ValueError("feeds are empty: give one array per model input (first axis = samples)")
    axes = axes or {}
    counts = {name: np.asarray(x).shape[axes.get(name, 0)] for name, x in feeds.items()
              if np.ndim(x)}
    if len(set(counts.values())) > 1:
        raise ValueError(f"inputs disagree on the number of samples: {counts}")
    return next(iter(counts.values()), 1)


def fixed_batch_size(input_shapes: Shapes, axes: Axes | None = None) -> int | None:
    """The batch size the model's inputs fix (smallest fixed batch dim), or None if dynamic.

    A batch dimension that is ``None``, 0 or negative (``-1`` as some exporters write) is
    dynamic; rank-0 inputs have none.
    """
    axes = axes or {}
    dims = {s[axes.get(k, 0)] for k, s in input_shapes.items() if len(s) > axes.get(k, 0)}
    dims = {d for d in dims if d is not None and d > 0}
    return min(dims) if dims else None


def _take(arr: np.ndarray, axis: int, start: int, stop: int) -> np.ndarray:
    index = [slice(None)] * arr.ndim
    index[axis] = slice(start, stop)
    return arr[tuple(index)]


def needs_batching(input_shapes: Shapes, feeds: Mapping[str, np.ndarray]) -> bool:
    """True when the model fixes its batch size and ``feeds`` hold another number of samples
    (on every input, so genuinely per-sample data and not, say, a lookup table)."""
    fixed = fixed_batch_size(input_shapes)
    if fixed is None or not feeds or any(np.ndim(v) == 0 for v in feeds.values()):
        return False
    counts = {np.asarray(v).shape[0] for v in feeds.values()}
    return len(counts) == 1 and counts.pop() != fixed


def batches(feeds: Mapping[str, np.ndarray], input_shapes: Shapes | None = None,
            batch_size: int | None = DEFAULT_BATCH_SIZE, pad: bool = True,
            axes: Axes | None = None) -> Iterator[Batch]:
    """Yield the batches to run ``feeds`` (samples on each input's ``axes`` entry, default 0)
    through a model with ``input_shapes`` (``None`` entries = dynamic). ``batch_size=None``
    runs a dynamic-batch model in one call; rank-0 inputs go unchanged into every batch."""
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size={batch_size} is not allowed: use an integer >= 1 or None")
    feeds = {k: np.asarray(v) for k, v in feeds.items()}
    axes = {k: (axes or {}).get(k, 0) for k in feeds}
    if all(v.ndim == 0 for v in feeds.values()):  # scalars only: one sample
        yield Batch(feeds, 1)
        return
    n = num_samples(feeds, axes)
    fixed = fixed_batch_size(input_shapes or {}, axes)
    size = fixed or batch_size or n
    if fixed and fixed > max(n, MAX_PADDED_BATCH):
        raise ValueError(f"the model's inputs fix the batch size at {fixed:,}: padding {n} "
                         f"sample(s) to it is refused (at most {MAX_PADDED_BATCH:,})")
    if fixed and not pad and n % fixed:
        raise ValueError(
            f"{n} samples do not fill batches of {fixed}, the batch size the model's inputs "
            f"fix: give a multiple of {fixed} samples"
        )
    for start in range(0, n, size):
        stop = min(start + size, n)
        batch = {k: v if v.ndim == 0 else _take(v, axes[k], start, stop) for k, v in feeds.items()}
        short = size - (stop - start) if fixed else 0
        if short:  # repeat the last sample: (fixed, ...) on each batch axis
            batch = {k: v if v.ndim == 0 else np.concatenate(
                [v, np.repeat(_take(v, axes[k], stop - start - 1, stop - start), short,
                              axis=axes[k])], axis=axes[k])
                     for k, v in batch.items()}
        yield Batch(batch, stop - start)


def run_batched(runner: Runner, feeds: Mapping[str, np.ndarray],
                batch_size: int | None = DEFAULT_BATCH_SIZE, raw: bool = False
                ) -> list[np.ndarray]:
    """Run all samples through ``runner`` in :func:`batches` and concatenate each output
    (padding dropped), in ``runner.output_names`` order."""
    chunks: list[list[np.ndarray]] = []
    for b in batches(feeds, runner.input_shapes, batch_size):
        outs = runner.run(b.feeds, raw=raw)
        chunks.append([o[: b.count] if np.ndim(o) else o for o in outs])
    if len(chunks) == 1:
        return chunks[0]
    return [np.concatenate(parts, axis=0) for parts in zip(*chunks, strict=True)]
