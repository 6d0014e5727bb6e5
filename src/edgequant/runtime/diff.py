"""How one tensor differs between a reference and an engine, in LSB where that makes sense.

* integer tensors: integer difference (LSB of that tensor);
* float tensors dequantized from an integer one (ONNX DequantizeLinear, TFLite DEQUANTIZE):
  difference / scale (LSB of the quantized tensor it came from);
* other float tensors: absolute difference (reported as a float, not in LSB).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np

from edgequant.interp.integers import as_int

#: Decimals kept of an LSB difference of a dequantized tensor (float32 scale rounding makes
#: an exact 1 LSB come out as 0.99999994).
LSB_DECIMALS = 6


@dataclass(frozen=True)
class TensorDiff:
    """How one tensor differs between the reference and ``engine``."""

    name: str
    kind: Literal["integer", "dequantized", "float"]
    shape: tuple[int, ...]
    dtype: str
    max_diff: float  # LSB for integer / dequantized tensors, absolute for float ones
    identical: float  # share of bit-identical values, 0..1
    producer: str = ""  # op type of the node that wrote the tensor
    engine: str = ""  # the engine compared with the reference

    @property
    def in_lsb(self) -> bool:
        """True when ``max_diff`` is measured in LSB (integer or dequantized tensors)."""
        return self.kind != "float"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


def merge_diffs(parts: list[TensorDiff]) -> TensorDiff:
    """One TensorDiff for a tensor compared batch by batch: worst difference, identical share
    weighted by size, and the batches' shapes stacked on the first axis when they agree on the
    others."""
    sizes = [max(int(np.prod(p.shape)), 1) for p in parts]
    shape = parts[0].shape
    if shape and all(len(p.shape) == len(shape) and p.shape[1:] == shape[1:] for p in parts):
        shape = (sum(p.shape[0] for p in parts), *shape[1:])
    return replace(parts[0], shape=shape, max_diff=max(p.max_diff for p in parts),
                   identical=float(np.average([p.identical for p in parts], weights=sizes)))


def scale_like(scale: np.ndarray, axis: int | None, block: int, shape: tuple[int, ...]
               ) -> np.ndarray:
    """``scale`` (scalar, per axis or blocked along ``axis``) broadcastable to ``shape``."""
    if scale.size == 1 or axis is None:
        return scale.reshape(())
    axis = axis % len(shape)
    if block > 0:
        return np.repeat(scale, block, axis=axis).take(range(shape[axis]), axis=axis)
    return scale.reshape([-1 if i == axis else 1 for i in range(len(shape))])


def compare(name: str, ref: np.ndarray, other: np.ndarray, scale: np.ndarray | None = None,
            axis: int | None = None, block: int = 0, producer: str = "", engine: str = ""
            ) -> TensorDiff:
    """Difference of one tensor (see the module docstring for the units). ``scale`` (with
    ``axis`` / ``block`` when not per tensor) marks a dequantized float tensor."""
    ref, other = np.asarray(ref), np.asarray(other)
    if ref.shape != other.shape:
        raise ValueError(f"tensor {name!r}: shapes differ, reference {ref.shape} vs {other.shape}")
    identical = float(np.mean(ref == other)) if ref.size else 1.0
    if ref.dtype.kind in "iub" or as_int(ref).dtype.kind in "iu":
        d = np.abs(as_int(ref).astype(np.int64) - as_int(other).astype(np.int64))  # same shape
        return TensorDiff(name, "integer", ref.shape, str(ref.dtype),
                          float(d.max()) if d.size else 0.0, identical, producer, engine)
    d = np.abs(ref.astype(np.float64) - other.astype(np.float64))  # same shape, float64
    d = np.where(np.isnan(ref) & np.isnan(other), 0.0, d)
    if scale is not None:
        lsb = d / scale_like(np.asarray(scale, np.float64), axis, block, ref.shape)
        return TensorDiff(name, "dequantized", ref.shape, str(ref.dtype),
                          float(np.round(lsb.max(), LSB_DECIMALS)) if d.size else 0.0, identical,
                          producer, engine)
    return TensorDiff(name, "float", ref.shape, str(ref.dtype),
                      float(d.max()) if d.size else 0.0, identical, producer, engine)
