"""Cut a QDQ / QOperator graph at its float→integer boundaries, so that verification can
feed both engines the *same* integers where engine-specific float rounding enters them."""

from __future__ import annotations

import onnx


def float_boundaries(model: onnx.ModelProto) -> list[str]:
    """Outputs of QuantizeLinear nodes that quantize a float op's result (not a graph input,
    constant or DequantizeLinear): where engine-specific float rounding enters integers."""
    producer = {o: n for n in model.graph.node for o in n.output}
    return [n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear"
            and n.input[0] in producer
            and producer[n.input[0]].op_type not in ("DequantizeLinear", "Constant")]


def cut_at(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """Copy of ``model`` in which each tensor of ``names`` is a graph input, not a Q output."""
    inits = {t.name: t.data_type for t in model.graph.initializer}
    m = onnx.ModelProto()
    m.CopyFrom(model)
    cut = [n for n in m.graph.node if n.op_type == "QuantizeLinear" and n.output[0] in names]
    for q in cut:
        dtype = inits.get(q.input[2], 0) if len(q.input) > 2 and q.input[2] else 0
        dtype = dtype or next((a.i for a in q.attribute if a.name == "output_dtype"), 0)
        m.graph.input.append(onnx.helper.make_tensor_value_info(
            q.output[0], dtype or onnx.TensorProto.UINT8, None))
        m.graph.node.remove(q)
    return m


__all__ = ["cut_at", "float_boundaries"]
