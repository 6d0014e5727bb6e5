"""Recipes: rules as data, built-in recipes and plan resolution."""

from edgequant.recipes.builtin import BUILTIN_NAMES, get_recipe
from edgequant.recipes.plan import QuantPlan, resolve
from edgequant.recipes.recipe import Recipe, Rule

__all__ = ["BUILTIN_NAMES", "QuantPlan", "Recipe", "Rule", "get_recipe", "resolve"]
