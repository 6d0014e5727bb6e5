"""Split samples into the batches a model accepts — the one batching rule for compare,
verify, calibration and ``edgequant run``.

Feeds hold samples on the first axis. A model whose batch dimension is dynamic runs
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

Shapes = Mapping[str, tuple[int | None, ...]]


@dataclass(frozen=True)
class Batch:
    """One call's feeds; the first ``count`` samples are real, the rest padding."""

    feeds: dict[str, np.ndarray]
    count: int


def num_samples(feeds: Mapping[str, np.ndarray]) -> int:
    """Number of samples (first axis), which every input must share."""
    if not feeds:
        raise ValueError("feeds are empty: give one array per model input (first axis = samples)")
    counts = {name: np.asarray(x).shape[0] if np.ndim(x) else 1 for name, x in feeds.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(f"inputs disagree on the number of samples: {counts}")
    return next(iter(counts.values()))


def fixed_batch_size(input_shapes: Shapes) -> int | None:
    """The batch size the model's inputs fix (smallest fixed first dim), or None if dynamic.

    A first dimension that is ``None``, 0 or negative (``-1`` as some exporters write) is
    dynamic.
    """
    dims = {s[0] for s in input_shapes.values() if len(s) > 0 and s[0] is not None and s[0] > 0}
    return min(dims) if dims else None


def needs_batching(input_shapes: Shapes, feeds: Mapping[str, np.ndarray]) -> bool:
    """True when the model fixes its batch size and ``feeds`` hold another number of samples
    (on every input, so genuinely per-sample data and not, say, a lookup table)."""
    fixed = fixed_batch_size(input_shapes)
    if fixed is None or not feeds or any(np.ndim(v) == 0 for v in feeds.values()):
        return False
    counts = {np.asarray(v).shape[0] for v in feeds.values()}
    return len(counts) == 1 and counts.pop() != fixed


def batches(feeds: Mapping[str, np.ndarray], input_shapes: Shapes | None = None,
            batch_size: int | None = DEFAULT_BATCH_SIZE, pad: bool = True) -> Iterator[Batch]:
    """Yield the batches to run ``feeds`` (samples on the first axis) through a model with
    ``input_shapes`` (``None`` entries = dynamic). ``batch_size=None`` runs a dynamic-batch
    model in one call."""
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size={batch_size} is not allowed: use an integer >= 1 or None")
    feeds = {k: np.asarray(v) for k, v in feeds.items()}
    if any(v.ndim == 0 for v in feeds.values()):  # scalars: no sample axis to split
        yield Batch(feeds, 1)
        return
    n = num_samples(feeds)
    fixed = fixed_batch_size(input_shapes or {})
    size = fixed or batch_size or n
    if fixed and not pad and n % fixed:
        raise ValueError(
            f"{n} samples do not fill batches of {fixed}, the batch size the model's inputs "
            f"fix: give a multiple of {fixed} samples"
        )
    for start in range(0, n, size):
        stop = min(start + size, n)
        batch = {k: v[start:stop] for k, v in feeds.items()}
        short = size - (stop - start) if fixed else 0
        if short:
            batch = {k: np.concatenate([v, np.repeat(v[-1:], short, axis=0)])  # (fixed, ...)
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
