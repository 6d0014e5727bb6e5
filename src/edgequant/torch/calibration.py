"""Calibration data from PyTorch-style sources → ``{onnx_input_name: array}`` feeds.

Accepted: a ``DataLoader`` or any iterable of batches, where a batch is a tensor / numpy array
(one-input models), an ``(x, y)`` tuple (``x`` is taken), or a tuple of one tensor per input;
or a dict input name → array; or, for a multi-input model, one tuple of one tensor per input
(all with the same number of samples) standing for a single batch. Samples are on the first
axis; every batch must match the example inputs' per-sample shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch

from edgequant.errors import CalibrationError


def _np(a, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    if isinstance(a, np.ndarray):
        return a
    raise CalibrationError(
        f"calibration batch for input {name!r} is a {type(a).__name__}: use a torch.Tensor or "
        "numpy array (or an (x, y) tuple of them)"
    )


def _split(batch, names: list[str]) -> list:
    if isinstance(batch, Mapping):
        missing = [n for n in names if n not in batch]
        if missing:
            raise CalibrationError(f"calibration batch is missing input(s) {missing}; "
                                   f"it has {sorted(batch)}")
        return [batch[n] for n in names]
    if isinstance(batch, tuple | list):
        if len(batch) < len(names):
            raise CalibrationError(f"calibration batch has {len(batch)} element(s); the model "
                                   f"has inputs {names}")
        return list(batch[: len(names)])  # (x, y): labels after the inputs are ignored
    if len(names) > 1:
        raise CalibrationError(f"calibration batch is a single {type(batch).__name__}; the model "
                               f"has inputs {names}: give a tuple (one tensor per input) or a "
                               "dict input name → tensor per batch")
    return [batch]


def _is_one_batch(calibration, names: list[str]) -> bool:
    """A tuple / list of one tensor per input (more than one input): one batch, not batches."""
    return (len(names) > 1 and isinstance(calibration, tuple | list)
            and len(calibration) == len(names)
            and all(isinstance(a, torch.Tensor | np.ndarray) and a.ndim >= 1 for a in calibration)
            and len({len(a) for a in calibration}) == 1)


def calibration_feeds(calibration, names: list[str],
                      sample_shapes: list[tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Concatenate calibration batches into one array per model input (checked shapes)."""
    if isinstance(calibration, Mapping) and all(n in calibration for n in names):
        batches: Iterable = [calibration]
    elif isinstance(calibration, torch.Tensor | np.ndarray) or _is_one_batch(calibration, names):
        batches = [calibration]
    else:
        batches = calibration
    parts: list[list[np.ndarray]] = [[] for _ in names]
    for bi, batch in enumerate(batches):
        for i, (name, arr) in enumerate(zip(names, _split(batch, names), strict=True)):
            a = _np(arr, name)
            if tuple(a.shape[1:]) != tuple(sample_shapes[i]):
                raise CalibrationError(
                    f"calibration batch {bi} for input {name!r} has shape {tuple(a.shape)}: "
                    f"expected (N, {', '.join(map(str, sample_shapes[i]))}) like the example "
                    "inputs"
                )
            parts[i].append(a.astype(np.float32) if a.dtype.kind == "f" else a)
    if not parts or not parts[0]:
        raise CalibrationError(f"calibration data is empty; expected batches for inputs {names}")
    return {n: np.concatenate(p, axis=0) for n, p in zip(names, parts, strict=True)}
