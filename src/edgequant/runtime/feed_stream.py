"""Calibration feeds streamed from a DATA.npz / ``.npy`` file one batch at a time.

:func:`stream_feeds` checks every matched array's header (rank, per-sample shape, dtype,
sample counts) before reading data, then yields validated batches
(:func:`~edgequant.runtime.feeds.check_array` per batch: NaN/Inf, float range), each read
from the member's stream — peak memory is one batch, not the file. Arrays whose samples are
not on axis 0 (or are stored in Fortran order) are read whole and sliced.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from edgequant.errors import CalibrationError
from edgequant.runtime.batching import _take, fixed_batch_size
from edgequant.runtime.data_files import DataFile
from edgequant.runtime.feeds import InputSpec, _match, _note_unused, check_array, check_sample_counts


@dataclass
class FeedStream:
    """``total`` samples of a data file, iterated as batches (input name → array)."""

    file: DataFile
    inputs: list[InputSpec]
    keys: dict[str, str]
    total: int
    size: int
    what: str

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        try:
            yield from self._batches()
        finally:
            self.file.close()

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        f, streams, fixed = self.file, {}, {}
        for spec in self.inputs:
            key = self.keys[spec.name]
            m = f.member(key)
            if spec.scalar:
                fixed[spec.name] = check_array(f.read(key), spec, self.what)
            elif spec.batch_axis == 0 and not m.fortran:
                streams[spec.name] = f.chunks(key, self.size)
            else:  # samples on another axis: read whole, slice per batch
                fixed[spec.name] = check_array(f.read(key), spec, self.what)
        for start in range(0, self.total, self.size):
            stop = min(start + self.size, self.total)
            batch = {}
            for spec in self.inputs:
                if spec.name in streams:
                    batch[spec.name] = check_array(next(streams[spec.name]), spec, self.what)
                elif spec.scalar:
                    batch[spec.name] = fixed[spec.name]
                else:
                    batch[spec.name] = _take(fixed[spec.name], spec.batch_axis, start, stop)
            yield batch


def stream_feeds(path: str | os.PathLike, inputs: list[InputSpec], batch_size: int, *,
                 what: str = "calibration data", pad: bool = False) -> FeedStream:
    """Open ``path`` and check its headers against ``inputs``; iterate the result for
    batches of ``batch_size`` samples (the model's fixed batch size when it has one; with
    ``pad=False`` the sample count must then be a multiple of it)."""
    f = DataFile(path, what)
    try:
        keys = _match(f.keys(), inputs, what)
        _note_unused(f.keys(), keys, what)
        counts = {}
        for spec in inputs:
            m = f.member(keys[spec.name])
            # a one-sample stand-in with the member's dtype: checks rank, per-sample dims and
            # dtype kind without reading data
            shape = list(m.shape)
            if not spec.scalar and len(shape) > spec.batch_axis and shape[spec.batch_axis]:
                shape[spec.batch_axis] = 1
            try:
                check_array(np.zeros(shape, m.dtype), spec, what)
            except CalibrationError as exc:  # name the file's shape, not the stand-in's
                raise CalibrationError(str(exc).replace(str(tuple(shape)), str(m.shape))) from None
            if not spec.scalar:
                counts[spec.name] = m.shape[spec.batch_axis]
        check_sample_counts(counts, inputs, what)
        total = next(iter(counts.values()), 1)
        axes = {i.name: i.batch_axis for i in inputs}
        fixed = fixed_batch_size({i.name: i.shape for i in inputs}, axes)
        if fixed and not pad and total % fixed:
            raise CalibrationError(f"{what}: {total} samples do not fill batches of {fixed}, the "
                                   f"batch size the model's inputs fix: give a multiple of "
                                   f"{fixed} samples")
        return FeedStream(f, inputs, keys, total, fixed or batch_size, what)
    except BaseException:
        f.close()
        raise

