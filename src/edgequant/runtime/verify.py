"""Check an ONNX model's engine against the reference interpreter, in LSB.

``verify`` runs the model on the reference interpreter and on onnxruntime and reports, per
graph output (and, with ``per_node``, per intermediate tensor), the largest difference and
the share of bit-identical values as a :class:`~edgequant.runtime.report.VerifyReport` (units
in :mod:`edgequant.runtime.diff`). ``.tflite`` files: :func:`edgequant.runtime.verify_tflite`.

``run`` executes a model on either engine and returns ``{output name: array}``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import onnx

from edgequant.interp import topological_order
from edgequant.interp.loading import load_proto
from edgequant.runtime.batching import batches, run_batched
from edgequant.runtime.diff import TensorDiff, compare, merge_diffs
from edgequant.runtime.feeds import batch_axes_of, model_inputs
from edgequant.runtime.isolate import cut_at, float_boundaries
from edgequant.runtime.ort import OrtRunner
from edgequant.runtime.reference import ReferenceRunner
from edgequant.runtime.report import VerifyReport
from edgequant.runtime.runner import match_feeds

logger = logging.getLogger(__name__)

Engine = Literal["reference", "onnxruntime"]
ENGINES = ("reference", "onnxruntime")

__all__ = ["ENGINES", "TensorDiff", "VerifyReport", "compare", "has_qdq_compute", "run",
           "run_onnxruntime", "verify"]


def _optimization(optimize: bool) -> str:
    return "all" if optimize else "disable"


def run_onnxruntime(model: Any, feeds: Mapping[str, np.ndarray], outputs: list[str] | None = None,
                    optimize: bool = True) -> dict[str, np.ndarray]:
    """Run ``model`` on onnxruntime's CPU provider; ``outputs`` may name intermediate tensors."""
    runner = OrtRunner(load_proto(model), optimization=_optimization(optimize),
                       extra_outputs=outputs or ())
    values = dict(zip(runner.output_names, runner.run(feeds, raw=True), strict=True))
    return {n: values[n] for n in (outputs or runner.output_names)}


def run(model: Any, feeds: Mapping[str, np.ndarray], engine: Engine = "reference",
        requantization: str | None = None) -> dict[str, np.ndarray]:
    """Run ``model`` on ``engine`` (``reference`` interpreter or ``onnxruntime``), all samples
    (a fixed-batch model in batches of its size); feeds and outputs in the model's own types."""
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r} is not allowed: use one of {ENGINES}")
    runner = (ReferenceRunner(model, requantization) if engine == "reference"
              else OrtRunner(load_proto(model)))
    outs = run_batched(runner, feeds, batch_size=None, raw=True)
    return dict(zip(runner.output_names, outs, strict=True))


def _dq_scales(model: onnx.ModelProto, initializers: Mapping[str, np.ndarray]
               ) -> dict[str, tuple[np.ndarray, int | None, int]]:
    """(scale, axis, block) of every float tensor written by DequantizeLinear."""
    out: dict[str, tuple[np.ndarray, int | None, int]] = {}
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 2:
            continue
        scale = initializers.get(node.input[1])
        if scale is None:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        block = next((a.i for a in node.attribute if a.name == "block_size"), 0)
        out[node.output[0]] = (np.asarray(scale, np.float64), axis if scale.size > 1 else None,
                               block)
    return out


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


def verify(model: Any, feeds: Mapping[str, np.ndarray], per_node: bool = False,
           engine: Literal["onnxruntime"] = "onnxruntime", requantization: str | None = None,
           optimize: bool = True, lower_qdq: bool | None = None,
           batch_size: int | None = None, isolate_integer: bool = False,
           batch_axes: Mapping[str, int] | None = None) -> VerifyReport:
    """Run ``model`` on the interpreter and on ``engine``; report differences in LSB.

    onnxruntime (with its default graph optimizations, ``optimize=True``) fuses QDQ groups into
    integer kernels (QLinearConv, QLinearMatMul, QLinearAdd, QLinearSoftmax, ...) and int4
    weight-only MatMuls into MatMulNBits (int8 activations). To compare like with like, a QDQ
    model is then interpreted as that fused graph (``export.qop.lower`` and
    ``interp.fusions``): ``lower_qdq=None`` does this automatically, ``False`` interprets the
    QDQ graph as float ops (compare with ``optimize=False``). With ``per_node``, intermediate
    tensors are compared on the graph the interpreter runs. Feeds are matched to inputs by
    :func:`~edgequant.runtime.runner.match_feeds`; float feeds of integer-I/O models are
    quantized with the ``edgequant.io`` qparams. ``batch_size``: samples per call for a
    dynamic-batch model (``None``: all at once). ``batch_axes``: input name → the axis its
    samples are on (default: the one symbolic dim, else 0 — as for calibration data).

    ``isolate_integer=True`` separates float noise from integer faults: at each
    :func:`~edgequant.runtime.isolate.float_boundaries` tensor (a Q of a float layer's output —
    an int16 or float layer computed in float by both engines, whose last-ulp rounding differs)
    the interpreter takes onnxruntime's integers, so the differences left are the integer
    arithmetic's own; the boundaries are listed in the report. Without it, those tensors are
    listed as ``float_layers`` (the CLI prints a note naming them).
    """
    if engine != "onnxruntime":
        raise ValueError(f"engine {engine!r} is not allowed: only 'onnxruntime' is supported")
    proto = load_proto(model)
    if lower_qdq is None:
        lower_qdq = optimize and has_qdq_compute(proto)
    target = (_lowered(proto, requantization) if lower_qdq else None) or proto
    names = [o.name for o in target.graph.output]
    node_names = [o for n in topological_order(target.graph) for o in n.output
                  if o and o not in names] if per_node else []
    found = float_boundaries(target)
    cuts = found if isolate_integer else []
    ref = ReferenceRunner(target, requantization, extra_outputs=node_names)
    cut_ref = ReferenceRunner(cut_at(target, cuts), requantization,
                              extra_outputs=node_names) if cuts else ref
    producers = {o: n.op_type for n in target.graph.node for o in n.output}
    scales = _dq_scales(target, ref.interpreter.initializers)
    level = _optimization(optimize)
    if cuts:  # one run of the graph the interpreter runs gives boundaries and results
        ort_outputs = OrtRunner(target, optimization=level,
                                extra_outputs=list(dict.fromkeys([*cuts, *node_names])))
        ort_nodes = None
    else:
        ort_outputs = OrtRunner(proto, optimization=level)
        # extra outputs would block ORT's fusions: intermediate tensors come from the graph
        # we run
        ort_nodes = OrtRunner(target, optimization=level, extra_outputs=node_names) \
            if node_names else None
    outputs: list[list[TensorDiff]] = []
    nodes: list[list[TensorDiff]] = []
    samples = 0
    axes = batch_axes_of(model_inputs(target, batch_axes))
    for batch in batches(match_feeds(ref, feeds), ref.input_shapes, batch_size, axes=axes):
        prepared = ref.prepare_feeds(batch.feeds)
        theirs = dict(zip(ort_outputs.output_names, ort_outputs.run(prepared, raw=True),
                          strict=True))
        ours = dict(zip(cut_ref.output_names, cut_ref.run(
            {**prepared, **{c: theirs[c] for c in cuts}}, raw=True), strict=True))
        if ort_nodes is not None:
            theirs.update(zip(ort_nodes.output_names, ort_nodes.run(prepared, raw=True),
                              strict=True))

        def diff(n: str, count: int | None, ours=ours, theirs=theirs) -> TensorDiff:
            a, b = ours[n], theirs[n]
            if count is not None and np.ndim(a):  # graph outputs: drop the batch padding
                a, b = a[:count], b[:count]
            scale, axis, block = scales.get(n, (None, None, 0))
            return compare(n, a, b, scale, axis, block, producers.get(n, ""), engine)

        outputs.append([diff(n, batch.count) for n in names])
        nodes.append([diff(n, None) for n in node_names])
        samples += batch.count
    report = VerifyReport(
        outputs=[merge_diffs([b[i] for b in outputs]) for i in range(len(names))],
        nodes=[merge_diffs([b[i] for b in nodes]) for i in range(len(node_names))],
        engine=engine, requantization=ref.requantization, lowered=target is not proto,
        reference="interpreter", model=_model_name(model), samples=samples,
        boundaries=tuple(cuts), float_layers=() if isolate_integer else tuple(found))
    logger.info("verify: max %.3g LSB over %d outputs", report.max_lsb, len(names))
    return report


def _model_name(model: Any) -> str:
    return str(model) if isinstance(model, str) or hasattr(model, "__fspath__") else ""
