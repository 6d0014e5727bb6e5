"""The QDQ graph contract in one place: op lists, metadata keys and the tensor-naming rule.

Every stage after Q/DQ insertion (lowering, the exporters, the interpreter, ``inspect``,
``verify``) reads a tensor's precision from the Q/DQ nodes around it; what they share about
*which* ops behave how, and what the model's metadata keys are called, lives here.
"""

from __future__ import annotations

#: Ops that carry a weight (input 1) quantized per output channel.
WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")
#: Ops with an integer kernel (onnxruntime QLinear*/QDQ fusion, TFLite int8) in static mode.
STATIC_OPS = (*WEIGHTED_OPS, "Add", "Mul", "Concat", "MaxPool", "AveragePool",
              "GlobalAveragePool", "Relu", "Clip", "Sigmoid", "LeakyRelu", "Softmax",
              "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Resize", "Pad")
#: Ops whose every float input, constant operands included, is quantized with the op's
#: activation spec (a constant is stored as an integer behind DequantizeLinear).
MULTI_INPUT_OPS = ("Add", "Mul", "Concat")
#: Ops that only select or move values, whatever their attributes.
SELECT_OPS = ("MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze")
#: Ops whose integer output carries its input's qparams, so they run on integers exactly:
#: SELECT_OPS, nearest Resize (onnxruntime drops its Q/DQ) and Pad whose fill value is 0 (the
#: zero point) or reflect / edge (the planner keeps other Resize / Pad float).
SHARE_OPS = (*SELECT_OPS, "Resize", "Pad")
#: SELECT_OPS plus ops that are the identity on values (run on the integer tensor as is).
PASS_THROUGH_OPS = (*SELECT_OPS, "Identity", "Dropout")
#: Producers whose output range absorbs a following Relu / Clip (ONNX and TFLite alike).
FUSABLE_PRODUCERS = ("Conv", "Gemm", "MatMul", "Add")
#: Activations that fuse into a producer's range (an integer clamp after requantization).
FUSED_ACTIVATIONS = ("Relu", "Clip")

#: Why common ops stay float under a static recipe: onnxruntime (checked on 1.31, CPU, uint8 and
#: int8) leaves ``DQ → op → Q`` around them and runs the op on floats, so Q/DQ would only add
#: error. (Sum, Div by a constant and a lone BatchNormalization are rewritten to Add / Mul by
#: :mod:`edgequant.graph.passes.integer_forms` first.)
NO_INTEGER_KERNEL = "no integer kernel in onnxruntime (its QDQ optimizer runs it on floats)"
FLOAT_REASONS = {op: NO_INTEGER_KERNEL for op in (
    "HardSigmoid", "HardSwish", "LRN", "Div", "Sum")}

#: Model metadata keys (``metadata_props``).
META_RECIPE = "edgequant.recipe"                  # informative only: never read to decide arithmetic
META_FORMAT = "edgequant.format"                  # "qdq" | "qop"
META_IO = "edgequant.io"                          # JSON {name: {"dtype", "scale", "zero_point"}}
META_REQUANTIZATION = "edgequant.requantization"  # "float" | "fixedpoint"


def tensor_stem(name: str) -> str:
    """The stem edgequant derives new tensor names from (``conv/1:0`` → ``conv_1_0``)."""
    return name.replace("/", "_").replace(":", "_")


def requant_stem(tensor: str, consumer: str) -> str:
    """The stem of ``tensor`` re-quantized for ``consumer`` at a precision seam (an int16
    layer reading an int8 tensor): ``<tensor>_for_<consumer>``."""
    return tensor_stem(f"{tensor}_for_{consumer}")


#: Node modes a plan can mix, one per node (``recipes.Rule.mode``): Q/DQ around integer
#: kernels, run-time activation scales, integer weights with float compute, float16 storage.
NODE_MODES = ("static", "dynamic", "weight_only", "fp16")


__all__ = ["FLOAT_REASONS", "FUSABLE_PRODUCERS", "FUSED_ACTIVATIONS", "META_FORMAT", "META_IO", "META_RECIPE",
           "META_REQUANTIZATION", "MULTI_INPUT_OPS", "NODE_MODES", "NO_INTEGER_KERNEL", "PASS_THROUGH_OPS",
           "SELECT_OPS", "SHARE_OPS", "STATIC_OPS", "WEIGHTED_OPS", "requant_stem", "tensor_stem"]
