"""Compare the reference interpreter with onnxruntime on the same inputs, in LSB.

``verify`` runs both engines and reports, per graph output (and, with ``per_node``, per
intermediate tensor both engines expose), the largest difference and the share of
bit-identical values:

* integer tensors: integer difference (LSB of that tensor);
* float tensors produced by a DequantizeLinear: difference / scale (LSB of the quantized
  tensor it came from);
* other float tensors: absolute difference (reported as a float, not in LSB).

``run`` executes a model on either engine and returns ``{output name: array}``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
import onnx

from edgequant.interp import Interpreter
from edgequant.interp.integers import as_int
from edgequant.interp.loading import load_proto

logger = logging.getLogger(__name__)

Engine = Literal["reference", "onnxruntime"]
ENGINES = ("reference", "onnxruntime")


@dataclass(frozen=True)
class TensorDiff:
    """How one tensor differs between the interpreter and onnxruntime."""

    name: str
    kind: Literal["integer", "dequantized", "float"]
    shape: tuple[int, ...]
    dtype: str
    max_diff: float  # LSB for integer / dequantized tensors, absolute for float ones
    identical: float  # share of bit-identical values, 0..1
    producer: str = ""  # op type of the node that wrote the tensor

    @property
    def in_lsb(self) -> bool:
        """True when ``max_diff`` is measured in LSB (integer or dequantized tensors)."""
        return self.kind != "float"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


@dataclass(frozen=True)
class VerifyReport:
    """Per-output (and optionally per-node) differences between the two engines."""

    outputs: list[TensorDiff]
    nodes: list[TensorDiff] = field(default_factory=list)
    engine: str = "onnxruntime"
    requantization: str = "float"
    lowered: bool = False  # the interpreter ran the QOperator lowering of a QDQ model
    boundaries: tuple[str, ...] = ()  # integer tensors the interpreter took from onnxruntime

    def ok(self, max_lsb: float = 0, float_atol: float | None = None) -> bool:
        """True when every LSB-measured output is within ``max_lsb`` (and every other float
        output within ``float_atol`` when given)."""
        for d in self.outputs:
            if d.in_lsb and d.max_diff > max_lsb:
                return False
            if not d.in_lsb and float_atol is not None and d.max_diff > float_atol:
                return False
        return True

    @property
    def max_lsb(self) -> float:
        """Largest LSB difference over the outputs measured in LSB (0 if none)."""
        return max((d.max_diff for d in self.outputs if d.in_lsb), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: engine, mode, outputs, nodes, max_lsb."""
        return {
            "engine": self.engine,
            "requantization": self.requantization,
            "lowered": self.lowered,
            "boundaries": list(self.boundaries),
            "max_lsb": self.max_lsb,
            "outputs": [d.to_dict() for d in self.outputs],
            "nodes": [d.to_dict() for d in self.nodes],
        }


def _ort_session(model: onnx.ModelProto, optimize: bool):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """Copy of ``model`` whose graph also outputs ``names`` (untyped value infos)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    m.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in have)
    return m


class OrtRunner:
    """One onnxruntime CPU session returning ``outputs`` (which may be intermediate tensors)."""

    def __init__(self, model: Any, outputs: list[str] | None = None, optimize: bool = True):
        proto = load_proto(model)
        declared = [o.name for o in proto.graph.output]
        self.names = list(outputs or declared)
        extra = [n for n in self.names if n not in declared]
        self.session = _ort_session(_with_outputs(proto, extra) if extra else proto, optimize)
        self.inputs = {i.name for i in self.session.get_inputs()}

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self.names, {k: v for k, v in feeds.items() if k in self.inputs})
        return dict(zip(self.names, values, strict=True))


def run_onnxruntime(model: Any, feeds: Mapping[str, np.ndarray], outputs: list[str] | None = None,
                    optimize: bool = True) -> dict[str, np.ndarray]:
    """Run ``model`` on onnxruntime's CPU provider; ``outputs`` may name intermediate tensors."""
    return OrtRunner(model, outputs, optimize)(feeds)


def run(model: Any, feeds: Mapping[str, np.ndarray], engine: Engine = "reference",
        requantization: str | None = None) -> dict[str, np.ndarray]:
    """Run ``model`` on ``engine`` (``reference`` interpreter or ``onnxruntime``)."""
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r} is not allowed: use one of {ENGINES}")
    interp = Interpreter(model, requantization=requantization)
    ort_run = OrtRunner(interp.model) if engine == "onnxruntime" else None
    results = []
    for batch in sample_batches(interp.model, feeds):
        if ort_run is None:
            results.append(interp.run(batch))
        else:
            results.append(ort_run(interp.prepare_feeds(batch)))
    if len(results) == 1:
        return results[0]
    return {k: np.concatenate([r[k] for r in results]) for k in results[0]}


def sample_batches(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]
                   ) -> list[dict[str, np.ndarray]]:
    """``feeds`` as one batch, or split into batches when the model's batch dim is fixed.

    DATA.npz holds samples on the first axis; a model exported with a static batch (often 1)
    cannot take them all at once, so they are run in batches of that size.
    """
    from edgequant.runtime.feeds import fixed_batch, iter_batches, model_inputs

    feeds = dict(feeds)
    b = fixed_batch(model_inputs(model))
    n = len(next(iter(feeds.values()))) if feeds else 0
    if b is None or b < 1 or n <= b or any(np.ndim(v) == 0 for v in feeds.values()):
        return [feeds]
    return list(iter_batches(feeds, b))


def merge_diffs(parts: list[TensorDiff]) -> TensorDiff:
    """One TensorDiff for a tensor compared batch by batch (shares weighted by size)."""
    sizes = [max(int(np.prod(p.shape)), 1) for p in parts]
    return replace(parts[0], max_diff=max(p.max_diff for p in parts),
                   identical=float(np.average([p.identical for p in parts], weights=sizes)))


def _dq_scales(model: onnx.ModelProto, interp: Interpreter) -> dict[str, np.ndarray]:
    """Scale (broadcastable to the tensor) of every float tensor written by DequantizeLinear."""
    out: dict[str, np.ndarray] = {}
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 2:
            continue
        scale = interp.initializers.get(node.input[1])
        if scale is None:
            continue
        out[node.output[0]] = np.asarray(scale, dtype=np.float64)
        if scale.size > 1:  # per axis / blocked: remember how to broadcast it
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            block = next((a.i for a in node.attribute if a.name == "block_size"), 0)
            out[node.output[0] + "\0axis"] = np.asarray([axis, block])
    return out


def _scale_like(scale: np.ndarray, meta: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if scale.size == 1 or meta is None:
        return scale.reshape(())
    axis, block = int(meta[0]) % len(shape), int(meta[1])
    if block > 0:
        return np.repeat(scale, block, axis=axis).take(range(shape[axis]), axis=axis)
    return scale.reshape([-1 if i == axis else 1 for i in range(len(shape))])


def compare(name: str, ref: np.ndarray, other: np.ndarray, scale: np.ndarray | None = None,
            scale_meta: np.ndarray | None = None, producer: str = "") -> TensorDiff:
    """Difference of one tensor (see the module docstring for the units)."""
    ref, other = np.asarray(ref), np.asarray(other)
    if ref.shape != other.shape:
        raise ValueError(f"tensor {name!r}: shapes differ, reference {ref.shape} vs {other.shape}")
    identical = float(np.mean(ref == other)) if ref.size else 1.0
    if ref.dtype.kind in "iub" or as_int(ref).dtype.kind in "iu":
        d = np.abs(as_int(ref).astype(np.int64) - as_int(other).astype(np.int64))
        return TensorDiff(name, "integer", ref.shape, str(ref.dtype),
                          float(d.max()) if d.size else 0.0, identical, producer)
    d = np.abs(ref.astype(np.float64) - other.astype(np.float64))
    d = np.where(np.isnan(ref) & np.isnan(other), 0.0, d)
    if scale is not None:
        lsb = d / _scale_like(scale, scale_meta, ref.shape)
        return TensorDiff(name, "dequantized", ref.shape, str(ref.dtype),
                          float(np.round(lsb.max(), 6)) if d.size else 0.0, identical, producer)
    return TensorDiff(name, "float", ref.shape, str(ref.dtype),
                      float(d.max()) if d.size else 0.0, identical, producer)


def has_qdq_compute(model: onnx.ModelProto) -> bool:
    """True when some DequantizeLinear output feeds a compute op (a QDQ-quantized graph)."""
    dq_outputs = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return any(
        n.op_type not in ("QuantizeLinear", "DequantizeLinear") and dq_outputs & set(n.input)
        for n in model.graph.node
    )


def _lowered(proto: onnx.ModelProto, requantization: str | None) -> onnx.ModelProto | None:
    """The graph onnxruntime actually runs for a QDQ model (its arithmetic-changing fusions
    mirrored), or None when nothing would be fused."""
    from edgequant.interp.fusions import fuse_dq_matmul_nbits

    target = proto
    try:
        from edgequant.export.qop.lower import lower_to_qop

        lowered = lower_to_qop(proto, requantization=requantization or "float")
        if Counter(n.op_type for n in lowered.graph.node) != Counter(
                n.op_type for n in proto.graph.node):
            target = lowered  # nothing fused (e.g. int16 activations): keep the original
    except Exception as e:  # lowering is best effort here: fall back to the QDQ graph
        logger.warning("verify: cannot lower the QDQ model (%s); interpreting it as is", e)
    target = fuse_dq_matmul_nbits(target) or target  # weight-only int4 → MatMulNBits
    return None if target is proto else target


def float_boundaries(model: onnx.ModelProto) -> list[str]:
    """Outputs of QuantizeLinear nodes that quantize a float op's result (not a graph input,
    constant or DequantizeLinear): where engine-specific float rounding enters integers."""
    producer = {o: n for n in model.graph.node for o in n.output}
    return [n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear"
            and n.input[0] in producer
            and producer[n.input[0]].op_type not in ("DequantizeLinear", "Constant")]


def _cut_at(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """Copy of ``model`` in which each tensor of ``names`` is a graph input, not a Q output."""
    inits = {t.name: t.data_type for t in model.graph.initializer}
    m = onnx.ModelProto()
    m.CopyFrom(model)
    cut = [n for n in m.graph.node if n.op_type == "QuantizeLinear" and n.output[0] in names]
    for q in cut:
        dtype = inits.get(q.input[2], 0) if len(q.input) > 2 and q.input[2] else 0
        dtype = dtype or next((a.i for a in q.attribute if a.name == "output_dtype"), 0)
        m.graph.input.append(onnx.helper.make_tensor_value_info(
            q.output[0], dtype or onnx.TensorProto.UINT8, None))
        m.graph.node.remove(q)
    return m


def _typed_feeds(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> dict:
    types = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    return {k: np.asarray(v).astype(onnx.helper.tensor_dtype_to_np_dtype(types[k]))
            if types.get(k) else np.asarray(v) for k, v in feeds.items()}


def verify(model: Any, feeds: Mapping[str, np.ndarray], per_node: bool = False,
           engine: Literal["onnxruntime"] = "onnxruntime", requantization: str | None = None,
           optimize: bool = True, lower_qdq: bool | None = None,
           isolate_integer: bool = False) -> VerifyReport:
    """Run ``model`` on the interpreter and on ``engine``; report differences in LSB.

    onnxruntime (with its default graph optimizations, ``optimize=True``) fuses QDQ groups into
    integer kernels (QLinearConv, QLinearMatMul, QLinearAdd, QLinearSoftmax, ...) and int4
    weight-only MatMuls into MatMulNBits (int8 activations). To compare like with like, a QDQ
    model is then interpreted as that fused graph (``export.qop.lower`` and
    ``interp.fusions``): ``lower_qdq=None`` does this automatically, ``False`` interprets the
    QDQ graph as float ops (compare with ``optimize=False``). With
    ``per_node``, intermediate tensors are compared on the graph the interpreter runs.

    ``isolate_integer=True`` compares the integer parts of a mixed-precision model alone: at
    each :func:`float_boundaries` tensor (a Q of a float layer's output: an int16 or float
    layer computed in float by both engines, whose last-ulp rounding differs between them)
    the interpreter takes onnxruntime's integers, and every value comes from one
    onnxruntime run of that graph. Differences left are the integer arithmetic's own.
    """
    if engine != "onnxruntime":
        raise ValueError(f"engine {engine!r} is not allowed: only 'onnxruntime' is supported")
    proto = load_proto(model)
    if lower_qdq is None:
        lower_qdq = optimize and has_qdq_compute(proto)
    target = (_lowered(proto, requantization) if lower_qdq else None) or proto
    cuts = float_boundaries(target) if isolate_integer else []
    interp = Interpreter(_cut_at(target, cuts) if cuts else target, requantization=requantization)
    producers = {o: n.op_type for n in target.graph.node for o in n.output}
    scales = _dq_scales(target, interp)
    names = list(interp.output_names)
    node_names = [o for n in interp.nodes for o in n.output if o and o not in names] \
        if per_node else []
    if cuts:  # one run of the graph the interpreter runs gives boundaries and results
        ort_outputs = OrtRunner(target, list(dict.fromkeys([*names, *cuts, *node_names])),
                                optimize)
        ort_nodes = None
    else:
        ort_outputs = OrtRunner(proto, names, optimize)
        # extra outputs would block ORT's fusions: intermediate tensors come from the graph
        # we run
        ort_nodes = OrtRunner(target, node_names, optimize) if node_names else None
    outputs: list[list[TensorDiff]] = []
    nodes: list[list[TensorDiff]] = []
    for batch in sample_batches(proto, feeds):
        if cuts:
            batch = _typed_feeds(target, batch)
            theirs = ort_outputs(batch)
            prepared = interp.prepare_feeds({**batch, **{c: theirs[c] for c in cuts}})
        else:
            prepared = interp.prepare_feeds(batch)
            theirs = ort_outputs(prepared)
        ref_all = interp.run_all(prepared) if per_node else interp.run(prepared)
        if ort_nodes is not None:
            theirs.update(ort_nodes(prepared))

        def diff(n: str, ref_all=ref_all, theirs=theirs) -> TensorDiff:
            return compare(n, ref_all[n], theirs[n], scales.get(n), scales.get(n + "\0axis"),
                           producers.get(n, ""))

        outputs.append([diff(n) for n in names])
        nodes.append([diff(n) for n in node_names])
    merged_out = [merge_diffs([b[i] for b in outputs]) for i in range(len(names))]
    merged_nodes = [merge_diffs([b[i] for b in nodes]) for i in range(len(node_names))]
    report = VerifyReport(merged_out, merged_nodes, engine, interp.requantization,
                          lowered=target is not proto, boundaries=tuple(cuts))
    logger.info("verify: max %.3g LSB over %d outputs", report.max_lsb, len(names))
    return report
