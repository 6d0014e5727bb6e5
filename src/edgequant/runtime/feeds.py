"""Model input data: DATA.npz files and in-memory feeds, validated against a model's inputs.

DATA.npz holds one array per model input keyed by input name (a single array under any key
for a one-input model), each with the input's rank. Samples are indexed on the input's batch
axis: given explicitly (``batch_axes={"h0": 1}``, CLI ``--batch-axis h0=1``), else the one
symbolic dim when exactly one dim is symbolic and the first dim is not fixed to 1, else axis 0.
A recurrent state ``h0 (layers, batch, hidden)`` is thus stored as ``(layers, n, hidden)``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import onnx
from onnx import helper

from edgequant.errors import CalibrationError
from edgequant.runtime.batching import _take, batches, fixed_batch_size
from edgequant.runtime.data_files import DataFile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputSpec:
    """A model input: name, numpy dtype, shape (``None`` for a symbolic dimension) and the
    axis its samples are indexed on."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]
    batch_axis: int = 0
    scalar: bool = False  # a rank-0 input (e.g. a sample rate): one value serves every sample


def model_inputs(model: onnx.ModelProto,
                 batch_axes: Mapping[str, int] | None = None) -> list[InputSpec]:
    """The graph inputs that are not initializers, in order, with their batch axes.

    A ``-1`` or ``0`` dim (Paddle's dynamic batch) counts as symbolic. ``batch_axes`` maps
    input name → axis (negative counts from the end); other inputs get :func:`auto_batch_axis`.
    """
    inits = {t.name for t in model.graph.initializer}
    specs = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                     for d in tt.shape.dim)
        scalar = tt.HasField("shape") and not dims
        try:
            dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
        except KeyError:
            raise CalibrationError(f"model input {vi.name!r} has element type {tt.elem_type}, "
                                   "which is not an ONNX tensor type") from None
        spec = InputSpec(vi.name, dtype, dims, 0, scalar)
        names = tuple(d.dim_param for d in tt.shape.dim)
        specs.append(replace(spec, batch_axis=auto_batch_axis(dims, names)))
    return with_batch_axes(specs, batch_axes) if batch_axes else specs


def auto_batch_axis(shape: tuple[int | None, ...], names: tuple[str, ...] = ()) -> int:
    """The batch axis of an input: the symbolic dim named like a batch (``batch``,
    ``batch_size``, ``N``…) when there is one; else the one symbolic dim when exactly one is
    symbolic (unless dim 0 is fixed to 1, a batch-1 export whose symbolic dim is a sequence);
    otherwise axis 0."""
    named = [i for i, n in enumerate(names) if n and ("batch" in n.lower() or n in ("N", "n"))
             and i < len(shape) and shape[i] is None]
    if len(named) == 1:
        return named[0]
    symbolic = [i for i, d in enumerate(shape) if d is None]
    if len(symbolic) == 1 and not (shape and shape[0] == 1):
        return symbolic[0]
    return 0


def with_batch_axes(inputs: list[InputSpec], batch_axes: Mapping[str, int]) -> list[InputSpec]:
    """``inputs`` with explicit batch axes applied; unknown names or axes are refused."""
    by_name = {i.name: i for i in inputs}
    unknown = sorted(set(batch_axes) - set(by_name))
    if unknown:
        raise CalibrationError(f"batch axis given for unknown input(s) {unknown}; the model's "
                               f"inputs are {sorted(by_name)}")
    out = []
    for spec in inputs:
        if spec.name not in batch_axes:
            out.append(spec)
            continue
        axis, rank = batch_axes[spec.name], len(spec.shape)
        if not isinstance(axis, int | np.integer) or isinstance(axis, bool) \
                or not -rank <= axis < rank:
            raise CalibrationError(f"batch axis {axis!r} of input {spec.name!r} is not allowed: "
                                   f"use an integer in [{-rank}, {rank - 1}] (rank {rank})")
        out.append(replace(spec, batch_axis=int(axis) % rank))
    return out


def parse_batch_axes(items: list[str] | tuple[str, ...]) -> dict[str, int]:
    """CLI ``--batch-axis NAME=AXIS`` (repeatable) → ``{"NAME": AXIS}``."""
    out: dict[str, int] = {}
    for item in items:
        name, sep, axis = item.rpartition("=")
        try:
            value = int(axis)
        except ValueError:
            value = None
        if not sep or not name or value is None:
            raise ValueError(f"--batch-axis {item!r} is not allowed: use INPUT=AXIS, e.g. h0=1")
        out[name] = value
    return out


def batch_axes_of(inputs: list[InputSpec]) -> dict[str, int]:
    """Input name → batch axis."""
    return {i.name: i.batch_axis for i in inputs}


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load every array of an .npz file (no pickles; a ``.npy`` file gives one array under
    the key ``"input"``)."""
    with DataFile(path) as f:
        return {k or "input": f.read(k) for k in f.keys()}


def _match(keys: list[str], inputs: list[InputSpec], what: str) -> dict[str, str]:
    """Model input name → data key: by name, or the one key of a one-input model."""
    if not keys:
        raise CalibrationError(f"{what} holds no arrays; expected inputs {[i.name for i in inputs]}")
    if len(inputs) == 1 and len(keys) == 1 and inputs[0].name not in keys:
        return {inputs[0].name: keys[0]}
    if keys == [""]:  # a .npy file for a model of several inputs
        raise CalibrationError(f"{what} is a single .npy array, but the model has "
                               f"{len(inputs)} inputs {[i.name for i in inputs]}: save one "
                               "array per input with numpy.savez(path, name=array)")
    missing = [i.name for i in inputs if i.name not in keys]
    if missing:
        raise CalibrationError(f"{what} is missing model input(s) {missing}; it has {sorted(keys)}")
    return {i.name: i.name for i in inputs}


def _note_unused(keys: list[str], used: Mapping[str, str], what: str) -> None:
    unused = sorted(set(keys) - set(used.values()))
    if unused:
        log.warning("%s: array(s) %s match no model input and are not read", what, unused)


def load_feeds(data: str | os.PathLike | Mapping[str, np.ndarray],
               inputs: list[InputSpec], *, what: str = "data") -> dict[str, np.ndarray]:
    """Match arrays to model inputs and check sample shapes, dtypes and values.

    Float data is cast to the input's float type; integer data for a float input (or the
    reverse) is refused, as are missing inputs, empty sets, mismatched sample counts, wrong
    per-sample shapes, NaN/Inf and float64 values beyond the input's float range. From a
    file, only the arrays that match an input are read (the others are listed in a log
    warning); a ``.npy`` file serves a one-input model.
    """
    if isinstance(data, str | os.PathLike):
        with DataFile(data, what) as f:
            used = _match(f.keys(), inputs, what)
            _note_unused(f.keys(), used, what)
            arrays = {name: f.read(key) for name, key in used.items()}
    else:
        arrays = dict(data)
    if not arrays:
        raise CalibrationError(f"{what} holds no arrays; expected inputs {[i.name for i in inputs]}")
    if len(inputs) == 1 and len(arrays) == 1 and inputs[0].name not in arrays:
        arrays = {inputs[0].name: next(iter(arrays.values()))}
    missing = [i.name for i in inputs if i.name not in arrays]
    if missing:
        raise CalibrationError(
            f"{what} is missing model input(s) {missing}; it has {sorted(arrays)}"
        )
    feeds: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for spec in inputs:
        arr = np.asarray(arrays[spec.name])
        feeds[spec.name] = check_array(arr, spec, what)
        if not spec.scalar:
            counts[spec.name] = arr.shape[spec.batch_axis]
    check_sample_counts(counts, inputs, what)
    return feeds


def check_sample_counts(counts: dict[str, int], inputs: list[InputSpec], what: str) -> None:
    """Every non-scalar input must hold the same number of samples on its batch axis."""
    if len(set(counts.values())) > 1:
        where = ", ".join(f"{k}: {v} on axis {_axis_of(inputs, k)}" for k, v in counts.items())
        raise CalibrationError(f"{what}: inputs have different sample counts ({where}); give "
                               "the batch axis of each input (batch_axes / --batch-axis NAME=AXIS)")


def _axis_of(inputs: list[InputSpec], name: str) -> int:
    return next(i.batch_axis for i in inputs if i.name == name)


def check_array(arr: np.ndarray, spec: InputSpec, what: str = "data") -> np.ndarray:
    """Validate one input array (samples on ``spec.batch_axis``) against ``spec``; returns it
    cast to the input's dtype."""
    name, b = spec.name, spec.batch_axis
    if spec.scalar:
        if arr.ndim != 0:
            raise CalibrationError(f"{what} for input {name!r} has shape {arr.shape}; the input is a "
                                   "scalar (rank 0): give one value, used for every sample")
        return _cast(arr, spec, what)
    if arr.ndim == 0 or arr.ndim <= b or arr.shape[b] == 0:
        raise CalibrationError(f"{what} for input {name!r} is empty (shape {arr.shape})")
    where = "the first axis" if b == 0 else f"axis {b}"
    if spec.shape and arr.ndim != len(spec.shape):
        raise CalibrationError(
            f"{what} for input {name!r} has shape {arr.shape}; the model expects rank "
            f"{len(spec.shape)} {tuple('?' if d is None else d for d in spec.shape)} "
            f"with samples on {where}"
        )
    for axis, (got, want) in enumerate(zip(arr.shape, spec.shape, strict=False)):
        if axis != b and want is not None and got != want:
            raise CalibrationError(
                f"{what} for input {name!r} has shape {arr.shape}; axis {axis} must be {want} "
                f"(samples on {where})"
            )
    return _cast(arr, spec, what)


def _cast(arr: np.ndarray, spec: InputSpec, what: str) -> np.ndarray:
    """``arr`` checked against and cast to the input's dtype (float↔int refused, NaN refused)."""
    name = spec.name
    if spec.dtype == np.bool_ and arr.dtype == np.bool_:
        return arr
    want_float = np.issubdtype(spec.dtype, np.floating)
    if want_float != np.issubdtype(arr.dtype, np.floating) or arr.dtype == np.bool_:
        raise CalibrationError(
            f"{what} for input {name!r} has dtype {arr.dtype}; the model expects {spec.dtype}"
        )
    if want_float:
        if not np.all(np.isfinite(arr)):
            raise CalibrationError(f"{what} for input {name!r} contains NaN or Inf")
        top = np.finfo(spec.dtype).max
        if arr.size and np.finfo(arr.dtype).max > top and np.max(np.abs(arr)) > top:
            big = float(np.max(np.abs(arr)))
            raise CalibrationError(f"{what} for input {name!r} holds {arr.dtype} value(s) up to "
                                   f"{big:.3g}, beyond the {np.dtype(spec.dtype).name} range "
                                   f"(±{float(top):.3g}) of the input")
        return arr.astype(spec.dtype, copy=False)
    info = np.iinfo(spec.dtype)
    if arr.size and (arr.min() < info.min or arr.max() > info.max):
        raise CalibrationError(
            f"{what} for input {name!r} has values outside {spec.dtype} [{info.min}, {info.max}]"
        )
    return arr.astype(spec.dtype, copy=False)


def zero_sample(inputs: list[InputSpec]) -> dict[str, np.ndarray]:
    """Zeros for every input, symbolic dims set to 1."""
    return {i.name: np.zeros(tuple(d or 1 for d in i.shape), i.dtype) for i in inputs}


def first_batch(path: str | os.PathLike, inputs: list[InputSpec], size: int,
                what: str = "data") -> dict[str, np.ndarray]:
    """The first ``size`` samples of a data file (fewer when it holds fewer), checked; only
    those are read (inputs whose samples are not on axis 0 are read whole)."""
    with DataFile(path, what) as f:
        used = _match(f.keys(), inputs, what)
        feeds = {}
        for spec in inputs:
            key = used[spec.name]
            if spec.scalar:
                feeds[spec.name] = check_array(f.read(key), spec, what)
            elif spec.batch_axis != 0:
                whole = check_array(f.read(key), spec, what)
                feeds[spec.name] = _take(whole, spec.batch_axis, 0, size)
            else:
                feeds[spec.name] = check_array(next(iter(f.chunks(key, size))), spec, what)
    return feeds


def validation_sample(data, inputs: list[InputSpec]) -> dict[str, np.ndarray]:
    """One batch to run a written model on, feeding exactly the float model's ``inputs``:
    from ``data`` (a DATA.npz path or dict) sized to the model's fixed batch, else 1; zeros
    (:func:`zero_sample`) when ``data`` is something else or does not fit."""
    if isinstance(data, str | os.PathLike | Mapping) and inputs:
        axes = batch_axes_of(inputs)
        size = fixed_batch_size({i.name: i.shape for i in inputs}, axes) or 1
        try:
            if isinstance(data, Mapping):
                feeds = load_feeds(data, inputs)
            else:  # read only the first batch, not the whole file again
                feeds = first_batch(data, inputs, size)
        except CalibrationError:
            feeds = {}
        if feeds:
            batch = next(batches(feeds, None, size, axes=axes)).feeds
            first = next((i for i in inputs if not i.scalar), inputs[0])
            if first.scalar or batch[first.name].shape[first.batch_axis] == size:
                return batch
    return zero_sample(inputs)
