"""edgequant: quantize neural networks for edge targets, and prove what ships.

Public API, by pipeline stage:

* recipes: :class:`Recipe`, :class:`Rule`, :func:`get_recipe`, :class:`QuantPlan`
* numeric core: :class:`QuantSpec`, :class:`QType`, granularities, :class:`QParams`
* PTQ: :func:`quantize` → :class:`QuantizedModel`
* export: :func:`export` (qdq / qop / tflite), :func:`export_tflite`, :func:`lower_to_qop`
* runtime: :class:`Interpreter` (bit-exact reference), :func:`verify`, :func:`open_runner`
"""

from edgequant.errors import EdgequantError
from edgequant.export import export
from edgequant.export.qop.lower import lower_to_qop
from edgequant.interp import Interpreter
from edgequant.ptq.quantizer import QuantizedModel, quantize
from edgequant.qparams import QParams
from edgequant.recipes.builtin import get_recipe
from edgequant.recipes.plan import QuantPlan
from edgequant.recipes.recipe import Recipe, Rule
from edgequant.runtime.runners import open_runner
from edgequant.runtime.verify import verify
from edgequant.spec import PerChannel, PerGroup, PerTensor, QType, QuantSpec


def export_tflite(*args, **kwargs):
    """:func:`edgequant.export.tflite.export_tflite` (imported on use: needs the tflite extra)."""
    from edgequant.export.tflite import export_tflite as _export_tflite

    return _export_tflite(*args, **kwargs)


__all__ = ["EdgequantError", "Interpreter", "PerChannel", "PerGroup", "PerTensor", "QParams",
           "QType", "QuantPlan", "QuantSpec", "QuantizedModel", "Recipe", "Rule", "export",
           "export_tflite", "get_recipe", "lower_to_qop", "open_runner", "quantize", "verify"]
