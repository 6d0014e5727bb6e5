"""Model input data: DATA.npz files and in-memory feeds, validated against a model's inputs.

DATA.npz holds one array per model input keyed by input name (a single array under any key
for a one-input model); the first axis indexes samples.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from edgequant.errors import CalibrationError


@dataclass(frozen=True)
class InputSpec:
    """A model input: name, numpy dtype and shape (``None`` for a symbolic dimension)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]


def model_inputs(model: onnx.ModelProto) -> list[InputSpec]:
    """The graph inputs that are not initializers, in order."""
    inits = {t.name for t in model.graph.initializer}
    specs = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
        specs.append(InputSpec(vi.name, helper.tensor_dtype_to_np_dtype(tt.elem_type), dims))
    return specs


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load every array of an .npz file (no pickles)."""
    p = Path(path)
    if not p.is_file():
        raise CalibrationError(f"data file {str(p)!r} does not exist")
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise CalibrationError(f"data file {str(p)!r} is not a readable .npz: {exc}") from exc


def load_feeds(data: str | os.PathLike | Mapping[str, np.ndarray],
               inputs: list[InputSpec], *, what: str = "data") -> dict[str, np.ndarray]:
    """Match arrays to model inputs and check sample shapes, dtypes and values.

    Float data is cast to the input's float type; integer data for a float input (or the
    reverse) is refused, as are missing inputs, empty sets, mismatched sample counts, wrong
    per-sample shapes and NaN/Inf.
    """
    arrays = read_npz(data) if isinstance(data, str | os.PathLike) else dict(data)
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
    counts = set()
    for spec in inputs:
        arr = np.asarray(arrays[spec.name])
        feeds[spec.name] = check_array(arr, spec, what)
        counts.add(arr.shape[0])
    if len(counts) > 1:
        raise CalibrationError(f"{what}: inputs have different sample counts {sorted(counts)}")
    return feeds


def check_array(arr: np.ndarray, spec: InputSpec, what: str = "data") -> np.ndarray:
    """Validate one input array (first axis = samples) against ``spec``; returns it cast."""
    name = spec.name
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise CalibrationError(f"{what} for input {name!r} is empty (shape {arr.shape})")
    if spec.shape and arr.ndim != len(spec.shape):
        raise CalibrationError(
            f"{what} for input {name!r} has shape {arr.shape}; the model expects rank "
            f"{len(spec.shape)} {tuple('?' if d is None else d for d in spec.shape)} "
            "with samples on the first axis"
        )
    for axis, (got, want) in enumerate(zip(arr.shape[1:], spec.shape[1:], strict=False), 1):
        if want is not None and got != want:
            raise CalibrationError(
                f"{what} for input {name!r} has shape {arr.shape}; axis {axis} must be {want}"
            )
    want_float = np.issubdtype(spec.dtype, np.floating)
    if want_float != np.issubdtype(arr.dtype, np.floating) or arr.dtype == np.bool_:
        raise CalibrationError(
            f"{what} for input {name!r} has dtype {arr.dtype}; the model expects {spec.dtype}"
        )
    if want_float:
        if not np.all(np.isfinite(arr)):
            raise CalibrationError(f"{what} for input {name!r} contains NaN or Inf")
        return arr.astype(spec.dtype, copy=False)
    info = np.iinfo(spec.dtype)
    if arr.size and (arr.min() < info.min or arr.max() > info.max):
        raise CalibrationError(
            f"{what} for input {name!r} has values outside {spec.dtype} [{info.min}, {info.max}]"
        )
    return arr.astype(spec.dtype, copy=False)


def iter_batches(feeds: Mapping[str, np.ndarray], batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Split feeds along the sample axis into batches of at most ``batch_size``."""
    n = len(next(iter(feeds.values())))
    for start in range(0, n, batch_size):
        yield {k: v[start:start + batch_size] for k, v in feeds.items()}


def fixed_batch(inputs: list[InputSpec]) -> int | None:
    """The batch size a model's first input dimension is fixed to, if any."""
    dims = {i.shape[0] for i in inputs if i.shape}
    return dims.pop() if len(dims) == 1 and None not in dims else None
