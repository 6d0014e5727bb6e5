"""The TFLite reference executor: numpy kernels reproducing LiteRT's integer arithmetic.

:class:`ReferenceInterpreter` runs a written ``.tflite`` file; its integer kernels reproduce
LiteRT's builtin kernels (``kernels="builtin"``) or XNNPACK's (``kernels="xnnpack"``).
"""

from edgequant.interp.tflite.reference import ReferenceInterpreter

__all__ = ["ReferenceInterpreter"]
