"""Small float ONNX models built with onnx.helper (no torch): fast fixtures for quantizer tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 21


def _init(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(arr.astype(np.float32), name)


def cnn_bn(seed: int = 0, channels: int = 8, classes: int = 10, batch: int | None = None
           ) -> onnx.ModelProto:
    """input (N,1,12,12) → Conv 3×3 → BatchNormalization → Relu → MaxPool 2 → Flatten → Gemm."""
    rng = np.random.default_rng(seed)
    c = channels
    inits = [
        _init("conv.w", rng.normal(0, 0.5, (c, 1, 3, 3))),
        _init("conv.b", rng.normal(0, 0.1, (c,))),
        _init("bn.gamma", rng.uniform(0.5, 1.5, (c,))),
        _init("bn.beta", rng.normal(0, 0.1, (c,))),
        _init("bn.mean", rng.normal(0, 0.1, (c,))),
        _init("bn.var", rng.uniform(0.5, 2.0, (c,))),
        _init("fc.w", rng.normal(0, 0.1, (classes, c * 5 * 5))),
        _init("fc.b", rng.normal(0, 0.1, (classes,))),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv.w", "conv.b"], ["c"], name="conv"),
        helper.make_node("BatchNormalization", ["c", "bn.gamma", "bn.beta", "bn.mean", "bn.var"],
                         ["bn"], name="bn"),
        helper.make_node("Relu", ["bn"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["logits"], name="fc", transB=1),
    ]
    n = batch if batch else "N"
    graph = helper.make_graph(
        nodes, "cnn_bn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [n, 1, 12, 12])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [n, classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)
    return model


def mlp_softmax(seed: int = 0, k: int = 32, n: int = 16) -> onnx.ModelProto:
    """input (N, T, K) → MatMul (K, N) → Add → Softmax → MatMul (N, N): a transformer-ish block."""
    rng = np.random.default_rng(seed)
    inits = [_init("w1", rng.normal(0, 0.2, (k, n))), _init("b1", rng.normal(0, 0.1, (n,))),
             _init("w2", rng.normal(0, 0.2, (n, n)))]
    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["h"], name="mm1"),
        helper.make_node("Add", ["h", "b1"], ["hb"], name="add1"),
        helper.make_node("Softmax", ["hb"], ["s"], name="softmax", axis=-1),
        helper.make_node("Erf", ["s"], ["e"], name="erf"),
        helper.make_node("MatMul", ["e", "w2"], ["out"], name="mm2"),
    ]
    graph = helper.make_graph(
        nodes, "mlp_softmax",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", "T", k])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", "T", n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    return model


def images(n: int, seed: int = 1) -> np.ndarray:
    """Random (n, 1, 12, 12) float32 inputs in [0, 1)."""
    return np.random.default_rng(seed).random((n, 1, 12, 12), dtype=np.float32)


def mixed_cnn(seed: int = 0, classes: int = 10) -> onnx.ModelProto:
    """A five-conv CNN + two Gemms for per-layer mixed precision (K = 128 at ``fc1``)::

        input (N,3,16,16) → conv1 3→16 → Relu → conv2 16→16 → Relu → MaxPool 2
        → conv3 16→32 → Relu → conv4 32→32 → Relu → MaxPool 2 → conv5 32→32 → Relu
        → MaxPool 2 → Flatten (N,128) → fc1 MatMul 128→64 → fc2 Gemm 64→classes

    ``fc1`` has no bias and no activation: onnxruntime fuses MatMul + Add (+ Relu) into
    (Fused)Gemm before its DequantizeLinear(int4) → MatMul → MatMulNBits fusion would see
    the MatMul, and edgequant's weight-only pass then falls back to Cast/Mul decompression.
    """
    rng = np.random.default_rng(seed)
    chans = [(3, 16), (16, 16), (16, 32), (32, 32), (32, 32)]
    inits, nodes, x = [], [], "input"
    for i, (cin, cout) in enumerate(chans, start=1):
        inits += [_init(f"conv{i}.w", rng.normal(0, (2 / (9 * cin)) ** 0.5, (cout, cin, 3, 3))),
                  _init(f"conv{i}.b", rng.normal(0, 0.05, (cout,)))]
        nodes += [helper.make_node("Conv", [x, f"conv{i}.w", f"conv{i}.b"], [f"c{i}"],
                                   name=f"conv{i}", pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        x = f"r{i}"
        if i in (2, 4, 5):
            nodes.append(helper.make_node("MaxPool", [x], [f"p{i}"], name=f"pool{i}",
                                          kernel_shape=[2, 2], strides=[2, 2]))
            x = f"p{i}"
    inits += [_init("fc1.w", rng.normal(0, (2 / 128) ** 0.5, (128, 64))),
              _init("fc2.w", rng.normal(0, (1 / 64) ** 0.5, (classes, 64))),
              _init("fc2.b", rng.normal(0, 0.05, (classes,)))]
    nodes += [helper.make_node("Flatten", [x], ["f"], name="flatten"),
              helper.make_node("MatMul", ["f", "fc1.w"], ["h"], name="fc1"),
              helper.make_node("Gemm", ["h", "fc2.w", "fc2.b"], ["logits"], name="fc2",
                               transB=1)]
    graph = helper.make_graph(
        nodes, "mixed_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)
    return model


def rgb_images(n: int, seed: int = 1) -> np.ndarray:
    """Smooth random (n, 3, 16, 16) float32 inputs (low-pass noise, like natural images)."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0, 1, (n, 3, 4, 4)).astype(np.float32)
    return np.repeat(np.repeat(coarse, 4, axis=2), 4, axis=3) + \
        rng.normal(0, 0.1, (n, 3, 16, 16)).astype(np.float32)


def two_branch(seed: int = 0) -> onnx.ModelProto:
    """input (N,3,8,8) feeds ``conva`` and ``convb``; ``add`` sums their outputs::

        input → conva 3→8 → ca ─┐
        input → convb 3→8 → cb ─┴→ add → y

    With ``convb`` in int16 and the rest int8 both kinds of precision seam appear: the
    float graph input read in two precisions, and an int16 tensor read by an int8 Add.
    """
    rng = np.random.default_rng(seed)
    inits = [_init("conva.w", rng.normal(0, 0.3, (8, 3, 3, 3))),
             _init("conva.b", rng.normal(0, 0.1, (8,))),
             _init("convb.w", rng.normal(0, 0.3, (8, 3, 3, 3))),
             _init("convb.b", rng.normal(0, 0.1, (8,)))]
    nodes = [helper.make_node("Conv", ["input", "conva.w", "conva.b"], ["ca"], name="conva",
                              pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["input", "convb.w", "convb.b"], ["cb"], name="convb",
                              pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["ca", "cb"], ["y"], name="add")]
    graph = helper.make_graph(
        nodes, "two_branch",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)
    return model
