"""Bit-exact integer reference interpreter for ONNX models (float, QDQ and QOperator)."""

from edgequant.interp.interpreter import Interpreter, topological_order
from edgequant.interp.registry import OPS, NodeContext, register

__all__ = ["OPS", "Interpreter", "NodeContext", "register", "topological_order"]
