"""float32 arithmetic as XNNPACK's x86-64 kernels do it, for the ``kernels="litert"`` emulation.

Two primitives the emulated kernels (:mod:`.integer_sim_float`, :mod:`.integer_sim_litert_norm`,
:mod:`.integer_sim_litert_softmax`) share: a fused multiply-add rounded once, and XNNPACK's
flush-to-zero / denormals-are-zero mode (it sets both in MXCSR when it initializes).
"""

from __future__ import annotations

import torch


def fma32(a: torch.Tensor, b: torch.Tensor | float, c: torch.Tensor | float) -> torch.Tensor:
    """float32 ``a·b + c`` with one rounding, computed as one float64 multiply-add rounded to
    float32: the float32 product is exact in float64, so this differs from a true FMA only when
    the float64 sum falls exactly on a float32 tie (~2⁻²⁹ of the time)."""
    b64 = b.double() if isinstance(b, torch.Tensor) else float(b)
    c64 = c.double() if isinstance(c, torch.Tensor) else float(c)
    return (a.double() * b64 + c64).float()


def ftz(x: torch.Tensor) -> torch.Tensor:
    """Flush subnormal float32 values to (signed) zero: XNNPACK runs with flush-to-zero and
    denormals-are-zero set, so every float32 result below 2⁻¹²⁶ in magnitude becomes 0."""
    return torch.where(x.abs() < torch.finfo(torch.float32).tiny, x * 0.0, x)


__all__ = ["fma32", "ftz"]
