"""Calibration batches for the recovery algorithms, which pass over the data more than once."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import onnx

from edgequant.runtime.batching import num_samples
from edgequant.runtime.feeds import batch_axes_of, model_inputs


def calibration_batches(model: onnx.ModelProto, calibration, batch_size: int,
                        batch_axes: Mapping[str, int] | None = None, limit: int | None = None
                        ) -> tuple[list[dict[str, np.ndarray]], int]:
    """The first ``limit`` calibration samples (all when None) as a list of feeds (views of
    the given arrays where possible) and their sample count."""
    from edgequant.ptq.calibrate import calibration_batches as batches_of

    axes = batch_axes_of(model_inputs(model, batch_axes))
    source, _ = batches_of(model, calibration, batch_size, batch_axes)
    out, seen = [], 0
    for feeds in source:
        n = num_samples(feeds, axes)
        if limit is not None and seen + n > limit:
            keep = limit - seen
            if keep <= 0:
                break
            feeds = {k: np.take(v, range(keep), axis=axes.get(k, 0)) for k, v in feeds.items()}
            n = keep
        out.append(feeds)
        seen += n
    return out, seen


def reusable(calibration):
    """Calibration data that can be iterated more than once (a one-shot iterator → list)."""
    return list(calibration) if isinstance(calibration, Iterator) else calibration
