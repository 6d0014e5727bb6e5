"""Which AdaRound variant a recipe asks for, ``auto`` values decided."""

from __future__ import annotations

#: ``adaround_mode="auto"`` runs sequential AdaRound for weights with fewer bits than this:
#: on EfficientNet-Lite0 w4a8 it beat independent AdaRound (bench/ptq_recovery.py); 8-bit
#: weights keep the independent mode measured before (docs/adaround.md).
SEQUENTIAL_BELOW_BITS = 8


def adaround_mode(recipe) -> str:
    """``independent`` or ``sequential``: the recipe's ``adaround_mode`` option, ``auto``
    decided by the recipe's weight bits."""
    from edgequant.recipes.options import option

    value = option(recipe, "adaround_mode")
    if value != "auto":
        return value
    bits = recipe.weights.qtype.bits if recipe.weights is not None else 32
    return "sequential" if bits < SEQUENTIAL_BELOW_BITS else "independent"

