"""When a share op (Resize, Pad) runs on integers exactly in onnxruntime's QDQ optimizer.

onnxruntime 1.31 (CPU, uint8 and int8) drops ``DQ → Resize → Q`` to an integer Resize only
for ``mode="nearest"``: a linear / cubic Resize stays ``DQ → Resize → Q`` on floats, so
quantizing it would add error and no speed. A Pad shares its input's qparams when every
padded value is an input value (reflect / edge) or the constant 0, which is the zero point
of every grid; any other fill value would need its own rounding.
"""

from __future__ import annotations

import onnx

from edgequant.graph.info import GraphInfo, attr


def share_ok(node: onnx.NodeProto, info: GraphInfo) -> str:
    """'' when ``node`` (any static op) may be quantized on these grounds, else the reason."""
    if node.op_type == "Resize":
        mode = attr(node, "mode", "nearest")
        if isinstance(mode, bytes):
            mode = mode.decode()
        if mode != "nearest":
            return (f"Resize mode {mode!r}: onnxruntime keeps it on floats (its QDQ Resize "
                    "fusion covers mode 'nearest' only)")
        if any(i and not info.is_constant(i) for i in node.input[1:]):
            return "Resize scales / sizes are computed at run time"
    if node.op_type == "Pad":
        mode = attr(node, "mode", "constant")
        if isinstance(mode, bytes):
            mode = mode.decode()
        if any(i and not info.is_constant(i) for i in node.input[1:]):
            return "Pad pads / value / axes are computed at run time"
        if mode == "constant" and len(node.input) > 2 and node.input[2]:
            value = info.const_array(node.input[2])
            if value.size and float(value.reshape(-1)[0]) != 0.0:
                return (f"Pad fill value {float(value.reshape(-1)[0])} is not 0 (only 0 is the "
                        "zero point of every grid)")
    return ""
