"""Execute the static part of a QuantPlan: QuantizeLinear/DequantizeLinear pairs on
activations, integer weights and int32 biases read through DequantizeLinear
(docs/architecture.md).

Only decisions with ``mode == "static"`` are touched, so the plan may quantize any subset
of nodes (rules, QAT's trained layers) and mix in weight-only / dynamic / fp16 nodes that
other passes handle. Each step below reads the plan and returns :class:`Edits`; one
rewrite applies them all:

- :func:`activation_edits` — Q/DQ after each activation's producer (integer model I/O too);
- :func:`seam_edits` — a second Q/DQ for consumers that read a tensor in another precision;
- :func:`constant_edits` — integer weights / constants behind DequantizeLinear;
- :func:`bias_edits` — int32 biases at ``input_scale · weight_scale``;
- :func:`~edgequant.graph.passes.float_weights.keep_float_weights` — float-weight nodes stay
  float in onnxruntime.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from edgequant.bias_fit import BIAS_LIMIT, accumulator_headroom, fit_bias
from edgequant.graph.contract import META_IO, requant_stem, tensor_stem
from edgequant.graph.info import GraphInfo
from edgequant.graph.passes.float_weights import keep_float_weights
from edgequant.graph.passes.qdq_nodes import dequantized_constant, qdq_pair, qparam_initializers
from edgequant.qparams import QParams, bias_qparams, qparams_for
from edgequant.recipes.decisions import QuantPlan, TensorDecision
from edgequant.spec import PerChannel, PerTensor


@dataclass
class Edits:
    """Graph edits collected from the plan before one rewrite applies them."""

    inits: list[onnx.TensorProto] = field(default_factory=list)
    head: list[onnx.NodeProto] = field(default_factory=list)   # read graph inputs / constants
    after: dict[str, list[onnx.NodeProto]] = field(default_factory=dict)  # after a producer
    rename_in: dict[str, str] = field(default_factory=dict)    # every consumer's input
    rename_for: dict[tuple[str, str], str] = field(default_factory=dict)  # (node, input) only
    rename_out: dict[str, str] = field(default_factory=dict)   # producer outputs (graph outs)
    dropped: set[str] = field(default_factory=set)             # initializers replaced
    io_types: dict[str, dict] = field(default_factory=dict)    # integer model I/O metadata
    used: dict[str, QParams] = field(default_factory=dict)     # qparams per plan key
    notes: list[str] = field(default_factory=list)


def _static(plan: QuantPlan, roles: tuple[str, ...], actions: tuple[str, ...] = ("quantize",)
            ) -> list[tuple[str, TensorDecision]]:
    return [(k, d) for k, d in plan.tensors.items()
            if d.mode == "static" and d.role in roles and d.action in actions]


def activation_edits(plan: QuantPlan, info: GraphInfo, act_qparams: dict[str, QParams],
                     io: str, e: Edits) -> None:
    """Q → DQ after each quantized / shared activation; integer graph inputs get a DQ,
    integer graph outputs a Q, and float graph outputs keep their name on the DQ output."""

    def qp_of(name: str) -> QParams:
        d = plan.tensors[name]
        while d.action == "share":
            d = plan.tensors[d.share_with]
        return act_qparams[d.tensor]

    for name, d in _static(plan, ("activation",), ("quantize", "share")):
        if d.consumers:
            continue  # seams: seam_edits
        qp = qp_of(name)
        e.used[name] = qp
        stem = tensor_stem(name)
        is_in, is_out = name in info.graph_inputs, name in info.graph_outputs
        if io != "float" and (is_in or is_out):
            e.io_types[name] = {"dtype": qp.qtype.name, "scale": float(qp.scale),
                                "zero_point": int(qp.zero_point),
                                "role": "input" if is_in else "output"}
        if is_in and io != "float":
            inits, attrs = qparam_initializers(qp, stem)
            e.head.append(helper.make_node(
                "DequantizeLinear", [name, inits[0].name, inits[1].name],
                [f"{stem}_dequantized"], name=f"{stem}_DequantizeLinear", **attrs))
            e.inits += inits
            e.rename_in[name] = f"{stem}_dequantized"
            continue
        if is_out:
            src = f"{name}_float"
            e.rename_out[name] = src
            if io != "float":
                inits, attrs = qparam_initializers(qp, stem)
                nodes = [helper.make_node("QuantizeLinear", [src, inits[0].name, inits[1].name],
                                          [name], name=f"{stem}_QuantizeLinear", **attrs)]
            else:
                inits, nodes = qdq_pair(src, f"{stem}_quantized", name, qp, stem)
        else:
            inits, nodes = qdq_pair(name, f"{stem}_quantized", f"{stem}_dequantized", qp, stem)
            e.rename_in[name] = f"{stem}_dequantized"
        e.inits += inits
        (e.head if is_in else e.after.setdefault(src if is_out else name, [])).extend(nodes)


def seam_edits(plan: QuantPlan, info: GraphInfo, act_qparams: dict[str, QParams],
               e: Edits) -> None:
    """A second Q → DQ of a tensor for the consumers that want another precision.

    It reads the first DQ's output when the tensor is integer in the deployed model (its
    producer is quantized), else the float tensor; it runs after activation_edits."""
    for key, d in _static(plan, ("activation",)):
        if not d.consumers:
            continue
        qp = act_qparams[key]
        e.used[key] = qp
        t = d.tensor
        raw = e.rename_out.get(t, t)  # the producer's float output
        src = e.rename_in.get(t, t) if d.from_dequantized else raw
        stem = requant_stem(t, d.consumers[0])
        inits, nodes = qdq_pair(src, f"{stem}_quantized", f"{stem}_dequantized", qp, stem)
        e.inits += inits
        (e.head if t in info.graph_inputs else e.after.setdefault(raw, [])).extend(nodes)
        for c in d.consumers:
            e.rename_for[(c, t)] = f"{stem}_dequantized"


def constant_edits(plan: QuantPlan, info: GraphInfo, act_qparams: dict[str, QParams],
                   weight_qparams: dict[str, QParams], e: Edits,
                   weight_ints: dict[str, tuple[QParams, np.ndarray]] | None = None) -> None:
    """Weights (per-channel / per-tensor) and constant operands as integers behind a DQ;
    given qparams win over ones computed from the values. ``weight_ints`` holds integers
    chosen elsewhere (AdaRound) with the qparams they were chosen for: used when the qparams
    here are the same, else round-to-nearest with a note."""
    weight_ints = weight_ints or {}
    biases = {b.weight_of: b for _, b in _static(plan, ("bias",))}
    for name, d in _static(plan, ("weight", "constant")):
        values = info.const_array(name).astype(np.float32)
        given = weight_qparams if d.role == "weight" else act_qparams
        qp = given.get(name) or qparams_for(values, d.spec)
        b = biases.get(name) if d.role == "weight" and name not in given else None
        if b is not None and b.input_of in e.used:
            qp = _fit_bias(info, b, e.used[b.input_of], name, qp, values, e)
        e.used[name] = qp
        stem = tensor_stem(name)
        ints = None
        if name in weight_ints:
            ints = weight_ints[name][1] if weight_ints[name][0] == qp else None
            if ints is None:
                e.notes.append(f"weight {name!r}: learned rounding dropped (its qparams changed);"
                               " rounded to nearest")
        inits, node = dequantized_constant(values, qp, stem, f"{stem}_dequantized", ints=ints)
        e.inits += inits
        e.head.append(node)
        e.rename_in[name] = f"{stem}_dequantized"
        e.dropped.add(name)


def _fit_bias(info: GraphInfo, b: TensorDecision, x: QParams, name: str, qp: QParams,
              values: np.ndarray, e: Edits) -> QParams:
    """Weight qparams whose int32 bias fits: offending channels' scales raised just enough
    (never a silent float bias); the channels and the SQNR they cost go to the notes."""
    bias = info.const_array(b.tensor).astype(np.float32)  # (C,)
    if bias.ndim != 1 or not isinstance(qp.granularity, PerChannel | PerTensor):
        return qp
    fan_in = values.size // max(bias.size, 1)  # (C_out, C_in/g, kh, kw) → per-channel K
    limit = BIAS_LIMIT - accumulator_headroom(fan_in, x.qtype.bits, qp.qtype.bits)
    fit = fit_bias(bias, x.scale, qp, weight_values=values, limit=limit)
    if fit.channels:
        cost = fit.sqnr_cost_db[list(fit.channels)]  # (changed,) dB; inf: channel exact before
        finite = cost[np.isfinite(cost)]
        worst = f"≤ {float(finite.max()):.2f} dB" if finite.size else "n/a"
        exact = int(np.sum(~np.isfinite(cost)))
        e.notes.append(f"weight {name!r}: scale of channel(s) {list(fit.channels)} raised so "
                       f"bias {b.tensor!r} fits int32 (weight SQNR cost {worst}"
                       + (f"; {exact} channel(s) were exactly representable before" if exact else "")
                       + ")")
    return fit.qparams


def bias_edits(plan: QuantPlan, info: GraphInfo, e: Edits) -> None:
    """int32 biases with scale = input scale · weight scale (per channel), zero point 0;
    kept float (with a note) when their input or weight is not quantized or they overflow."""
    for name, d in _static(plan, ("bias",)):
        if d.input_of not in e.used or d.weight_of not in e.used:
            e.notes.append(f"bias {name!r} kept float: its input or weight is not quantized")
            continue
        bqp = bias_qparams(e.used[d.input_of].scale, e.used[d.weight_of])
        values = info.const_array(name).astype(np.float64)
        x, w = e.used[d.input_of], e.used[d.weight_of]
        fan_in = info.const_array(d.weight_of).size // max(values.size, 1)
        limit = BIAS_LIMIT - accumulator_headroom(fan_in, x.qtype.bits, w.qtype.bits)
        if np.max(np.abs(values / bqp.scale.astype(np.float64)), initial=0) > limit:
            e.notes.append(f"bias {name!r} kept float: it overflows int32 (less the accumulator "
                           "headroom) at scale input·weight")
            continue
        e.used[name] = bqp
        stem = tensor_stem(name)
        inits, node = dequantized_constant(values.astype(np.float32), bqp, stem,
                                           f"{stem}_dequantized")
        e.inits += inits
        e.head.append(node)
        e.rename_in[name] = f"{stem}_dequantized"
        e.dropped.add(name)


def apply_edits(model: onnx.ModelProto, e: Edits) -> None:
    """Rewrite ``model`` in place: head nodes first, each producer followed by its Q/DQ,
    inputs / outputs renamed, replaced initializers dropped, integer I/O typed and recorded.

    Graph-output tensors keep their name on the DequantizeLinear output, so their other
    consumers need no rename; only the producer's output becomes ``<name>_float``.
    """
    g = model.graph
    nodes_out: list[onnx.NodeProto] = list(e.head)
    for node in g.node:
        key = node.name or node.output[0]
        for i, inp in enumerate(node.input):
            new = e.rename_for.get((key, inp)) or e.rename_in.get(inp)
            if new:
                node.input[i] = new
        for i, out in enumerate(node.output):
            if out in e.rename_out:
                node.output[i] = e.rename_out[out]
        nodes_out.append(node)
        for out in node.output:
            nodes_out.extend(e.after.get(out, []))
    del g.node[:]
    g.node.extend(nodes_out)
    still_used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name not in e.dropped or t.name in still_used]
    del g.initializer[:]
    g.initializer.extend(keep + e.inits)
    for vi in [*g.input, *g.output]:
        if vi.name in e.io_types:
            vi.type.tensor_type.elem_type = e.used[vi.name].qtype.onnx_dtype
    del g.value_info[:]
    if e.io_types:
        helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                       META_IO: json.dumps(e.io_types, sort_keys=True)})


def insert_qdq(model: onnx.ModelProto, plan: QuantPlan, act_qparams: dict[str, QParams],
               weight_qparams: dict[str, QParams] | None = None, io: str = "float",
               weight_ints: dict[str, tuple[QParams, np.ndarray]] | None = None
               ) -> tuple[onnx.ModelProto, dict[str, QParams], list[str]]:
    """Return the QDQ model, the qparams used per plan key, and notes for the report.

    ``act_qparams`` holds calibrated (or trained) qparams of every static activation
    decision with action ``quantize``, keyed like ``plan.tensors`` (tensor name; seam key
    for re-quantizations); shared tensors reuse their source's qparams. ``weight_ints``:
    weight name → (qparams, integers) chosen beforehand (see :func:`constant_edits`).
    """
    info = GraphInfo.build(model)
    e = Edits()
    activation_edits(plan, info, act_qparams, io, e)
    seam_edits(plan, info, act_qparams, e)
    constant_edits(plan, info, act_qparams, dict(weight_qparams or {}), e, weight_ints)
    bias_edits(plan, info, e)
    apply_edits(model, e)
    kept = keep_float_weights(model)
    if kept:
        e.notes.append(f"{len(kept)} float-weight node(s) between quantized tensors keep their "
                       "input DequantizeLinear per axis, so onnxruntime runs them in float "
                       f"instead of quantizing their weights itself: {kept[:5]}")
    return model, e.used, e.notes
