"""The layers a mixed-bit-width choice picks from: statically quantized Conv / Gemm / MatMul
nodes with constant weights below 8 bits, and what their weights cost in bytes."""

from __future__ import annotations

import onnx

from edgequant.graph.info import GraphInfo
from edgequant.recipes.decisions import QuantPlan


def low_bit_layers(model: onnx.ModelProto, plan: QuantPlan) -> list[onnx.NodeProto]:
    """Conv / Gemm / MatMul nodes the plan quantizes statically with constant weights of fewer
    than 8 bits (graph order): the candidates for 8-bit weights."""
    info = GraphInfo.build(model)
    low = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        d = plan.tensors.get(node.input[1])
        if (d is None or d.role != "weight" or d.action != "quantize" or d.mode != "static"
                or d.spec is None or d.spec.qtype.bits >= 8 or not info.is_constant(node.input[1])):
            continue
        low.append(node)
    return low


def weight_bytes(params: int, bits: int) -> int:
    """Stored bytes of ``params`` integer weights of ``bits`` bits (int4 packed two per byte)."""
    return -(-params * bits // 8)
