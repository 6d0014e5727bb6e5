"""What a quantized tensor looks like: its integer type, granularity and scheme.

| class        | meaning                                                    | qparams shape          |
|--------------|------------------------------------------------------------|------------------------|
| PerTensor    | one scale / zero point for the whole tensor                | ()                     |
| PerChannel   | one per index of ``axis``                                  | (x.shape[axis],)       |
| PerGroup     | one per block of ``size`` consecutive elements on ``axis`` | x.shape, axis → ceil(n/size) |

The ONNX numeric convention is used everywhere inside edgequant:
``q = saturate(round(x / scale) + zero_point)`` and ``x̂ = (q − zero_point) · scale``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import onnx

Rounding = Literal["half_even", "half_away"]


@dataclass(frozen=True)
class QType:
    """An integer type of ``bits`` bits (2–16), signed or not, optionally narrow range.

    Narrow range drops the most negative value of a signed type (int8 → [-127, 127]), which
    keeps symmetric quantization symmetric (the TFLite weight convention).
    """

    bits: int
    signed: bool = True
    narrow_range: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or not (2 <= self.bits <= 16 or self.bits == 32):
            raise ValueError(
                f"QType bits={self.bits!r} is not allowed: use an integer 2..16 (32 for bias)"
            )
        if self.narrow_range and not self.signed:
            raise ValueError("QType narrow_range=True needs signed=True")

    @property
    def qmin(self) -> int:
        """Smallest representable integer."""
        if not self.signed:
            return 0
        return -(2 ** (self.bits - 1)) + (1 if self.narrow_range else 0)

    @property
    def qmax(self) -> int:
        """Largest representable integer."""
        return 2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1

    @property
    def container_bits(self) -> int:
        """Bits of the ONNX storage type: 4, 8, 16 or 32."""
        return 4 if self.bits <= 4 else 8 if self.bits <= 8 else 16 if self.bits <= 16 else 32

    @property
    def numpy_dtype(self) -> np.dtype:
        """numpy dtype that holds the integers (int4 values live unpacked in int8/uint8)."""
        b = max(8, self.container_bits)
        return np.dtype(f"{'int' if self.signed else 'uint'}{b}")

    @property
    def onnx_dtype(self) -> int:
        """ONNX TensorProto data type of the container (INT4, UINT8, INT16, ...)."""
        table = {
            (4, True): onnx.TensorProto.INT4,
            (4, False): onnx.TensorProto.UINT4,
            (8, True): onnx.TensorProto.INT8,
            (8, False): onnx.TensorProto.UINT8,
            (16, True): onnx.TensorProto.INT16,
            (16, False): onnx.TensorProto.UINT16,
            (32, True): onnx.TensorProto.INT32,
        }
        return table[(self.container_bits, self.signed)]

    @property
    def name(self) -> str:
        """Short name such as ``int8``, ``uint4`` or ``int8n`` (narrow)."""
        return f"{'int' if self.signed else 'uint'}{self.bits}{'n' if self.narrow_range else ''}"

    @classmethod
    def parse(cls, text: str) -> QType:
        """Parse ``int8``, ``uint8``, ``int4``, ``int16``, ``int8n`` (narrow range)."""
        t = text.strip().lower()
        narrow = t.endswith("n")
        t = t[:-1] if narrow else t
        for prefix, signed in (("uint", False), ("int", True)):
            if t.startswith(prefix) and t[len(prefix):].isdigit():
                return cls(int(t[len(prefix):]), signed, narrow)
        raise ValueError(f"qtype {text!r} is not allowed: use int<bits> or uint<bits>, bits 2..16")


@dataclass(frozen=True)
class PerTensor:
    """One scale and zero point for the whole tensor."""


@dataclass(frozen=True)
class PerChannel:
    """One scale and zero point per index of ``axis``."""

    axis: int = 0


@dataclass(frozen=True)
class PerGroup:
    """Blocked quantization: one scale per ``size`` consecutive elements along ``axis``."""

    axis: int
    size: int

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"PerGroup size={self.size} is not allowed: use a positive integer")


Granularity = PerTensor | PerChannel | PerGroup


@dataclass(frozen=True)
class QuantSpec:
    """How one tensor is quantized.

    ``symmetric`` forces the zero point to 0 for signed types (the midpoint for unsigned ones);
    ``observer`` names the range estimator used for activations (see ``edgequant.observers``)
    and ``observer_args`` holds its keyword arguments as sorted ``(name, value)`` pairs.
    """

    qtype: QType = field(default_factory=lambda: QType(8, True))
    granularity: Granularity = field(default_factory=PerTensor)
    symmetric: bool = False
    rounding: Rounding = "half_even"
    observer: str = "minmax"
    observer_args: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if self.rounding not in ("half_even", "half_away"):
            raise ValueError(
                f"QuantSpec rounding={self.rounding!r} is not allowed: use half_even or half_away"
            )
