"""Read-only facts about an ONNX graph: producers, consumers, constants and value types."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper


@dataclass
class GraphInfo:
    """Index of an ``onnx.ModelProto`` graph (rebuild it after editing the graph)."""

    model: onnx.ModelProto
    producer: dict[str, onnx.NodeProto] = field(default_factory=dict)
    consumers: dict[str, list[onnx.NodeProto]] = field(default_factory=dict)
    constants: dict[str, onnx.TensorProto] = field(default_factory=dict)
    elem_types: dict[str, int] = field(default_factory=dict)
    graph_inputs: list[str] = field(default_factory=list)
    graph_outputs: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, model: onnx.ModelProto) -> GraphInfo:
        """Index ``model`` (runs ONNX shape inference to learn intermediate dtypes)."""
        info = cls(model)
        g = model.graph
        for t in g.initializer:
            info.constants[t.name] = t
            info.elem_types[t.name] = t.data_type
        for n in g.node:
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
                for a in n.attribute:
                    if a.name == "value":
                        info.constants[n.output[0]] = a.t
            for o in n.output:
                info.producer[o] = n
            for i in n.input:
                if i:
                    info.consumers.setdefault(i, []).append(n)
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
            vis = list(inferred.graph.value_info) + list(inferred.graph.output)
        except Exception:  # shape inference is best effort; dtypes may stay unknown
            vis = list(g.value_info) + list(g.output)
        for vi in [*g.input, *vis]:
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
                info.elem_types.setdefault(vi.name, vi.type.tensor_type.elem_type)
        inits = {t.name for t in g.initializer}
        info.graph_inputs = [i.name for i in g.input if i.name not in inits]
        info.graph_outputs = [o.name for o in g.output]
        return info

    def is_float(self, name: str) -> bool:
        """True when ``name`` is known to hold float32 values."""
        return self.elem_types.get(name) == onnx.TensorProto.FLOAT

    def is_constant(self, name: str) -> bool:
        """True for initializers and Constant-node outputs."""
        return name in self.constants

    def const_array(self, name: str) -> np.ndarray:
        """The value of a constant tensor."""
        return numpy_helper.to_array(self.constants[name])

    def is_activation(self, name: str) -> bool:
        """A float tensor computed at run time (not a constant)."""
        return bool(name) and not self.is_constant(name) and self.is_float(name)


def attr(node: onnx.NodeProto, name: str, default=None):
    """An attribute's Python value, or ``default``."""
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def node_label(node: onnx.NodeProto) -> str:
    """``name (OpType)`` for error messages and reports."""
    return f"{node.name or node.output[0]} ({node.op_type})"
