"""``GraphQAT``: train the exact float graph that ships, fake-quantized exactly where its plan says.

The graph is the prepared float ONNX model (BatchNorm folded, exporter forms normalised) that
``resolve(recipe)`` turned into a :class:`~edgequant.recipes.plan.QuantPlan` — the same plan
the PTQ path executes. The module runs that graph node by node with the torch ops of
:mod:`edgequant.torch.onnx_ops` and applies the plan's decisions by tensor name:

| plan decision (static)            | in training                                              |
|-----------------------------------|----------------------------------------------------------|
| activation ``quantize``           | :class:`ActivationQuantizer` on the producer's output    |
| activation ``fused``              | nothing (the Relu / Clip after it is quantized)          |
| activation ``share``              | nothing: MaxPool / Reshape / ... of a grid stay on it    |
| activation seam (``consumers``)   | a second quantizer only those consumers read             |
| weight ``quantize``               | :class:`WeightQuantizer` along the plan's channel axis   |
| constant ``quantize``             | per-call min/max quantization of the (trainable) constant|
| bias ``quantize``                 | int32 at ``s_in · s_w`` (float32 product), as insert_qdq |
| ``float`` / no decision           | float, exactly where the exported model is float         |

In eval mode the nodes the deployed model runs as integer kernels (Conv, Gemm, MatMul, Add,
Mul, Sigmoid, GlobalAveragePool) are recomputed from their input integers exactly as those kernels do
(:mod:`edgequant.torch.integer_sim`; ``kernels``: ``"onnxruntime"`` (default), ``"litert"``
(the ``.tflite`` export on LiteRT / XNNPACK) or ``None``: plain fake quantization), so the
eval forward equals the converted model bit for bit; training keeps the faster float path
(the two differ only where a float32 rounding error crosses a rounding boundary).

Every weight, bias and float constant operand of Conv / Gemm / MatMul / Add / Mul /
LayerNormalization is an ``nn.Parameter``; ``convert`` writes them back into the graph under
their own names, so the trained qparams and values meet in the one Q/DQ writer.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from edgequant.bias_fit import BIAS_LIMIT, accumulator_headroom, fit_bias
from edgequant.qparams import QParams
from edgequant.recipes.decisions import QuantPlan, TensorDecision
from edgequant.spec import PerChannel, PerTensor, QType
from edgequant.torch.fake_quant import fake_quantize
from edgequant.torch.integer_sim import IntegerSim
from edgequant.torch.onnx_ops import OPS
from edgequant.torch.quantizers import DEFAULT_MOMENTUM, ActivationQuantizer, WeightQuantizer

log = logging.getLogger(__name__)

#: int32 biases (docs/architecture.md).
BIAS_QTYPE = QType(32, True)

#: Ops whose float initializer operands are trained (weights, biases, affine constants).
TRAINABLE_OPERANDS = {"Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "MatMul": (0, 1),
                      "Add": (0, 1), "Mul": (0, 1), "LayerNormalization": (1, 2), "PRelu": (1,),
                      "GroupNormalization": (1, 2), "InstanceNormalization": (1, 2)}


def _attrs(node: onnx.NodeProto) -> dict:
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, onnx.TensorProto):
            v = torch.from_numpy(numpy_helper.to_array(v).copy())
        elif isinstance(v, bytes):
            v = v.decode()
        out[a.name] = v
    return out


class _Node:
    """One graph node, pre-parsed: label, op function, inputs, outputs, attributes."""

    def __init__(self, node: onnx.NodeProto) -> None:
        self.label = node.name or node.output[0]
        self.op_type = node.op_type
        self.fn = OPS[node.op_type]
        self.inputs = list(node.input)
        self.outputs = list(node.output)
        self.attrs = _attrs(node)


def _static(d: TensorDecision | None, role: str) -> bool:
    return d is not None and d.role == role and d.action == "quantize" and d.mode == "static"


class GraphQAT(nn.Module):
    """The prepared float graph as a trainable module with the plan's fake quantization.

    Called like the original module (positional tensors in the graph-input order); returns
    one tensor or a tuple (graph outputs in order).
    """

    def __init__(self, graph: onnx.ModelProto, plan: QuantPlan, learn_scales: bool = False,
                 momentum: float = DEFAULT_MOMENTUM, modules: dict[str, str] | None = None
                 ) -> None:
        super().__init__()
        self.graph = graph
        self.plan = plan
        self.recipe = plan.recipe
        self.recipe_name = plan.recipe.name
        #: node label → module path recorded by the exporter (for messages and ``skip``)
        self.node_modules = dict(modules or {})
        g = graph.graph
        inits = {t.name: t for t in g.initializer}
        self.input_names = [i.name for i in g.input if i.name not in inits]
        self.output_names = [o.name for o in g.output]
        self.nodes = [_Node(n) for n in g.node]
        trainable = {n.input[k] for n in g.node for k in TRAINABLE_OPERANDS.get(n.op_type, ())
                     if k < len(n.input) and n.input[k] in inits}
        self._param_index: dict[str, int] = {}
        self._const: dict[str, torch.Tensor] = {}
        params = []
        for name, t in inits.items():
            arr = numpy_helper.to_array(t).copy()
            value = torch.from_numpy(arr)
            if name in trainable and arr.dtype == np.float32 and arr.size > 1:
                self._param_index[name] = len(params)
                params.append(nn.Parameter(value))
            else:
                self._const[name] = value
        self.params = nn.ParameterList(params)
        self._key: dict[str, str] = {}  # plan key / weight name → ModuleDict key
        self.act_quant = nn.ModuleDict()
        self.weight_quant = nn.ModuleDict()
        self._seams: dict[tuple[str, str], str] = {}
        for key, d in plan.tensors.items():
            if _static(d, "activation"):
                self._key[key] = f"q{len(self._key)}"
                self.act_quant[self._key[key]] = ActivationQuantizer(d.spec, momentum,
                                                                     learn_scales)
                for c in d.consumers:
                    self._seams[(d.tensor, c)] = key
            elif (d.role in ("weight", "constant") and d.action == "quantize"
                  and d.mode in ("static", "weight_only") and d.tensor in inits):
                gran = d.spec.granularity
                if not isinstance(gran, PerChannel | PerTensor):
                    raise ValueError(
                        f"weight {d.tensor!r}: granularity {gran!r} is not allowed for QAT "
                        "(use PerChannel or PerTensor weights, e.g. w8a8 / w4a8)")
                shape = inits[d.tensor].dims
                channels = shape[gran.axis] if isinstance(gran, PerChannel) else 1
                self._key[key] = f"w{len(self._key)}"
                self.weight_quant[self._key[key]] = WeightQuantizer(
                    d.spec, channels, learn_scales and d.role == "weight")
        self._biases = {k: d for k, d in plan.tensors.items() if _static(d, "bias")}
        self._bias_of = {d.weight_of: d for d in self._biases.values()}  # weight → its bias
        self.bias_float: set[str] = set()  # biases left float (int32 overflow), as insert_qdq
        #: False: run the float graph (no fake quantization) — the float reference of the plan
        self.fake_quant = True
        #: runtime whose integer kernels the eval forward emulates: "onnxruntime", "litert", None
        self.kernels: str | None = "onnxruntime"
        #: float weights (by initializer name) whose ⌊w/s⌋ / ⌊w/s⌋ + 1 learned rounding chooses
        #: between by default: PTQ's recovered float weights when QAT starts from AdaRound (the
        #: parameters then hold AdaRound's grid points); empty otherwise (the weights themselves)
        self.rounding_reference: dict[str, np.ndarray] = {}

    # -- values -------------------------------------------------------------------------------
    def value(self, name: str) -> torch.Tensor:
        """The current float value of initializer ``name`` (trained parameter or constant)."""
        if name in self._param_index:
            return self.params[self._param_index[name]]
        return self._const[name]

    def initializer_names(self) -> list[str]:
        """Names of the trainable initializers (what ``convert`` writes back)."""
        return list(self._param_index)

    def quantizer(self, key: str) -> ActivationQuantizer | WeightQuantizer | None:
        """The fake-quant module of a plan key (activation, seam, weight or constant)."""
        k = self._key.get(key)
        if k is None:
            return None
        return self.act_quant[k] if k in self.act_quant else self.weight_quant[k]

    def _scale_of(self, key: str) -> torch.Tensor:
        """The float32 scale the activation decision ``key`` (following shares) uses."""
        d = self.plan.tensors[key]
        while d.action == "share":
            key, d = d.share_with, self.plan.tensors[d.share_with]
        return self.act_quant[self._key[key]].effective_scale()

    def _bias(self, name: str, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        d = self._biases[name]
        wq = self.quantizer(d.weight_of)
        s_in = self._scale_of(d.input_of)
        scale = (s_in * wq.effective_scale()).to(torch.float32)  # (C_out,) or () float32
        x_bits = self.plan.tensors[d.input_of].spec.qtype.bits
        fan_in = w.numel() // max(b.numel(), 1)
        limit = BIAS_LIMIT - accumulator_headroom(fan_in, x_bits, wq.spec.qtype.bits)
        with torch.no_grad():
            big = float(torch.max(torch.abs(b.double() / scale.double()))) > limit
        if big:  # insert_qdq keeps such a bias float: so does training
            self.bias_float.add(name)
            return b
        self.bias_float.discard(name)
        axis = 0 if scale.ndim else None
        return fake_quantize(b, scale, torch.zeros_like(scale), BIAS_QTYPE, axis)

    def _operand(self, t: str, node: _Node, env: dict, raw: dict, done: dict) -> torch.Tensor | None:
        if not t:
            return None
        seam = self._seams.get((t, node.label))
        if not self.fake_quant:
            return env[t] if t in env else self.value(t)
        if seam is not None:
            d = self.plan.tensors[seam]
            return self.act_quant[self._key[seam]](env[t] if d.from_dequantized else raw[t])
        if t in env:
            return env[t]
        if t in done:
            return done[t]
        v = self.value(t)
        if t in self._biases and node.inputs[1] in done:
            v = self._bias(t, v, self.value(node.inputs[1]))
        elif self._key.get(t, "").startswith("w"):
            fitted = self.fit_weight_qparams(t)
            v = self.weight_quant[self._key[t]](v, update=not fitted)
        done[t] = v
        return v

    @torch.no_grad()
    def fit_weight_qparams(self, weight: str) -> bool:
        """PTQ's rule for a weight whose int32 bias would overflow at ``s_in · s_w``: min/max
        qparams with the offending channels' scales raised just enough
        (:func:`edgequant.bias_fit.fit_bias`, as ``insert_qdq`` does for calibrated models).
        Loads them into the weight's quantizer; returns False when there is nothing to fit
        (no int32 bias). Learned (LSQ) scales are projected the same way: a channel whose
        trained bias no longer fits at its learned scale gets the raised scale as its new
        parameter value, so training runs on the scale ``convert`` will store (before, the
        conversion raised it alone and the deployed model drifted from the trained one)."""
        d = self._bias_of.get(weight)
        q = self.quantizer(weight)
        if d is None or q is None:
            return False
        learned = q.learn_scale and bool(q.initialized)
        w = self.value(weight).detach()
        if not learned:
            q._update(w)
        x = self.plan.tensors[d.input_of].spec.qtype.bits
        b = self.value(d.tensor).detach().numpy()
        fan_in = w.numel() // max(b.size, 1)
        limit = BIAS_LIMIT - accumulator_headroom(fan_in, x, q.spec.qtype.bits)
        s_in = self._scale_of(d.input_of).numpy()
        qp = q.qparams()
        if learned:  # the scale the forward divides by (LSQ clamps it positive)
            qp = replace(qp, scale=q.effective_scale().numpy().reshape(np.shape(qp.scale)))
        fit = fit_bias(b, s_in, qp, limit=limit)
        if fit.channels:
            if learned:
                q.scale.data.copy_(torch.from_numpy(np.asarray(fit.qparams.scale, np.float32))
                                   .reshape(q.scale.shape))
            else:
                q.load_qparams(fit.qparams)
        return True

    def forward(self, *args):
        """Run the graph on positional inputs with the plan's fake quantization."""
        if len(args) != len(self.input_names):
            raise TypeError(f"the QAT graph takes {len(self.input_names)} input(s) "
                            f"{self.input_names}, got {len(args)}")
        env: dict[str, torch.Tensor] = {}
        raw: dict[str, torch.Tensor] = {}
        for name, x in zip(self.input_names, args, strict=True):
            raw[name] = x
            env[name] = self._quantize(name, x)
        done: dict[str, torch.Tensor] = {}  # quantized initializers of this call
        sim = (IntegerSim(self, self.kernels) if self.kernels and self.fake_quant
               and not self.training else None)
        for node in self.nodes:
            ins = [self._operand(t, node, env, raw, done) for t in node.inputs]
            if sim is not None:
                ins = sim.deployed_operands(node, ins, raw)
            out = node.fn(ins, node.attrs) if sim is None else sim.run(node, ins)
            outs = out if isinstance(out, tuple) else (out,)
            for name, y in zip(node.outputs, outs, strict=False):
                raw[name] = y
                env[name] = self._quantize(name, y)
                if sim is not None:  # the deployed runtime's own rounding onto the grid
                    env[name] = sim.quantized(name, y, env[name])
        result = tuple(env[o] for o in self.output_names)
        return result[0] if len(result) == 1 else result

    def _quantize(self, name: str, x: torch.Tensor) -> torch.Tensor:
        k = self._key.get(name)
        if k is None or k not in self.act_quant or not x.is_floating_point() \
                or not self.fake_quant:
            return x
        return self.act_quant[k](x)

    # -- qparams ------------------------------------------------------------------------------
    def activation_qparams(self) -> dict[str, QParams]:
        """Trained qparams of every quantized activation (and seam), by plan key."""
        return {key: self.act_quant[k].qparams() for key, k in self._key.items()
                if k in self.act_quant}

    def weight_qparams(self) -> dict[str, QParams]:
        """Qparams of every quantized weight and constant as the last forward used them."""
        return {key: self.weight_quant[k].qparams() for key, k in self._key.items()
                if k in self.weight_quant}

    @torch.no_grad()
    def load_activation_qparams(self, qparams: dict[str, QParams]) -> None:
        """Start every activation quantizer named in ``qparams`` from those (e.g. PTQ's)."""
        for key, qp in qparams.items():
            k = self._key.get(key)
            if k is not None and k in self.act_quant:
                self.act_quant[k].load_qparams(qp)

    def extra_repr(self) -> str:
        return (f"recipe={self.recipe_name}, nodes={len(self.nodes)}, "
                f"activations={len(self.act_quant)}, weights={len(self.weight_quant)}")
