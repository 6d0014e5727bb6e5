"""The deployed integer kernels, emulated bit for bit inside :class:`GraphQAT`'s eval forward.

Fake quantization rounds each activation of the float graph onto its grid, but the deployed
model does not compute the float graph: onnxruntime fuses ``DQ → Conv → (Clip) → Q`` into
``QLinearConv`` (exact int32 accumulator, requantized by a float32 multiplier), residual
``Add`` into ``QLinearAdd`` (float32 FMAs), ``GlobalAveragePool`` into an integer sum, and
``Gemm`` into ``QGemm``. A float32 convolution of the dequantized values lands within a few
ULPs of the exact value, and once in ~10⁵ activations that moves a value across a rounding
boundary. On a deep network of BN-folded depthwise convs (EfficientNet-Lite0: per-channel
weights up to ~50 LSB of the next layer per input LSB), each such flip is amplified layer by
layer: fake quant and onnxruntime disagreed on 4 % of top-1 predictions and by up to 4 LSB of
the logits, although every scale, zero point, weight and bias was identical.

:class:`IntegerSim` therefore recomputes, in eval mode, every node the deployed model runs as
an integer kernel, from the integers its fake-quantized inputs encode, with the reference
interpreter's kernels (:mod:`edgequant.interp`, themselves pinned to onnxruntime), and hands
the dequantized result on in place of the float value (straight-through: gradients, when
they are taken, follow the float path). The values are then on the output grid, so the
fused Relu / Clip and the output's fake quantization that follow leave them unchanged.

| node                         | deployed kernel (onnxruntime CPU)     | emulated with                |
|------------------------------|---------------------------------------|------------------------------|
| Conv (+ fused Relu / Clip)   | QLinearConv                           | float64 torch conv of ints + |
|                              |                                       | :func:`interp.requant.requantize` |
| Gemm                         | QGemm                                 | ``interp`` ``QGemm``         |
| Add (+ fused Relu / Clip)    | QLinearAdd                            | ``interp`` ``QLinearAdd``    |
| GlobalAveragePool            | QLinearGlobalAveragePool              | ``interp`` kernel            |
| Mul (two 8-bit activations)  | QLinearMul                            | ``interp`` ``QLinearMul``    |
| Sigmoid                      | QLinearSigmoid (MLAS logistic LUT)    | ``interp`` ``QLinearSigmoid``|
| MatMul (8-bit operands)      | QLinearMatMul                         | ``interp`` ``QLinearMatMul`` |
|                              |                                       | (:mod:`.integer_sim_matmul`) |

``kernels="litert"`` emulates LiteRT's default CPU path (XNNPACK) on the ``.tflite`` export
instead, with the TFLite reference executor's kernels (:mod:`edgequant.interp.tflite`, pinned
to LiteRT): the same fp32 requantization for Conv / FullyConnected, XNNPACK's fixed-point ADD,
its fp32-requantized MUL, LOGISTIC onto its fixed 1/256 grid followed by the exporter's
QUANTIZE to the ONNX grid (two roundings), and GlobalAveragePool as the exporter writes it
(AVERAGE_POOL_2D on the input grid, rounding half away, then a QUANTIZE to the output grid),
a MatMul + bias Add as one FULLY_CONNECTED, a BATCH_MATMUL's right-hand side at zero point 0,
and float ops reading float-produced tensors unrounded (:meth:`IntegerSim.deployed_operands`),
XNNPACK's float GELU, FULLY_CONNECTED, LayerNorm, SUM, L2 norm and SOFTMAX value for value
(:mod:`.integer_sim_float`, :mod:`.integer_sim_litert_norm`, :mod:`.integer_sim_litert_softmax`;
AVX-512 kernels) and its float → int8 QUANTIZE's rounding, ``round(x · fl(1/s))``
(:meth:`IntegerSim.quantized`). For ``"onnxruntime"``, its float LayerNorm, GELU,
constant-weight MatMul (MLAS SGEMM) and Softmax are emulated value for value
(:mod:`.integer_sim_ort_float`). Other nodes and 16-bit activations keep the float path: the
runtimes run those as float kernels too, in their own float32 order — the one difference left
(a value within float32 rounding of a rounding boundary lands one step apart; deep post-LN
transformers amplify it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edgequant.interp.ops.qlinear import QGemm
from edgequant.interp.ops.qlinear_ms import (
    QLinearAdd,
    QLinearGlobalAveragePool,
    QLinearMul,
    QLinearSigmoid,
)
from edgequant.interp.registry import NodeContext
from edgequant.interp.requant import real_multiplier, requantize
from edgequant.interp.tflite.activations import lut_activation
from edgequant.interp.tflite.kernels import add_sub_xnnpack, mul, pool, requantize_tensor
from edgequant.spec import QType
from edgequant.torch.integer_sim_float import FloatKernels
from edgequant.torch.integer_sim_litert_norm import xnnpack_quantize
from edgequant.torch.integer_sim_litert_softmax import SoftmaxKernel
from edgequant.torch.integer_sim_matmul import MatMulKernels
from edgequant.torch.integer_sim_ort_float import OrtFloatKernels
from edgequant.torch.onnx_ops import Conv

#: Ops emulated as the integer kernel the deployed model runs.
INTEGER_OPS = ("Conv", "Gemm", "MatMul", "Add", "Mul", "Sigmoid", "GlobalAveragePool")
_FUSED = ("Relu", "Clip")
_INT32 = QType(32, True)
#: ``GraphQAT.kernels`` values: the runtime whose integer kernels the eval forward emulates.
KERNELS = ("onnxruntime", "litert")
#: float32 represents every integer below 2^24 exactly.
FLOAT32_EXACT = 1 << 24


@dataclass(frozen=True)
class Grid:
    """Per-tensor qparams of an activation as float32 scale, integer zero point, qtype."""

    scale: np.float32
    zero_point: int
    qtype: QType

    def integers(self, x: torch.Tensor) -> np.ndarray:
        """The integers a fake-quantized (on-grid) ``x`` encodes, as int64."""
        v = torch.round(x.detach() / float(self.scale)).double() + self.zero_point
        return v.clamp(self.qtype.qmin, self.qtype.qmax).numpy().astype(np.int64)

    def values(self, q: np.ndarray) -> torch.Tensor:
        """Dequantize integers: ``(q − zero_point) · scale`` in float32."""
        diff = (np.asarray(q).astype(np.int32) - self.zero_point).astype(np.float32)
        return torch.from_numpy(diff * self.scale)  # float32

    def container(self, q: np.ndarray) -> np.ndarray:
        """``q`` in the qtype's numpy container (uint8 / int8 / int16 / ...)."""
        return q.astype(self.qtype.numpy_dtype)


class IntegerSim(MatMulKernels, FloatKernels, SoftmaxKernel, OrtFloatKernels):
    """Emulates the deployed integer kernels for the nodes of one :class:`GraphQAT`."""

    def __init__(self, qat, kernels: str = "onnxruntime") -> None:
        if kernels not in KERNELS:
            raise ValueError(f"QAT kernels={kernels!r} is not allowed: use one of {KERNELS} "
                             "or None (plain fake quantization)")
        self.qat = qat
        self.kernels = kernels
        self.requantization = "float"  # onnxruntime and XNNPACK alike: fp32 multiplier
        consumers: dict[str, list] = {}
        for node in qat.nodes:
            for t in node.inputs:
                consumers.setdefault(t, []).append(node)
        self._consumers = consumers
        self._producer = {t: node for node in qat.nodes for t in node.outputs}
        #: MatMul output → its integer operands, for LiteRT's FULLY_CONNECTED with folded bias
        self._pending: dict[str, tuple] = {}
        #: float MatMul output → (input, weight), for LiteRT's float FULLY_CONNECTED with bias
        self._pending_float: dict[str, tuple] = {}

    # -- qparams ---------------------------------------------------------------------------------
    def _grid_of_key(self, key: str) -> Grid | None:
        qat = self.qat
        d = qat.plan.tensors.get(key)
        while d is not None and d.action == "share":
            key, d = d.share_with, qat.plan.tensors.get(d.share_with)
        k = qat._key.get(key)
        if d is None or k is None or k not in qat.act_quant:
            return None
        q = qat.act_quant[k]
        return Grid(np.float32(q.effective_scale().item()), int(q.zero_point.item()), q.spec.qtype)

    def input_grid(self, tensor: str, label: str) -> Grid | None:
        """The grid ``tensor`` is read on by node ``label`` (its seam, or its own / shared)."""
        seam = self.qat._seams.get((tensor, label))
        if seam is not None:
            return self._grid_of_key(seam)
        d = self.qat.plan.tensors.get(tensor)
        if d is None or d.consumers or d.action not in ("quantize", "share"):
            return None
        return self._grid_of_key(tensor)

    def output_grid(self, tensor: str) -> Grid | None:
        """The grid the deployed kernel writes ``tensor`` on (a fused activation's, if fused)."""
        d = self.qat.plan.tensors.get(tensor)
        if d is None:
            return None
        if d.action == "fused":
            users = self._consumers.get(tensor, [])
            if len(users) != 1 or users[0].op_type not in _FUSED:
                return None
            return self.output_grid(users[0].outputs[0])
        if d.action not in ("quantize", "share") or d.consumers:
            return None
        return self._grid_of_key(tensor)

    def _weight(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(integers, float32 scales, zero points) of a quantized weight as the forward uses it."""
        q = self.qat.quantizer(name)
        if q is None or not self.qat._key[name].startswith("w"):
            return None
        w = self.qat.value(name).detach()
        s = q.effective_scale()  # (C,) or () float32
        z = q.zero_point.detach()
        shape = [-1 if i == q.axis else 1 for i in range(w.ndim)] if q.axis is not None else []
        sb, zb = (s.reshape(shape), z.reshape(shape)) if shape else (s, z)
        v = torch.clamp(torch.round(w / sb) + zb, q.spec.qtype.qmin, q.spec.qtype.qmax)
        return v.numpy().astype(np.int64), s.numpy(), z.numpy().astype(np.int64)

    def _bias(self, name: str, scale: np.ndarray) -> np.ndarray | None:
        """int32 bias ``round(b / (s_in · s_w))`` as :mod:`insert_qdq` writes it."""
        if name in self.qat.bias_float:
            return None
        b = self.qat.value(name).detach()  # (C,) float32
        v = torch.round(torch.div(b, torch.from_numpy(np.asarray(scale, np.float32))))
        return v.clamp(_INT32.qmin, _INT32.qmax).numpy().astype(np.int64)

    # -- kernels ---------------------------------------------------------------------------------
    def exact(self, node, ins: list) -> torch.Tensor | None:
        """The deployed kernel's (dequantized) output of ``node`` on the fake-quantized inputs
        ``ins``, or None when the deployed model does not run ``node`` as an integer kernel."""
        if node.op_type not in INTEGER_OPS or not all(
                t is None or t.is_floating_point() for t in ins):
            return None
        y_grid = self.output_grid(node.outputs[0])
        if y_grid is None or y_grid.qtype.bits != 8:  # 16-bit: onnxruntime runs float kernels
            return None
        return getattr(self, f"_{node.op_type}")(node, ins, y_grid)

    def run(self, node, ins: list) -> torch.Tensor:
        """``node``'s output: the deployed kernel's value where there is one (gradients pass
        straight through to the float op), else the float op's."""
        exact = self.exact(node, ins)
        if exact is None:
            exact = self.float_kernel(node, ins)
        if exact is None:
            exact = self.ort_float_kernel(node, ins)
        if exact is None:
            return node.fn(ins, node.attrs)
        if not torch.is_grad_enabled():
            return exact
        out = node.fn(ins, node.attrs)
        return out + (exact.reshape(out.shape) - out).detach()

    def quantized(self, name: str, raw: torch.Tensor, fq: torch.Tensor) -> torch.Tensor:
        """Tensor ``name`` on its 8-bit grid as the deployed model rounds it: for ``litert``
        XNNPACK's QUANTIZE of the float value ``raw`` (``round(x · fl(1/scale))``,
        :func:`~edgequant.torch.integer_sim_litert_norm.xnnpack_quantize`), else the fake
        quantization ``fq`` (``round(x / scale)``, onnxruntime's QuantizeLinear). Values
        already on the grid (an integer kernel's output) come out unchanged."""
        if self.kernels != "litert" or not raw.is_floating_point() or name not in self.qat._key:
            return fq
        g = self._grid_of_key(name)
        if g is None or g.qtype.bits != 8:
            return fq
        exact = g.values(xnnpack_quantize(raw, g.scale, g.zero_point, g.qtype.qmin,
                                          g.qtype.qmax).numpy().astype(np.int64)).reshape(fq.shape)
        return exact if not torch.is_grad_enabled() else fq + (exact - fq).detach()

    def deployed_operands(self, node, ins: list, raw: dict) -> list:
        """The operands ``node`` reads in the deployed model. On LiteRT a node that runs in
        float (its output not quantized) reads a float-produced tensor unrounded: the
        ``.tflite`` exporter gives float consumers the producer's float tensor and quantizes
        only for the integer consumers, where the QDQ graph (and onnxruntime) dequantizes
        the quantized value for every consumer."""
        if self.kernels != "litert" or self.output_grid(node.outputs[0]) is not None:
            return ins
        return [raw[t] if t in raw and (t, node.label) not in self.qat._seams
                and self._float_produced(t) and isinstance(x, torch.Tensor)
                and x.is_floating_point() else x
                for t, x in zip(node.inputs, ins, strict=True)]

    def _float_produced(self, tensor: str) -> bool:
        """True when ``tensor``'s producer reads no quantized operand (a float op, e.g. a
        LayerNorm): the ``.tflite`` holds its float output. An integer kernel's output (an
        int8 / int16 tensor) reaches float consumers through a DEQUANTIZE, rounded."""
        p = self._producer.get(tensor)
        return p is not None and all(self.input_grid(t, p.label) is None for t in p.inputs if t)

    def _ctx(self, node, op_type: str) -> NodeContext:
        return NodeContext(node.label, op_type, attrs=dict(node.attrs),
                           requantization=self.requantization)

    def _Conv(self, node, ins, y: Grid) -> torch.Tensor | None:
        x = self.input_grid(node.inputs[0], node.label)
        w = self._weight(node.inputs[1]) if len(node.inputs) > 1 else None
        if x is None or w is None or x.qtype.bits != 8:
            return None
        wq, ws, wz = w
        wc = wq - wz.reshape(-1, *([1] * (wq.ndim - 1)))  # (M, C/g, kh, kw) centered
        xc = x.integers(ins[0]) - x.zero_point  # (N, C, H, W) centered
        # float32 sums are exact while every partial sum stays below 2^24; else float64
        bound = int(np.abs(xc).max(initial=0)) * int(np.abs(wc).reshape(len(wc), -1).sum(1).max())
        dtype = torch.float32 if bound < FLOAT32_EXACT else torch.float64
        acc = Conv([torch.from_numpy(xc).to(dtype), torch.from_numpy(wc).to(dtype)],
                   node.attrs)  # (N, M, OH, OW) integers, exact
        acc = acc.numpy().astype(np.int64)
        if len(node.inputs) > 2 and node.inputs[2]:
            bias = self._bias(node.inputs[2], np.float32(x.scale) * ws)
            if bias is None:
                return None
            acc = acc + bias.reshape(1, -1, *([1] * (acc.ndim - 2)))
        mult = real_multiplier(x.scale, ws.reshape(-1), y.scale, self.requantization)
        mult = mult.reshape(1, -1, *([1] * (acc.ndim - 2))) if mult.size > 1 else mult.reshape(())
        q = requantize(acc.astype(np.int32), mult, np.asarray(y.zero_point),
                       y.qtype.numpy_dtype, self.requantization)
        return y.values(q)

    def _Gemm(self, node, ins, y: Grid) -> torch.Tensor | None:
        a = self.input_grid(node.inputs[0], node.label)
        w = self._weight(node.inputs[1])
        if a is None or w is None or a.qtype.bits != 8:
            return None
        wq, ws, wz = w
        bias = None
        if len(node.inputs) > 2 and node.inputs[2]:
            bias = self._bias(node.inputs[2], np.float32(a.scale) * ws)
            if bias is None:
                return None
            bias = bias.astype(np.int32)
        q = QGemm(self._ctx(node, "QGemm"), a.container(a.integers(ins[0])), a.scale,
                  np.asarray(a.zero_point), wq.astype(np.int32), ws, wz.astype(np.int32),
                  bias, y.scale, np.asarray(y.zero_point, y.qtype.numpy_dtype))
        return y.values(q)

    def _Add(self, node, ins, y: Grid) -> torch.Tensor | None:
        if any(t in self._pending for t in node.inputs):
            return self._fc_with_bias(node, y)
        return self._binary(node, ins, y, "QLinearAdd")

    def _Mul(self, node, ins, y: Grid) -> torch.Tensor | None:
        return self._binary(node, ins, y, "QLinearMul")  # a constant operand: float path

    def _binary(self, node, ins, y: Grid, op: str) -> torch.Tensor | None:
        """Residual Add / SE Mul of two quantized activations: onnxruntime's QLinearAdd /
        QLinearMul, or XNNPACK's ADD / MUL (fp32 requantization) for ``litert``."""
        a = self.input_grid(node.inputs[0], node.label)
        b = self.input_grid(node.inputs[1], node.label)
        if a is None or b is None or len({a.qtype, b.qtype, y.qtype}) > 1:
            return None
        if self.kernels == "litert":
            qa, qb = _int8(a, a.integers(ins[0])), _int8(b, b.integers(ins[1]))  # int8 (N, ...)
            q = (add_sub_xnnpack(qa, qb, _tfl(a), _tfl(b), _tfl(y), "NONE", 1) if op == "QLinearAdd"
                 else mul(qa, qb, _tfl(a), _tfl(b), _tfl(y), "NONE", np.int8, "xnnpack"))
            return y.values(q.astype(np.int64) + y.zero_point - _int8_zp(y))
        kernel = QLinearAdd if op == "QLinearAdd" else QLinearMul
        q = kernel(self._ctx(node, op), a.container(a.integers(ins[0])), a.scale, a.zero_point,
                   b.container(b.integers(ins[1])), b.scale, b.zero_point, y.scale, y.zero_point)
        return y.values(q)

    def _Sigmoid(self, node, ins, y: Grid) -> torch.Tensor | None:
        x = self.input_grid(node.inputs[0], node.label)
        if x is None or x.qtype != y.qtype:
            return None
        if self.kernels == "litert":  # LOGISTIC onto its fixed grid, then QUANTIZE to y's
            fixed = _logistic_grid()
            q = lut_activation(_int8(x, x.integers(ins[0])), _tfl(x), fixed, "logistic")
            if (fixed[0][0], fixed[1][0]) != (y.scale, _int8_zp(y)):
                q = requantize_tensor(q, fixed, _tfl(y), np.int8, "xnnpack")
            return y.values(q.astype(np.int64) + y.zero_point - _int8_zp(y))
        q = QLinearSigmoid(self._ctx(node, "QLinearSigmoid"), x.container(x.integers(ins[0])),
                           x.scale, x.zero_point, y.scale, y.zero_point)
        return y.values(q)

    def _GlobalAveragePool(self, node, ins, y: Grid) -> torch.Tensor | None:
        x = self.input_grid(node.inputs[0], node.label)
        if x is None or x.qtype != y.qtype:
            return None
        if self.kernels == "litert":  # AVERAGE_POOL_2D on the input grid, QUANTIZE to y's
            xi = np.moveaxis(_int8(x, x.integers(ins[0])), 1, -1)  # (N, H, W, C) int8
            avg = pool(xi, "avg", xi.shape[1:3], (1, 1), "VALID", "NONE", _tfl(x))
            if (x.scale, x.zero_point) != (y.scale, y.zero_point):
                avg = requantize_tensor(avg, _tfl(x), _tfl(y), np.int8, "xnnpack")
            return y.values(np.moveaxis(avg, -1, 1).astype(np.int64) + y.zero_point - _int8_zp(y))
        q = QLinearGlobalAveragePool(self._ctx(node, "QLinearGlobalAveragePool"),
                                     x.container(x.integers(ins[0])), x.scale, x.zero_point,
                                     y.scale, y.zero_point)
        return y.values(q)


def _logistic_grid() -> tuple[np.ndarray, np.ndarray]:
    """The fixed int8 grid LiteRT's LOGISTIC writes (the exporter's ``FIXED_OUTPUT_QPARAMS``,
    imported late: the TFLite exporter loads the flatbuffer schema)."""
    from edgequant.export.tflite.ops_elementwise import FIXED_OUTPUT_QPARAMS, OP

    scale, zero_point = FIXED_OUTPUT_QPARAMS[OP.LOGISTIC][np.dtype(np.int8)]
    return np.array([scale], np.float32), np.array([zero_point], np.int64)


def _int8_zp(g: Grid) -> int:
    """The zero point on LiteRT's int8 activations (uint8 grids shift by −128)."""
    return g.zero_point - 128 if g.qtype.bits == 8 and not g.qtype.signed else g.zero_point


def _int8(g: Grid, q: np.ndarray) -> np.ndarray:
    """Integers of ``g`` as LiteRT's int8 tensor holds them."""
    return (q - g.zero_point + _int8_zp(g)).astype(np.int8)


def _tfl(g: Grid) -> tuple[np.ndarray, np.ndarray]:
    """``(scales, zero_points)`` as :mod:`edgequant.interp.tflite.kernels` takes them."""
    return np.array([g.scale], np.float32), np.array([_int8_zp(g)], np.int64)


__all__ = ["INTEGER_OPS", "KERNELS", "Grid", "IntegerSim"]
