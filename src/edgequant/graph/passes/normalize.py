"""Bring a third-party ONNX model into the one form the passes expect, saying what changed.

Exporters differ in ways that do not change what a model computes but break naive passes:

* IR 3 lists every initializer as a graph input too (the value is only a default); those
  inputs are dropped so nothing takes a weight for data.
* Paddle writes a dynamic batch as ``-1`` (and some tools as ``0``): those dims become
  symbolic, so nobody takes ``-1`` for a fixed size.
* ``Constant`` nodes hold weights (tf2onnx, old torch): their tensors become initializers,
  so weight quantization sees them.
* ``If`` / ``Loop`` / ``Scan`` subgraphs are kept float and intact: initializers that only a
  subgraph reads live inside that subgraph, where the main-graph passes cannot rewrite them.

Each function edits the model in place; ``normalize`` returns notes for the report.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import onnx
from onnx import helper, numpy_helper

log = logging.getLogger(__name__)

#: The first IR version in which an initializer need not be a graph input.
IR_INITIALIZERS_NOT_INPUTS = 4
#: Ops whose attributes hold subgraphs.
CONTROL_FLOW_OPS = ("If", "Loop", "Scan")


def subgraphs(node: onnx.NodeProto) -> Iterator[tuple[str, onnx.GraphProto]]:
    """(attribute name, graph) for every subgraph attribute of ``node``."""
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            yield a.name, a.g
        elif a.type == onnx.AttributeProto.GRAPHS:
            for i, g in enumerate(a.graphs):
                yield f"{a.name}[{i}]", g


def outer_references(graph: onnx.GraphProto) -> set[str]:
    """Names a (sub)graph reads from enclosing scopes (not defined inside it)."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    used: set[str] = set()
    for n in graph.node:
        used.update(i for i in n.input if i)
        for _, g in subgraphs(n):
            used |= outer_references(g)
        defined.update(n.output)
    used.update(o.name for o in graph.output)
    return used - defined


def subgraph_references(model: onnx.ModelProto) -> set[str]:
    """Main-graph tensor names read from inside any subgraph (renaming them would break it)."""
    refs: set[str] = set()
    for n in model.graph.node:
        for _, g in subgraphs(n):
            refs |= outer_references(g)
    return refs


def drop_initializer_inputs(model: onnx.ModelProto) -> list[str]:
    """Remove graph inputs that are initializers (IR 3 style); raise IR to at least 4."""
    old_ir = model.ir_version
    inits = {t.name for t in model.graph.initializer}
    keep = [vi for vi in model.graph.input if vi.name not in inits]
    dropped = len(model.graph.input) - len(keep)
    if dropped:
        del model.graph.input[:]
        model.graph.input.extend(keep)
    notes = []
    if model.ir_version < IR_INITIALIZERS_NOT_INPUTS:
        model.ir_version = IR_INITIALIZERS_NOT_INPUTS
    if dropped:
        notes.append(f"{dropped} initializer(s) listed as graph inputs (IR "
                     f"{old_ir} style) are weights, no longer inputs")
    return notes


def raise_ir_version(model: onnx.ModelProto) -> None:
    """Set the IR version to at least what the model's opsets need."""
    need = helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    if model.ir_version < need:
        log.info("IR version %d raised to %d", model.ir_version, need)
        model.ir_version = need


#: The lowest IR version that holds each element type newer than IR 8's.
TYPE_MIN_IR = {onnx.TensorProto.FLOAT8E4M3FN: 9, onnx.TensorProto.FLOAT8E4M3FNUZ: 9,
               onnx.TensorProto.FLOAT8E5M2: 9, onnx.TensorProto.FLOAT8E5M2FNUZ: 9,
               onnx.TensorProto.UINT4: 10, onnx.TensorProto.INT4: 10,
               onnx.TensorProto.FLOAT4E2M1: 11}
#: The IR version edgequant's own outputs need (int4 Q/DQ at opset 21): never lowered below.
OUTPUT_IR = 10


def _element_types(model: onnx.ModelProto) -> set[int]:
    graphs = [model.graph]
    types = set()
    while graphs:
        g = graphs.pop()
        types |= {t.data_type for t in g.initializer}
        for vi in [*g.input, *g.output, *g.value_info]:
            if vi.type.HasField("tensor_type"):
                types.add(vi.type.tensor_type.elem_type)
        for n in g.node:
            graphs += [sg for _, sg in subgraphs(n)]
            types |= {a.t.data_type for a in n.attribute if a.HasField("t")}
    return types


def lower_ir_version(model: onnx.ModelProto) -> list[str]:
    """Lower an IR version newer than the model needs (e.g. onnx 1.23's default IR 14, which
    onnxruntime 1.31 refuses) to the lowest that holds its opsets and element types — never
    below :data:`OUTPUT_IR`. Left alone when the model holds functions or an element type
    newer than :data:`TYPE_MIN_IR` knows. Returns the report note, if any."""
    opsets = helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    types = _element_types(model)
    newest = max(TYPE_MIN_IR)
    if model.functions or any(t > newest for t in types):
        return []
    need = max(OUTPUT_IR, opsets, *(TYPE_MIN_IR.get(t, 0) for t in types))
    if model.ir_version <= need:
        return []
    old, model.ir_version = model.ir_version, need
    return [f"IR version {old} lowered to {need}, the lowest that holds the model's opsets and "
            "types (runtimes refuse IR versions newer than they know)"]


def symbolic_dims(model: onnx.ModelProto) -> list[str]:
    """Turn ``-1`` / ``0`` dims of graph inputs and outputs into symbolic dims."""
    changed = []
    for vi in [*model.graph.input, *model.graph.output]:
        if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
            continue
        for axis, d in enumerate(vi.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value <= 0:
                d.dim_param = f"{vi.name}_dim{axis}"  # clears dim_value (oneof)
                changed.append(f"{vi.name}[{axis}]")
    if changed:
        return [f"dim(s) {changed} written as -1/0 are taken as dynamic (symbolic)"]
    return []


def constants_to_initializers(model: onnx.ModelProto) -> None:
    """Main-graph ``Constant`` nodes with a tensor value become initializers."""
    keep, moved = [], 0
    for n in model.graph.node:
        t = _constant_tensor(n)
        if t is None:
            keep.append(n)
            continue
        t.name = n.output[0]
        model.graph.initializer.append(t)
        moved += 1
    if moved:
        del model.graph.node[:]
        model.graph.node.extend(keep)
        log.info("%d Constant node(s) turned into initializers", moved)


def _constant_tensor(n: onnx.NodeProto) -> onnx.TensorProto | None:
    if n.op_type != "Constant" or n.domain not in ("", "ai.onnx") or len(n.attribute) != 1:
        return None
    a = n.attribute[0]
    t = onnx.TensorProto()
    if a.name == "value":
        t.CopyFrom(a.t)
    elif a.name in ("value_float", "value_floats", "value_int", "value_ints"):
        value = helper.get_attribute_value(a)
        dtype = "float32" if "float" in a.name else "int64"
        t.CopyFrom(numpy_helper.from_array(np.asarray(value, dtype=dtype)))
    else:  # sparse or string constants stay nodes
        return None
    return t


def sink_subgraph_initializers(model: onnx.ModelProto) -> None:
    """Move main-graph initializers read only inside subgraphs into those subgraphs.

    Main-graph passes (fp16 storage, weight quantization, BN folding) rewrite or drop
    main-graph initializers by what main-graph nodes read; a weight that lives in the
    subgraph that reads it is left alone, so the subgraph stays float and valid.
    """
    main_reads = {i for n in model.graph.node for i in n.input if i}
    main_reads |= {o.name for o in model.graph.output}
    by_name = {t.name: t for t in model.graph.initializer}
    moved: set[str] = set()
    for n in model.graph.node:
        for _, g in subgraphs(n):
            for name in sorted(outer_references(g)):
                if name in by_name and name not in main_reads:
                    copy = onnx.TensorProto()
                    copy.CopyFrom(by_name[name])
                    g.initializer.append(copy)
                    moved.add(name)
    if moved:
        keep = [t for t in model.graph.initializer if t.name not in moved]
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)


def route_subgraph_inputs(model: onnx.ModelProto) -> None:
    """Make every main-graph tensor a subgraph reads an explicit input of an ``Identity``.

    A subgraph reads outer tensors by name, invisible to passes that index main-graph
    consumers: lowering may fuse away or rename such a tensor and break the subgraph. An
    ``Identity`` right before the control-flow node, whose output the subgraph reads instead,
    is an ordinary consumer every pass rewires correctly.
    """
    nodes: list[onnx.NodeProto] = []
    routed = 0
    for n in model.graph.node:
        refs: set[str] = set()
        for _, g in subgraphs(n):
            refs |= outer_references(g)
        label = n.name or n.output[0]
        for name in sorted(refs):
            new = f"{name}_to_{label}"
            nodes.append(helper.make_node("Identity", [name], [new], name=f"{label}_reads_{name}"))
            for _, g in subgraphs(n):
                _rename_outer(g, name, new)
            routed += 1
        nodes.append(n)
    if routed:
        del model.graph.node[:]
        model.graph.node.extend(nodes)


def _rename_outer(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename reads of the outer tensor ``old`` inside ``graph`` (unless it defines ``old``)."""
    local = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    for n in graph.node:
        if old in local:
            return
        for i, name in enumerate(n.input):
            if name == old:
                n.input[i] = new
        for _, g in subgraphs(n):
            _rename_outer(g, old, new)
        local.update(n.output)
    for o in graph.output:
        if o.name == old and old not in local:
            o.name = new


def subgraph_nodes(model: onnx.ModelProto) -> Iterator[tuple[str, onnx.NodeProto]]:
    """(path, node) for every node inside subgraphs, path ``parent/attribute/node``."""
    def walk(graph: onnx.GraphProto, prefix: str):
        for n in graph.node:
            label = f"{prefix}{n.name or n.output[0]}"
            if prefix:
                yield label, n
            for attr_name, g in subgraphs(n):
                yield from walk(g, f"{label}/{attr_name}/")
    yield from walk(model.graph, "")


def normalize(model: onnx.ModelProto) -> list[str]:
    """All load-time normalizations (before the opset upgrade); returns report notes."""
    notes = drop_initializer_inputs(model)
    notes += symbolic_dims(model)
    constants_to_initializers(model)
    raise_ir_version(model)
    for n in model.graph.node:
        if n.op_type in CONTROL_FLOW_OPS:
            notes.append(f"{n.op_type} node {n.name or n.output[0]!r}: its subgraph(s) are "
                         "kept float")
    return notes
