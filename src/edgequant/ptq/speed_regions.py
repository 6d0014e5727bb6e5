"""Quantized regions and their cost: the pure (timing-free) half of the speed guard.

A *region* is one quantized compute node with the pass-through ops that follow it (ReLU,
pooling, reshapes — they run in whatever precision their producer hands them): the island
between the Q that enters it and the DQ that leaves it. Keeping a region float removes the
whole island, so its cost is compared as a whole:

* its quantized cost: every node of onnxruntime's optimized quantized graph attributed to
  it — the fused integer kernel (``QLinearConv`` keeps the Conv's name), layout transposes
  and the boundary QuantizeLinear / DequantizeLinear named after the tensors they convert;
* its float cost: the float graph's nodes attributed to the same original nodes.

onnxruntime renames the nodes it creates (``<name>_token_<k>`` in the NHWC transformer,
``<output>_nchwc`` for NCHWc convolutions, ``<tensor>_QuantizeLinear`` for Q/DQ that stay):
:func:`attribute` maps a profiled name back to an original node by, in order, the exact node
name, the name stripped of those suffixes, the tensor it is named after, and the longest
original node name it starts with. Names it cannot place (``ReorderOutput``, bare
``Transpose``) count in the ``None`` bucket: they enter the whole-model timing only.

The decision is deterministic given the timings: a region is *clearly slower* when
``quant_ms > float_ms · (1 + REL_MARGIN) + ABS_MARGIN_MS``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import onnx

#: A region is dropped only when its quantized cost exceeds the float cost by this share...
REL_MARGIN = 0.10
#: ... plus this many milliseconds (profiler resolution is 1 µs; tiny ops jitter by a few).
ABS_MARGIN_MS = 0.003
#: Ops that join the region of the node feeding them (no compute of their own).
PASS_THROUGH = frozenset({
    "Relu", "Clip", "MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze",
    "Identity", "Slice", "Gather", "Split", "Concat", "Resize", "DepthToSpace", "SpaceToDepth",
    "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Pad", "Expand", "Tile",
})
_SUFFIXES = re.compile(r"((_token_\d+)|(_nchwc)|(_Quantize(Linear)?)|(_Dequantize(Linear)?))+$")


@dataclass(frozen=True)
class Region:
    """A quantized island: ``nodes`` (original node names, first = the compute node)."""

    name: str
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class RegionTiming:
    """A region's attributed kernel time in the quantized and in the float model (ms)."""

    region: Region
    quant_ms: float
    float_ms: float

    @property
    def excess_ms(self) -> float:
        """Quantized minus float time (> 0: the quantized island is slower)."""
        return self.quant_ms - self.float_ms

    @property
    def clearly_slower(self) -> bool:
        """Slower by more than the noise margins (:data:`REL_MARGIN`, :data:`ABS_MARGIN_MS`)."""
        return self.quant_ms > self.float_ms * (1 + REL_MARGIN) + ABS_MARGIN_MS


def regions(model: onnx.ModelProto, quantized: set[str] | frozenset[str]) -> list[Region]:
    """Group the ``quantized`` nodes of the float ``model`` into regions (graph order)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    owner: dict[str, str] = {}  # node name → region name
    members: dict[str, list[str]] = {}
    for n in model.graph.node:
        if n.name not in quantized:
            continue
        src = producer.get(n.input[0]) if n.input else None
        if n.op_type in PASS_THROUGH and src is not None and src.name in owner:
            region = owner[src.name]
        else:
            region = n.name
            members[region] = []
        owner[n.name] = region
        members[region].append(n.name)
    return [Region(r, tuple(ns)) for r, ns in members.items()]


def attribute(profile: dict[str, float], model: onnx.ModelProto,
              owner: dict[str, str]) -> dict[str | None, float]:
    """Sum profiled ms per region; ``owner`` maps original node name → region name.

    ``model`` is the graph that was profiled, before onnxruntime's rewrites (QDQ or float);
    its Q/DQ and helper nodes are placed through the tensors they read and write.
    """
    producer = {o: n.name for n in model.graph.node for o in n.output}
    consumers: dict[str, list[str]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.name)
    node_by_name = {n.name: n for n in model.graph.node}
    place: dict[str, str | None] = {}
    qdq = ("QuantizeLinear", "DequantizeLinear")

    def up(t: str) -> str | None:
        """The region of the node producing ``t``, looking through Q/DQ."""
        p = producer.get(t)
        if p is None:
            return None
        if p in owner:
            return owner[p]
        node = node_by_name[p]
        return up(node.input[0]) if node.op_type in qdq else None

    def down(t: str) -> str | None:
        """The region of the first node reading ``t``, looking through Q/DQ."""
        for c in consumers.get(t, ()):
            if c in owner:
                return owner[c]
            node = node_by_name[c]
            if node.op_type in qdq:
                r = down(node.output[0])
                if r is not None:
                    return r
        return None

    def of_tensor(t: str) -> str | None:
        return up(t) or down(t)

    def of_node(name: str) -> str | None:
        if name in owner:
            return owner[name]
        node = node_by_name.get(name)
        if node is not None and node.op_type in qdq:
            return up(node.input[0]) or down(node.output[0])
        return None

    keys = sorted(owner, key=len, reverse=True)
    out: dict[str | None, float] = {}
    for name, ms in profile.items():
        if name not in place:
            place[name] = _place(name, owner, node_by_name, producer, of_node, of_tensor, keys)
        out[place[name]] = out.get(place[name], 0.0) + ms
    return out


def _place(name, owner, node_by_name, producer, of_node, of_tensor, keys) -> str | None:
    for cand in (name, _SUFFIXES.sub("", name)):
        if cand in owner:
            return owner[cand]
        if cand in node_by_name:
            r = of_node(cand)
            if r is not None:
                return r
        if cand in producer or cand.endswith(("_quantized", "_dequantized")):
            r = of_tensor(re.sub(r"_(de)?quantized$", "", cand))
            if r is not None:
                return r
    stem = _SUFFIXES.sub("", name)
    return next((owner[k] for k in keys if stem.startswith(k + "_")), None)


def compare_regions(regs: list[Region], quant_profile: dict[str, float],
                    quant_model: onnx.ModelProto, float_profile: dict[str, float],
                    float_model: onnx.ModelProto) -> list[RegionTiming]:
    """Each region's attributed quantized and float kernel time."""
    owner = {n: r.name for r in regs for n in r.nodes}
    q = attribute(quant_profile, quant_model, owner)
    f = attribute(float_profile, float_model, owner)
    return [RegionTiming(r, q.get(r.name, 0.0), f.get(r.name, 0.0)) for r in regs]


def regions_to_drop(timings: list[RegionTiming], whole_model_slower: bool) -> list[Region]:
    """Clearly slower regions, worst first; if none is but the whole model is slower, the
    one region with the largest positive excess (or nothing)."""
    slow = sorted((t for t in timings if t.clearly_slower), key=lambda t: (-t.excess_ms,
                                                                            t.region.name))
    if slow:
        return [t.region for t in slow]
    if whole_model_slower:
        worst = sorted((t for t in timings if t.excess_ms > 0),
                       key=lambda t: (-t.excess_ms, t.region.name))
        return [worst[0].region] if worst else []
    return []


def with_own_report(qm: Any) -> Any:
    """A shallow copy of ``qm`` with its own report (the caller's result stays untouched)."""
    import copy
    from dataclasses import replace

    return replace(qm, report=copy.deepcopy(qm.report))
