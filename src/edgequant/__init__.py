"""edgequant: quantize neural networks for edge targets, and prove what ships."""

from edgequant.errors import EdgequantError
from edgequant.quantizer import QuantizedModel, quantize
from edgequant.recipes.builtin import get_recipe
from edgequant.recipes.recipe import Recipe, Rule
from edgequant.spec import PerChannel, PerGroup, PerTensor, QType, QuantSpec

__all__ = ["EdgequantError", "PerChannel", "PerGroup", "PerTensor", "QType", "QuantSpec",
           "QuantizedModel", "Recipe", "Rule", "get_recipe", "quantize"]
