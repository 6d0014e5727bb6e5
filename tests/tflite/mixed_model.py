"""A hand-built mixed-precision QDQ ONNX model (``onnx.helper`` only, no quantizer recipes).

x ─Q(uint8)→ conv1+Relu (int8 kernels, uint8 qparams) ─Q(int16)→ conv2 (16x8)
  ─Q(int8)→ conv3 (int8) → conv4 (float, float16 weights via Cast) → Tanh (float)
  → GlobalAveragePool → Flatten → f
f ─Q(int8)→ Gemm (int8)        → Q(int8) → y_int8
f → Gemm (int8 weight, float)  → y_hybrid      (hybrid kernel)
f → MatMul (int4 blocked W)    → y_int4        (weight-only int4, blocks of BLOCK along K)

Activation qparams come from one float run in onnxruntime over the calibration data.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

SHAPE = (1, 3, 12, 12)
C1, C2, C3, C4, N_OUT = 8, 8, 8, 32, 10
BLOCK = 16
OPSET = 21


def _ort(model: onnx.ModelProto, feeds: dict, outputs: list[str] | None = None) -> list:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(outputs, feeds)


class _Builder:
    """Accumulates nodes and initializers; ``qdq`` adds a Q → DQ pair when qparams are known."""

    def __init__(self, qparams: dict | None) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.qparams = qparams  # tensor → (dtype, scale, zero point); None: float model

    def init(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, ins: list[str], out: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, ins, [out], name=f"{out}_{op}", **attrs))
        return out

    def qdq(self, x: str, key: str) -> str:
        """``x`` through Q → DQ with the qparams recorded under ``key`` (float model: ``x``)."""
        if self.qparams is None:
            return x
        dtype, scale, zp = self.qparams[key]
        s = self.init(f"{key}_scale", np.float32(scale))
        z = self.init(f"{key}_zp", np.array(zp, dtype))
        self.node("QuantizeLinear", [x, s, z], f"{key}_q")
        return self.node("DequantizeLinear", [f"{key}_q", s, z], f"{key}_dq")

    def int_weight(self, name: str, w: np.ndarray, axis: int) -> tuple[str, np.ndarray]:
        """int8 symmetric narrow per-channel weight through DQ (float model: the fake-quantized
        float weight, so both models share the same effective weights)."""
        other = tuple(i for i in range(w.ndim) if i != axis)
        scale = (np.abs(w).max(axis=other) / 127).astype(np.float32)  # (C,)
        shp = [-1 if i == axis else 1 for i in range(w.ndim)]
        q = np.clip(np.rint(w / scale.reshape(shp)), -127, 127).astype(np.int8)
        if self.qparams is None:
            return self.init(name, (q * scale.reshape(shp)).astype(np.float32)), scale
        self.init(f"{name}_q", q)
        self.init(f"{name}_s", scale)
        self.init(f"{name}_z", np.zeros(scale.shape, np.int8))
        return self.node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], name,
                         axis=axis), scale

    def int32_bias(self, name: str, b: np.ndarray, scale: np.ndarray) -> str:
        q = np.rint(b / scale).astype(np.int32)
        if self.qparams is None:
            return self.init(name, (q * scale).astype(np.float32))
        self.init(f"{name}_q", q)
        self.init(f"{name}_s", scale.astype(np.float32))
        return self.node("DequantizeLinear", [f"{name}_q", f"{name}_s"], name, axis=0)

    def int4_blocked(self, name: str, w: np.ndarray) -> str:
        """(K, N) weight, int4 symmetric, blocks of BLOCK along K (axis 0)."""
        k, n = w.shape
        wb = w.reshape(k // BLOCK, BLOCK, n)
        scale = (np.abs(wb).max(axis=1) / 7).astype(np.float16).astype(np.float32)  # (K/B, N)
        q = np.clip(np.rint(wb / scale[:, None, :]), -8, 7).astype(np.int8).reshape(k, n)
        if self.qparams is None:
            return self.init(name, (q * np.repeat(scale, BLOCK, axis=0)).astype(np.float32))
        self.inits.append(helper.make_tensor(f"{name}_q", TensorProto.INT4, [k, n],
                                             q.ravel().tolist()))
        self.init(f"{name}_s", scale)
        return self.node("DequantizeLinear", [f"{name}_q", f"{name}_s"], name, axis=0,
                         block_size=BLOCK)

    def half(self, name: str, w: np.ndarray) -> str:
        """float16 storage + Cast (float model: the float16-rounded float32 value)."""
        if self.qparams is None:
            return self.init(name, w.astype(np.float16).astype(np.float32))
        self.init(f"{name}_fp16", w.astype(np.float16))
        return self.node("Cast", [f"{name}_fp16"], name, to=TensorProto.FLOAT)


def _graph(b: _Builder, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """Emit the network into ``b``; returns (outputs, intermediates to calibrate)."""
    x = b.qdq("x", "x")
    w1, s1 = b.int_weight("w1", rng.standard_normal((C1, 3, 3, 3)).astype(np.float32) * 0.4, 0)
    x_scale = b.qparams["x"][1] if b.qparams else 1.0
    b1 = b.int32_bias("b1", rng.standard_normal(C1).astype(np.float32) * 0.1,
                      (np.float32(x_scale) * s1).astype(np.float32))
    b.node("Conv", [x, w1, b1], "c1", pads=[1, 1, 1, 1])
    a1 = b.qdq(b.node("Relu", ["c1"], "a1"), "a1")
    a1 = b.qdq(a1, "a1_16")  # seam: uint8 → int16
    w2, _ = b.int_weight("w2", rng.standard_normal((C2, C1, 3, 3)).astype(np.float32) * 0.2, 0)
    b2 = b.init("b2", rng.standard_normal(C2).astype(np.float32) * 0.1)  # float bias (16x8)
    a2 = b.qdq(b.node("Conv", [a1, w2, b2], "a2", pads=[1, 1, 1, 1]), "a2")
    a2 = b.qdq(a2, "a2_8")  # seam: int16 → int8
    w3, s3 = b.int_weight("w3", rng.standard_normal((C3, C2, 3, 3)).astype(np.float32) * 0.2, 0)
    a2_scale = b.qparams["a2_8"][1] if b.qparams else 1.0
    b3 = b.int32_bias("b3", rng.standard_normal(C3).astype(np.float32) * 0.1,
                      (np.float32(a2_scale) * s3).astype(np.float32))
    a3 = b.qdq(b.node("Conv", [a2, w3, b3], "a3", strides=[2, 2], pads=[1, 1, 1, 1]), "a3")
    w4 = b.half("w4", rng.standard_normal((C4, C3, 3, 3)).astype(np.float32) * 0.2)
    b4 = b.half("b4", rng.standard_normal(C4).astype(np.float32) * 0.1)
    b.node("Conv", [a3, w4, b4], "a4", pads=[1, 1, 1, 1])
    b.node("Tanh", ["a4"], "a5")
    b.node("GlobalAveragePool", ["a5"], "a6")
    f = b.node("Flatten", ["a6"], "f")
    fq = b.qdq(f, "f")
    wg, sg = b.int_weight("wg", rng.standard_normal((N_OUT, C4)).astype(np.float32) * 0.3, 0)
    f_scale = b.qparams["f"][1] if b.qparams else 1.0
    bg = b.int32_bias("bg", rng.standard_normal(N_OUT).astype(np.float32) * 0.1,
                      (np.float32(f_scale) * sg).astype(np.float32))
    b.node("Gemm", [fq, wg, bg], "y1", transB=1)
    b.qdq("y1", "y_int8")
    wh, _ = b.int_weight("wh", rng.standard_normal((N_OUT, C4)).astype(np.float32) * 0.3, 0)
    bh = b.init("bh", rng.standard_normal(N_OUT).astype(np.float32) * 0.1)
    b.node("Gemm", [f, wh, bh], "y_hybrid", transB=1)
    w5 = b.int4_blocked("w5", rng.standard_normal((C4, N_OUT)).astype(np.float32) * 0.3)
    b.node("MatMul", [f, w5], "y_int4")
    y1 = "y_int8_dq" if b.qparams else "y1"
    return [y1, "y_hybrid", "y_int4"], ["x", "a1", "a2", "a3", "f", "y1"]


def _model(b: _Builder, outputs: list[str]) -> onnx.ModelProto:
    graph = helper.make_graph(
        b.nodes, "mixed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", *SHAPE[1:]])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    return model


def _affine(lo: float, hi: float, dtype) -> tuple:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = np.float32((hi - lo) / 255)
    qmin = 0 if dtype == np.uint8 else -128
    return dtype, scale, int(np.clip(qmin - np.rint(lo / scale), qmin, qmin + 255))


def build_mixed(x: np.ndarray, seed: int = 0) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """(float model, mixed QDQ model) sharing weights; activation ranges from ``x``."""
    fb = _Builder(None)
    outs, probes = _graph(fb, np.random.default_rng(seed))
    float_model = _model(fb, outs)
    probe_model = _model(fb, [*outs, *[p for p in probes if p not in outs]])
    names = [o.name for o in probe_model.graph.output]
    vals = dict(zip(names, _ort(probe_model, {"x": x}), strict=True))
    r = {k: (float(v.min()), float(v.max())) for k, v in vals.items()}
    a2_amax = max(abs(r["a2"][0]), abs(r["a2"][1]))
    a1_amax = max(abs(r["a1"][0]), abs(r["a1"][1]))
    qparams = {
        "x": _affine(*r["x"], np.uint8),
        "a1": _affine(*r["a1"], np.uint8),
        "a1_16": (np.int16, np.float32(a1_amax / 32767), 0),
        "a2": (np.int16, np.float32(a2_amax / 32767), 0),
        "a2_8": _affine(*r["a2"], np.int8),
        "a3": _affine(*r["a3"], np.int8),
        "f": _affine(*r["f"], np.int8),
        "y_int8": _affine(*r["y1"], np.int8),
    }
    qb = _Builder(qparams)
    outs, _ = _graph(qb, np.random.default_rng(seed))
    return float_model, _model(qb, outs)
