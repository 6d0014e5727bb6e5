"""Built-in recipes, decoded from their names.

| name            | mode        | weights                         | activations                    |
|-----------------|-------------|---------------------------------|--------------------------------|
| ``fp32``        | none        | float32 (BN and constants folded) | float32                      |
| ``fp16``        | fp16        | float16 storage, float32 compute | float32                       |
| ``w8_dynamic``  | dynamic     | int8 per-channel symmetric      | int8 per-row, at run time      |
| ``w8a8``        | static      | int8 per-channel symmetric      | uint8 affine, calibrated       |
| ``w8a16``       | static      | int8 per-channel symmetric      | int16 symmetric (zero point 0) |
| ``w4a8``        | static      | int4 per-channel symmetric      | uint8 affine, calibrated       |
| ``w4a8_mixed``  | static      | int4, the most sensitive layers | uint8 affine, calibrated       |
|                 |             | int8 (≤ 25 % of the extra bytes) |                               |
| ``w4a16_g128``  | weight_only | int4 symmetric, groups of 128   | float32                        |

The grammar generalises: ``w{4|8}a{8|16}`` (static), ``w{4|8}_dynamic``, ``w{4|8}a16_g{N}``.
Weights use narrow range ([-127, 127] for int8) so the same integers serve TFLite.
Activations default to uint8 because x86 onnxruntime's fast int8 GEMM is uint8 × int8.
``w4a8`` stores int4 weights in the QDQ model (onnxruntime has no int4 convolution kernel and
runs those convs as DequantizeLinear → float Conv; the ``qop`` format writes them as
QLinearConv on the same integers widened to int8); the .tflite exporter writes them as int8
values in [-7, 7]. Its default
``bias_correction="auto"`` corrects the rounding shift (docs/ptq_recovery.md).
``w4a8_mixed`` is ``w4a8`` with ``w4_keep_int8="sensitivity"``: the layers whose int4 weights
hurt the output most per byte, measured on the calibration data, keep int8 weights until
``w4_int8_budget`` (0.25 of the bytes between all-int4 and all-int8) is spent
(docs/recovery_w4.md).
"""

from __future__ import annotations

import re
from dataclasses import replace

from edgequant.errors import RecipeError
from edgequant.recipes.recipe import Recipe
from edgequant.spec import PerChannel, PerGroup, PerTensor, QType, QuantSpec

BUILTIN_NAMES = ("fp32", "fp16", "w8_dynamic", "w8a8", "w8a16", "w4a8", "w4a8_mixed", "w4a16_g128")


def weight_spec(bits: int, group: int | None = None) -> QuantSpec:
    """Symmetric narrow-range signed weights, per output channel or in groups."""
    gran = PerGroup(axis=1, size=group) if group else PerChannel(axis=0)
    return QuantSpec(QType(bits, True, narrow_range=True), gran, symmetric=True)


def activation_spec(bits: int) -> QuantSpec:
    """uint8 affine activations for 8 bits; int16 symmetric (zero point 0) for 16 bits."""
    if bits == 16:
        return QuantSpec(QType(16, True), PerTensor(), symmetric=True)
    if bits == 8:
        return QuantSpec(QType(8, False), PerTensor(), symmetric=False)
    return QuantSpec(QType(bits, False), PerTensor(), symmetric=False)


def get_recipe(name: str) -> Recipe:
    """Decode a recipe name (see the module table); unknown names list what is allowed."""
    if name == "fp32":
        return Recipe("fp32", "none", description="float32; BN and constants folded")
    if name == "fp16":
        return Recipe("fp16", "fp16", description="float16 weights, float32 compute")
    m = re.fullmatch(r"w(\d+)_dynamic", name)
    if m:
        bits = _bits(m.group(1), name, (4, 8))
        return Recipe(name, "dynamic", weights=weight_spec(bits),
                      activations=QuantSpec(QType(8, True), PerTensor(), symmetric=True),
                      description=f"int{bits} weights, int8 per-row activations at run time")
    m = re.fullmatch(r"w(\d+)a16_g(\d+)", name)
    if m:
        bits = _bits(m.group(1), name, (4, 8))
        group = int(m.group(2))
        if group < 16 or group & (group - 1):
            raise RecipeError(f"recipe {name!r}: group size {group} must be a power of two >= 16")
        return Recipe(name, "weight_only", weights=weight_spec(bits, group),
                      description=f"int{bits} weight-only, groups of {group}, float compute")
    if name == "w4a8_mixed":
        return replace(get_recipe("w4a8").with_options(w4_keep_int8="sensitivity"), name=name,
                       description="int4 weights, the most output-sensitive layers int8 "
                                   "(measured), calibrated 8-bit activations")
    m = re.fullmatch(r"w(\d+)a(\d+)", name)
    if m:
        wbits = _bits(m.group(1), name, (2, 3, 4, 5, 6, 7, 8))
        abits = _bits(m.group(2), name, (8, 16))
        return Recipe(name, "static", weights=weight_spec(wbits),
                      activations=activation_spec(abits),
                      description=f"int{wbits} weights, calibrated {abits}-bit activations")
    raise RecipeError(
        f"recipe {name!r} is unknown; built-ins: {', '.join(BUILTIN_NAMES)} "
        "(also w{4|8}a{8|16}, w{4|8}_dynamic, w{4|8}a16_g{N}, or a recipe .json file)"
    )


def _bits(text: str, name: str, allowed: tuple[int, ...]) -> int:
    bits = int(text)
    if bits not in allowed:
        raise RecipeError(f"recipe {name!r}: {bits} bits is not allowed here; use {allowed}")
    return bits
