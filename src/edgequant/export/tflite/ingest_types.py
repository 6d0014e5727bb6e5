"""Plain data types of the ONNX reading stage (shared by ingest and the pattern rewrites)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ActQ:
    """Per-tensor activation qparams as the ONNX model states them."""

    scale: float
    zero_point: int
    dtype: np.dtype  # int8, uint8 or int16


@dataclass(frozen=True)
class QConst:
    """A quantized constant (weight, bias or constant operand) read through DequantizeLinear."""

    values: np.ndarray  # integers, ONNX layout
    scale: np.ndarray  # 0-d or (C,) float32
    zero_point: np.ndarray  # same shape as scale
    axis: int | None  # channel axis for per-channel, None for per tensor

    def dequantized(self) -> np.ndarray:
        """The float value the ONNX model computes with (float32, ONNX DQ semantics)."""
        s, z = self.scale, self.zero_point.astype(np.int64)
        if self.axis is not None and s.ndim == 1:
            shp = [1] * self.values.ndim
            shp[self.axis] = -1
            s, z = s.reshape(shp), z.reshape(shp)
        return ((self.values.astype(np.int64) - z).astype(np.float32) * s).astype(np.float32)


@dataclass
class Node:
    """One ONNX node of the float graph (Q/DQ removed, inputs renamed to float tensors)."""

    op_type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict
