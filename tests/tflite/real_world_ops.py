"""Small ONNX models, one op each (after a 1×1 Conv, so the op meets an NHWC-stored tensor as
in real models), for the TFLite export of the ops real models use."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

C, H, W = 4, 6, 6


def op_model(op: str, extra_inputs: dict[str, np.ndarray] | None = None, n_act: int = 1,
             opset: int = 17, relu_first: bool = False, **attrs) -> onnx.ModelProto:
    """x (1, C, H, W) → Conv 1×1 (→ Relu) → ``op`` (its first ``n_act`` inputs come from the
    Conv) → Conv 1×1 → y. The Convs make the quantizer put Q/DQ on both sides of ``op`` (so
    it exports with integer kernels); the Relu keeps a BatchNormalization from being folded."""
    rng = np.random.default_rng(1)
    inits = {"cw": (rng.standard_normal((C, C, 1, 1)) * 0.5).astype(np.float32),
             "cb": (rng.standard_normal(C) * 0.1).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "cw", "cb"], ["c0"], name="conv")]
    if relu_first:
        nodes = [helper.make_node("Conv", ["x", "cw", "cb"], ["pre"], name="conv"),
                 helper.make_node("Relu", ["pre"], ["c0"], name="relu")]
    acts = ["c0"]
    for k in range(1, n_act):  # more activation inputs: scaled copies of the conv output
        inits[f"m{k}"] = np.array(0.5 + k, np.float32)
        nodes.append(helper.make_node("Mul", ["c0", f"m{k}"], [f"c{k}"], name=f"mul{k}"))
        acts.append(f"c{k}")
    extra = dict(extra_inputs or {})
    inits.update({k: v for k, v in extra.items() if k})
    nodes.append(helper.make_node(op, acts + list(extra), ["z"], name=f"the_{op.lower()}",
                                  **attrs))
    inits["ow"] = (rng.standard_normal((C, C, 1, 1)) * 0.5).astype(np.float32)
    nodes.append(helper.make_node("Conv", ["z", "ow"], ["y"], name="conv_out"))
    g = helper.make_graph(
        nodes, op, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, H, W])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    m = onnx.shape_inference.infer_shapes(m)
    return m


def _bn():
    rng = np.random.default_rng(2)
    return {"s": rng.uniform(0.5, 1.5, C).astype(np.float32),
            "b": rng.normal(0, 0.2, C).astype(np.float32),
            "mu": rng.normal(0, 0.2, C).astype(np.float32),
            "var": rng.uniform(0.5, 2, C).astype(np.float32)}


def _scales(k: float) -> dict[str, np.ndarray]:
    return {"roi": np.array([], np.float32), "scales": np.array([1, 1, k, k], np.float32)}


def _pads(p: int, value: float | None = None) -> dict[str, np.ndarray]:
    d = {"pads": np.array([0, 0, p, p, 0, 0, p, p], np.int64)}
    if value is not None:
        d["value"] = np.array(value, np.float32)
    return d


#: case name → (ONNX model, TFLite op the export must contain).
CASES = {
    "div_const": (lambda: op_model("Div", {"six": np.array(6.0, np.float32)}), {"DIV", "MUL"}),
    "hard_sigmoid": (lambda: op_model("HardSigmoid", alpha=0.2, beta=0.5), {"RELU_0_TO_1"}),
    "hard_swish": (lambda: op_model("HardSwish"), {"HARD_SWISH"}),
    "batchnorm": (lambda: op_model("BatchNormalization", _bn(), relu_first=True,
                                             epsilon=1e-5), {"MUL"}),
    "sum3": (lambda: op_model("Sum", n_act=3), {"ADD_N", "ADD"}),
    "sum2": (lambda: op_model("Sum", n_act=2), {"ADD"}),
    "lrn": (lambda: op_model("LRN", size=3, alpha=1e-2, beta=0.75, bias=1.0),
            {"LOCAL_RESPONSE_NORMALIZATION"}),
    "resize_nearest": (lambda: op_model("Resize", _scales(2), mode="nearest"),
                       {"RESIZE_NEAREST_NEIGHBOR"}),
    "resize_nearest_asym": (lambda: op_model("Resize", _scales(2), mode="nearest",
                                             coordinate_transformation_mode="asymmetric",
                                             nearest_mode="floor"), {"RESIZE_NEAREST_NEIGHBOR"}),
    "resize_linear": (lambda: op_model("Resize", _scales(2), mode="linear"), {"RESIZE_BILINEAR"}),
    "resize_linear_align": (lambda: op_model("Resize", _scales(2), mode="linear",
                                             coordinate_transformation_mode="align_corners"),
                            {"RESIZE_BILINEAR"}),
    "pad_value": (lambda: op_model("Pad", _pads(1, 0.25), mode="constant"), {"PADV2"}),
    "pad_reflect": (lambda: op_model("Pad", _pads(2), mode="reflect"), {"MIRROR_PAD"}),
    "pad_edge": (lambda: op_model("Pad", _pads(1), mode="edge"), {"MIRROR_PAD"}),
}
