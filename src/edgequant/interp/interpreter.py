"""The reference interpreter: runs float, QDQ and QOperator ONNX graphs with numpy.

Nodes execute in topological order, each through the op function registered for its
``(domain, op_type)``. Integer ops are integer-only by construction; the only float
arithmetic in an integer path is the requantization multiplier in ``float`` mode, which
reproduces onnxruntime's CPU kernels (see docs/arithmetic.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import onnx

import edgequant.interp.ops  # noqa: F401  (fills the registry)
from edgequant.errors import UnsupportedOpError
from edgequant.graph.contract import META_REQUANTIZATION
from edgequant.interp.loading import attribute_values, elem_numpy_dtype, load_proto, tensor_value
from edgequant.interp.registry import OPS, NodeContext, Requantization, normalize_domain

logger = logging.getLogger(__name__)

MODES = ("float", "fixedpoint")


def topological_order(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Nodes ordered so every input is produced before it is read (Kahn, stable).

    A control-flow node also waits for the outer tensors its subgraphs read.
    """
    produced_by = {o: i for i, n in enumerate(graph.node) for o in n.output if o}
    deps = [
        {produced_by[t] for t in node_reads(n) if t in produced_by and produced_by[t] != i}
        for i, n in enumerate(graph.node)
    ]
    users: dict[int, list[int]] = {i: [] for i in range(len(graph.node))}
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    missing = [len(d) for d in deps]
    ready = [i for i, m in enumerate(missing) if m == 0]
    order: list[int] = []
    while ready:
        i = ready.pop(0)
        order.append(i)
        for u in users[i]:
            missing[u] -= 1
            if missing[u] == 0:
                ready.append(u)
    if len(order) != len(graph.node):
        stuck = [graph.node[i].name or graph.node[i].op_type for i in range(len(graph.node))
                 if i not in set(order)]
        raise ValueError(f"graph has a cycle through nodes {stuck[:5]}: cannot order it")
    return [graph.node[i] for i in order]


def subgraph_attributes(node: onnx.NodeProto) -> dict[str, onnx.GraphProto]:
    """The node's graph-valued attributes (``If`` branches, ``Loop`` / ``Scan`` bodies)."""
    return {a.name: a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH}


def free_names(graph: onnx.GraphProto) -> list[str]:
    """Tensors a (sub)graph reads from its outer scope: read by a node (or a nested
    subgraph) or named as an output, but neither produced inside it nor one of its inputs /
    initializers."""
    local = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    local |= {o for n in graph.node for o in n.output if o}
    reads = [t for n in graph.node for t in node_reads(n)] + [o.name for o in graph.output]
    return list(dict.fromkeys(t for t in reads if t and t not in local))


def node_reads(node: onnx.NodeProto) -> list[str]:
    """The node's inputs, then the outer-scope tensors its subgraphs read (implicit inputs)."""
    reads = [t for t in node.input if t]
    for g in subgraph_attributes(node).values():
        reads += [t for t in free_names(g) if t not in reads]
    return reads


class Subgraph:
    """A compiled control-flow body: run with the outer-scope values it captures and its
    own inputs, it returns its outputs in order (used by ``ops/control.py``)."""

    def __init__(self, graph: onnx.GraphProto, opsets: Mapping[str, int],
                 requantization: Requantization) -> None:
        self.name = graph.name
        self.initializers = {t.name: tensor_value(t) for t in graph.initializer}
        self.input_names = [i.name for i in graph.input]
        self.output_names = [o.name for o in graph.output]
        self.output_types = [_declared(o) for o in graph.output]
        self.steps = [compile_node(n, i, opsets, requantization)
                      for i, n in enumerate(topological_order(graph))]

    def run(self, outer: Mapping[str, Any], inputs: list[Any]) -> list[Any]:
        """Outputs of the body for ``inputs`` (one per body input) in scope ``outer``."""
        if len(inputs) != len(self.input_names):
            raise ValueError(f"subgraph {self.name!r} takes inputs {self.input_names}, "
                             f"got {len(inputs)} values")
        env: dict[str, Any] = dict(outer)
        env.update(self.initializers)
        env.update(zip(self.input_names, inputs, strict=True))
        run_steps(self.steps, env)
        return [env[n] for n in self.output_names]


def _declared(value_info: onnx.ValueInfoProto) -> tuple[np.dtype | None, tuple[int, ...] | None]:
    """(dtype, static shape) a graph output declares; None where unknown or symbolic."""
    tt = value_info.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    shape = tuple(dims) if tt.HasField("shape") and None not in dims else None
    return elem_numpy_dtype(value_info), shape


def compile_node(node: onnx.NodeProto, index: int, opsets: Mapping[str, int],
                 requantization: Requantization):
    """``(op function, NodeContext, input names, output names)`` of one node. Subgraphs are
    compiled into :class:`Subgraph` runners; the outer tensors they read are appended to the
    inputs (so ordering and memory release see them) and named in ``ctx.captured``."""
    domain = normalize_domain(node.domain)
    fn = OPS.get((domain, node.op_type))
    name = node.name or f"{node.op_type}_{index}"
    if fn is None:
        raise UnsupportedOpError(
            f"op {node.op_type!r} (domain {domain or 'ai.onnx'!r}) of node {name!r} is not "
            f"supported by the reference interpreter; supported: "
            f"{sorted(k[1] for k in OPS if k[0] == domain)}"
        )
    graphs = subgraph_attributes(node)
    # every outer name a body reads, even one that is also an explicit input of the node
    captured = tuple(dict.fromkeys(t for g in graphs.values() for t in free_names(g)))
    ctx = NodeContext(name=name, op_type=node.op_type, attrs=attribute_values(node),
                      requantization=requantization, n_outputs=len(node.output),
                      opset=opsets.get(domain, 1), captured=captured,
                      subgraphs={k: Subgraph(g, opsets, requantization) for k, g in graphs.items()})
    return fn, ctx, [*node.input, *captured], list(node.output)


def run_steps(steps, env: dict[str, Any], release: list[list[str]] | None = None) -> None:
    """Run compiled steps in order, reading and writing tensors in ``env``; with ``release``,
    drop after step ``i`` the tensors ``release[i]`` names."""
    for i, (fn, ctx, inputs, outputs) in enumerate(steps):
        args = [env[t] if t else None for t in inputs]
        try:
            result = fn(ctx, *args)
        except Exception as e:
            e.add_note(f"while running {ctx.op_type} node {ctx.name!r}")
            raise
        if not isinstance(result, tuple):
            result = (result,)
        for name, value in zip(outputs, result, strict=False):
            if name:
                env[name] = value
        for name in release[i] if release is not None else ():
            env.pop(name, None)


class Interpreter:
    """Bit-exact numpy reference for an ONNX model.

    ``requantization``: ``"float"`` (onnxruntime's arithmetic), ``"fixedpoint"`` (TFLite /
    integer hardware) or ``None`` to read the model's ``edgequant.requantization`` metadata
    (default ``float``).
    """

    def __init__(self, model: Any, requantization: Requantization | None = None) -> None:
        self.model = load_proto(model)
        graph = self.model.graph
        meta = {p.key: p.value for p in self.model.metadata_props}
        mode = requantization or meta.get(META_REQUANTIZATION, "float")
        if mode not in MODES:
            raise ValueError(f"requantization {mode!r} is not allowed: use one of {MODES}")
        self.requantization: Requantization = mode
        self.initializers = {t.name: tensor_value(t) for t in graph.initializer}
        self.nodes = topological_order(graph)
        self.input_names = [i.name for i in graph.input if i.name not in self.initializers]
        self.output_names = [o.name for o in graph.output]
        self._input_dtypes = {i.name: elem_numpy_dtype(i) for i in graph.input}
        self.opsets = {normalize_domain(o.domain): o.version for o in self.model.opset_import}
        self._steps = [self._compile(n, i) for i, n in enumerate(self.nodes)]

    def _compile(self, node: onnx.NodeProto, index: int):
        return compile_node(node, index, self.opsets, self.requantization)

    def prepare_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check ``feeds`` names every graph input; cast each to its declared dtype."""
        unknown = sorted(set(feeds) - set(self.input_names) - set(self.initializers))
        if unknown:
            raise ValueError(f"feeds {unknown} are not inputs of the model: {self.input_names}")
        env: dict[str, np.ndarray] = {}
        for name in self.input_names:
            if name not in feeds:
                raise ValueError(
                    f"input {name!r} is missing from the feeds: need {self.input_names}"
                )
            value = np.asarray(feeds[name])
            want = self._input_dtypes.get(name)
            env[name] = value.astype(want) if want is not None and value.dtype != want else value
        return env

    def _execute(self, feeds: Mapping[str, np.ndarray], keep: Iterable[str] | None):
        """Run every node; with ``keep`` given, drop other tensors after their last use."""
        env: dict[str, Any] = dict(self.initializers)
        env.update(self.prepare_feeds(feeds))
        release = self._release_plan(set(keep)) if keep is not None else None
        run_steps(self._steps, env, release)
        return env

    def _release_plan(self, keep: set[str]) -> list[list[str]]:
        """Per step, the activations no later step reads (freed to bound memory)."""
        last: dict[str, int] = {}
        for i, (_, _, inputs, outputs) in enumerate(self._steps):
            for t in (*inputs, *outputs):
                if t:
                    last[t] = i
        plan: list[list[str]] = [[] for _ in self._steps]
        for t, i in last.items():
            if t not in keep and t not in self.initializers:
                plan[i].append(t)
        return plan

    def run(self, feeds: Mapping[str, np.ndarray], outputs: list[str] | None = None
            ) -> dict[str, np.ndarray]:
        """Run the model; return ``{output name: array}`` for ``outputs`` (default: all)."""
        names = outputs or self.output_names
        env = self._execute(feeds, names)
        missing = [n for n in names if n not in env]
        if missing:
            raise ValueError(f"outputs {missing} are not tensors of the model")
        return {n: np.asarray(env[n]) for n in names}

    def run_all(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model; return every graph input and node output tensor by name."""
        env = self._execute(feeds, None)
        return {k: np.asarray(v) for k, v in env.items() if k not in self.initializers}
