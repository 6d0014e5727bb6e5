"""When an op has an onnxruntime integer kernel: share ops (Resize, Pad) under static
recipes, recurrent layers under dynamic ones.

onnxruntime 1.31 (CPU, uint8 and int8) drops ``DQ → Resize → Q`` to an integer Resize only
for ``mode="nearest"``: a linear / cubic Resize stays ``DQ → Resize → Q`` on floats, so
quantizing it would add error and no speed. A Pad shares its input's qparams when every
padded value is an input value (reflect / edge) or the constant 0, which is the zero point
of every grid; any other fill value would need its own rounding.

Dynamic recipes: onnxruntime has ``com.microsoft.DynamicQuantizeLSTM`` (int8 weights, the
activations quantized at run time per GEMM) and no quantized GRU or RNN kernel.
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


#: Recurrent ops a dynamic recipe decides on (quantized, or float with the reason).
RECURRENT_OPS = ("LSTM", "GRU", "RNN")
#: LSTM attributes DynamicQuantizeLSTM takes (onnxruntime drops ``layout``: only 0).
_LSTM_ATTRS = ("hidden_size", "direction", "activations", "activation_alpha", "activation_beta",
               "clip", "input_forget", "layout")


def recurrent_ok(node: onnx.NodeProto, info: GraphInfo) -> str:
    """'' when a dynamic recipe can quantize this recurrent node, else the reason."""
    if node.op_type != "LSTM":
        return (f"no dynamic int8 {node.op_type} kernel in onnxruntime (com.microsoft has "
                "DynamicQuantizeLSTM only)")
    if len(node.input) < 3 or not all(info.is_constant(i) for i in node.input[1:3]):
        return "LSTM W / R are computed at run time (no constant weights to quantize)"
    if any(info.const_array(i).ndim != 3 for i in node.input[1:3]):
        return "LSTM W / R are not 3-D"
    if attr(node, "layout", 0) != 0:
        return "LSTM layout=1 (batch first): DynamicQuantizeLSTM takes layout 0 only"
    if attr(node, "hidden_size") is None:
        return "LSTM without a hidden_size attribute"
    unknown = [a.name for a in node.attribute if a.name not in _LSTM_ATTRS]
    if unknown:
        return f"LSTM attributes {unknown} are not taken by DynamicQuantizeLSTM"
    return ""
