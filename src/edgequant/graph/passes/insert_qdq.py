"""Execute a static QuantPlan: QuantizeLinear/DequantizeLinear pairs on activations, integer
weights and int32 biases read through DequantizeLinear (docs/architecture.md)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from edgequant.graph.contract import META_IO, tensor_stem
from edgequant.graph.info import GraphInfo
from edgequant.graph.passes.qdq_nodes import dequantized_constant, qdq_pair, qparam_initializers
from edgequant.qparams import QParams, bias_qparams, qparams_for
from edgequant.recipes.plan import QuantPlan

INT32_LIMIT = 2**31 - 1


def insert_qdq(model: onnx.ModelProto, plan: QuantPlan, act_qparams: dict[str, QParams],
               weight_qparams: dict[str, QParams] | None = None, io: str = "float"
               ) -> tuple[onnx.ModelProto, dict[str, QParams], list[str]]:
    """Return the QDQ model, the qparams used per tensor, and notes for the report.

    ``act_qparams`` holds calibrated (or trained) qparams of every activation decision with
    action ``quantize``; shared tensors reuse their source's qparams.
    """
    info = GraphInfo.build(model)
    g = model.graph
    weight_qparams = dict(weight_qparams or {})
    notes: list[str] = []
    used: dict[str, QParams] = {}
    new_inits: list[onnx.TensorProto] = []
    after: dict[str, list[onnx.NodeProto]] = {}   # tensor → nodes to insert after its producer
    head: list[onnx.NodeProto] = []               # nodes reading graph inputs / constants
    replace_in: dict[str, str] = {}               # consumer input renames
    rename_out: dict[str, str] = {}               # producer output renames (graph outputs)
    io_types: dict[str, dict] = {}

    def qp_of(name: str) -> QParams:
        d = plan.tensors[name]
        while d.action == "share":
            d = plan.tensors[d.share_with]
        return act_qparams[d.tensor]

    for name, d in plan.tensors.items():
        if d.role != "activation" or d.action not in ("quantize", "share"):
            continue
        qp = qp_of(name)
        used[name] = qp
        stem = tensor_stem(name)
        is_in, is_out = name in info.graph_inputs, name in info.graph_outputs
        if io != "float" and (is_in or is_out):
            io_types[name] = {"dtype": qp.qtype.name, "scale": float(qp.scale),
                              "zero_point": int(qp.zero_point), "role": "input" if is_in
                              else "output"}
        if is_in and io != "float":
            inits, attrs = qparam_initializers(qp, stem)
            dq = helper.make_node("DequantizeLinear", [name, inits[0].name, inits[1].name],
                                  [f"{stem}_dequantized"], name=f"{stem}_DequantizeLinear",
                                  **attrs)
            new_inits += inits
            head.append(dq)
            replace_in[name] = f"{stem}_dequantized"
            continue
        if is_out:
            src = f"{name}_float"
            rename_out[name] = src
            if io != "float":
                inits, attrs = qparam_initializers(qp, stem)
                nodes = [helper.make_node("QuantizeLinear", [src, inits[0].name, inits[1].name],
                                          [name], name=f"{stem}_QuantizeLinear", **attrs)]
            else:
                inits, nodes = qdq_pair(src, f"{stem}_quantized", name, qp, stem)
        else:
            inits, nodes = qdq_pair(name, f"{stem}_quantized", f"{stem}_dequantized", qp, stem)
            replace_in[name] = f"{stem}_dequantized"
        new_inits += inits
        (head if is_in else after.setdefault(src if is_out else name, [])).extend(nodes)

    dropped: set[str] = set()
    for name, d in plan.tensors.items():
        if d.action != "quantize" or d.role not in ("weight", "constant"):
            continue
        values = info.const_array(name).astype(np.float32)
        if d.role == "weight":
            qp = weight_qparams.get(name) or qparams_for(values, d.spec)
        else:
            qp = act_qparams.get(name) or qparams_for(values, d.spec)
        used[name] = qp
        stem = tensor_stem(name)
        inits, node = dequantized_constant(values, qp, stem, f"{stem}_dequantized")
        new_inits += inits
        head.append(node)
        replace_in[name] = f"{stem}_dequantized"
        dropped.add(name)

    for name, d in plan.tensors.items():
        if d.action != "quantize" or d.role != "bias":
            continue
        if d.input_of not in used or d.weight_of not in used:
            notes.append(f"bias {name!r} kept float: its input or weight is not quantized")
            continue
        bqp = bias_qparams(used[d.input_of].scale, used[d.weight_of])
        values = info.const_array(name).astype(np.float64)
        if np.max(np.abs(values / bqp.scale.astype(np.float64)), initial=0) > INT32_LIMIT:
            notes.append(f"bias {name!r} kept float: it overflows int32 at scale input·weight")
            continue
        used[name] = bqp
        stem = tensor_stem(name)
        inits, node = dequantized_constant(values.astype(np.float32), bqp, stem,
                                           f"{stem}_dequantized")
        new_inits += inits
        head.append(node)
        replace_in[name] = f"{stem}_dequantized"
        dropped.add(name)

    # Graph-output tensors keep their name on the DequantizeLinear output, so their other
    # consumers need no rename; only the producer's output becomes ``<name>_float``.
    nodes_out: list[onnx.NodeProto] = list(head)
    for node in g.node:
        for i, inp in enumerate(node.input):
            if inp in replace_in:
                node.input[i] = replace_in[inp]
        for i, out in enumerate(node.output):
            if out in rename_out:
                node.output[i] = rename_out[out]
        nodes_out.append(node)
        for out in node.output:
            nodes_out.extend(after.get(out, []))
    del g.node[:]
    g.node.extend(nodes_out)
    still_used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name not in dropped or t.name in still_used]
    del g.initializer[:]
    g.initializer.extend(keep + new_inits)
    for vi in list(g.input):
        if vi.name in io_types:
            vi.type.tensor_type.elem_type = used[vi.name].qtype.onnx_dtype
    for vi in list(g.output):
        if vi.name in io_types:
            vi.type.tensor_type.elem_type = used[vi.name].qtype.onnx_dtype
    del g.value_info[:]
    if io_types:
        import json

        helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                       META_IO: json.dumps(io_types, sort_keys=True)})
    return model, used, notes

