"""Check a ``.tflite`` file's LiteRT kernels against edgequant's TFLite reference, in LSB.

Each kernel path of :data:`~edgequant.runtime.litert.KERNEL_PATHS` (LiteRT's builtin kernels
and XNNPACK) is compared with the reference executor reproducing that path's integer
arithmetic. Integer outputs are compared as integers; float outputs produced by DEQUANTIZE in
LSB of the dequantized tensor; float outputs of float ops by absolute difference only (the
reference's float kernels are not bit-exact with LiteRT's). The result is the same
:class:`~edgequant.runtime.report.VerifyReport` as ONNX verification, with one diff per output
and kernel path (``engine`` ``litert/builtin`` / ``litert/xnnpack``).

Transformer graphs keep float islands (LayerNorm, Softmax, GELU at 16 bits) between integer
layers; a QUANTIZE of a float op's result is where an engine's last-ulp float rounding enters
the integers (:func:`float_boundaries`). ``isolate_integer=True`` cuts the model there
(:func:`cut_model`): both engines and the reference then take the *same* integers at every
boundary (the reference's own), and the integer tensors read by DEQUANTIZE are compared too
(``report.nodes``), so what differs is integer arithmetic alone.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from edgequant.runtime.batching import batches
from edgequant.runtime.diff import TensorDiff, compare, merge_diffs
from edgequant.runtime.litert import KERNEL_PATHS, LiteRTRunner
from edgequant.runtime.report import VerifyReport
from edgequant.runtime.runner import match_feeds
from edgequant.runtime.tflite_reference import TFLiteReferenceRunner

log = logging.getLogger(__name__)


def _op_name(model, op) -> str:
    from edgequant.interp.tflite.reference import OP_NAMES

    return OP_NAMES.get(model.operatorCodes[op.opcodeIndex].builtinCode, "?")


def _dequantized_scales(ref: TFLiteReferenceRunner) -> dict[str, np.ndarray]:
    """Float tensors written by DEQUANTIZE of a per-tensor integer → that tensor's scale."""
    r = ref.reference
    out = {}
    for op, name in zip(r.sub.operators, r.op_names, strict=True):
        src = r.tensors[int(op.inputs[0])]
        if name == "DEQUANTIZE" and src.scale is not None and src.scale.size == 1:
            out[r.tensors[int(op.outputs[0])].name] = src.scale
    return out


def float_boundaries(model) -> list[int]:
    """Tensor indices written by a QUANTIZE of a float op's result (not of a subgraph input
    or constant): where an engine's float rounding enters the integers."""
    sub = model.subgraphs[0]
    made = {int(i) for op in sub.operators for i in op.outputs}
    found = []
    for op in sub.operators:
        src = int(op.inputs[0]) if len(op.inputs) else -1
        if _op_name(model, op) == "QUANTIZE" and src in made and \
                sub.tensors[src].type in (0, 1):  # FLOAT32 / FLOAT16 input
            found.append(int(op.outputs[0]))
    return found


def integer_exits(model) -> list[int]:
    """Non-constant integer tensors read by DEQUANTIZE (where integer layers hand over to
    float ones), in operator order."""
    sub = model.subgraphs[0]
    made = {int(i) for op in sub.operators for i in op.outputs}
    return list(dict.fromkeys(int(op.inputs[0]) for op in sub.operators
                              if _op_name(model, op) == "DEQUANTIZE" and int(op.inputs[0]) in made))


def cut_model(data: bytes, cuts: list[int], extra_outputs: list[int]) -> bytes:
    """``.tflite`` bytes in which each tensor of ``cuts`` is a subgraph input (its QUANTIZE
    removed) and each of ``extra_outputs`` is also a subgraph output."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from edgequant.export.tflite.builder import load_model

    model = load_model(data)
    sub = model.subgraphs[0]
    cut = set(cuts)
    sub.operators = [op for op in sub.operators if int(op.outputs[0]) not in cut]
    sub.inputs = np.asarray([*map(int, sub.inputs), *cuts], np.int32)
    outs = [int(i) for i in sub.outputs]
    sub.outputs = np.asarray([*outs, *(i for i in extra_outputs if i not in outs)], np.int32)
    for sig in model.signatureDefs or []:
        def tmap(indices):
            maps = []
            for i in indices:
                m = schema.TensorMapT()
                m.name, m.tensorIndex = sub.tensors[int(i)].name, int(i)
                maps.append(m)
            return maps
        sig.inputs, sig.outputs = tmap(sub.inputs), tmap(sub.outputs)
    fb = flatbuffers.Builder(1024)
    fb.Finish(model.Pack(fb), file_identifier=b"TFL3")
    return bytes(fb.Output())


def verify_tflite(path: str | Path, feeds: Mapping[str, np.ndarray], threads: int = 1,
                  batch_size: int | None = None, isolate_integer: bool = False,
                  per_node: bool = False) -> VerifyReport:
    """LiteRT (builtin kernels and XNNPACK) vs the reference executor, per output, in LSB.

    ``feeds``: input name → array, samples on the first axis (float data is quantized with
    the input's qparams when the model takes integers; matched by position when the names
    differ, see :func:`~edgequant.runtime.runner.match_feeds`). A batch-1 model runs sample by
    sample. ``isolate_integer``: cut at the float → integer boundaries (module docstring);
    without it the boundaries are listed as ``report.float_layers``. ``per_node``: every
    operator's output is compared too (``report.nodes``; made a subgraph output of the file
    both engines run, which XNNPACK then writes out).
    """
    path = Path(path)
    first = TFLiteReferenceRunner(path, "builtin")
    model = first.reference.model
    found = float_boundaries(model)
    cuts = found if isolate_integer else []
    exits = integer_exits(model) if isolate_integer else []
    if per_node:
        cut = set(cuts)
        exits = [int(i) for op in model.subgraphs[0].operators for i in op.outputs
                 if int(i) not in cut]  # every output of multi-output ops (SPLIT)
    if not cuts and not exits:
        return _verify(path, path, feeds, threads, batch_size, [], [], found)
    with tempfile.TemporaryDirectory(prefix="edgequant-verify-") as tmp:
        cut_path = Path(tmp) / path.name
        cut_path.write_bytes(cut_model(path.read_bytes(), cuts, exits))
        return _verify(path, cut_path, feeds, threads, batch_size, cuts, exits,
                       [] if cuts else found)


def _verify(path: Path, run_path: Path, feeds, threads, batch_size, cuts: list[int],
            exits: list[int], found: list[int]) -> VerifyReport:
    """Compare LiteRT on ``run_path`` (``path`` itself, or its cut at ``cuts`` with ``exits``
    as extra outputs) with the reference on ``path``. The boundary integers LiteRT takes are
    the reference's own, so the reference's run of the whole file *is* its run of the cut:
    one ``run_all`` gives the boundaries and every tensor compared."""
    full = {k: TFLiteReferenceRunner(path, k) for k in KERNEL_PATHS}
    engines = {k: LiteRTRunner(run_path, threads, xnnpack=v) for k, v in KERNEL_PATHS.items()}
    first = full["builtin"]
    tensors = first.reference.tensors
    outs = [int(i) for i in first.reference.sub.outputs]
    names = [tensors[i].name for i in outs]
    node_names = [tensors[i].name for i in exits if tensors[i].name not in names]
    cut_names = [tensors[i].name for i in cuts]
    feeds = match_feeds(first, feeds)
    producers = {tensors[int(i)].name: _op_name(first.reference.model, op)
                 for op in first.reference.sub.operators for i in op.outputs}
    dq_scales = _dequantized_scales(first)
    parts: dict[tuple[str, str], list[TensorDiff]] = {}
    samples = 0
    for batch in batches(feeds, first.input_shapes, batch_size):
        prepared = first.prepare_feeds(batch.feeds)
        for k, engine in engines.items():
            run_feeds = prepared
            if cuts or exits:
                vals = full[k].reference.run_all(prepared)  # tensor index → value
                want = {tensors[i].name: vals[i] for i in [*outs, *exits]}
                # the boundary integers both sides take: the reference's own
                run_feeds = {**prepared, **{tensors[i].name: vals[i] for i in cuts}}
            else:
                want = dict(zip(names, full[k].run(prepared, raw=True), strict=True))
            got = dict(zip(engine.output_names, engine.run(run_feeds, raw=True), strict=True))
            for name in [*names, *node_names]:
                op, scale = producers.get(name, ""), dq_scales.get(name)
                e, g = want[name], got[name]
                if name in names:
                    e, g = e[:batch.count], g[:batch.count]
                parts.setdefault((k, name), []).append(
                    compare(name, e, g, scale, producer=op, engine=f"litert/{k}"))
        samples += batch.count
    outputs = [merge_diffs(parts[(k, n)]) for n in names for k in engines]
    nodes = [merge_diffs(parts[(k, n)]) for n in node_names for k in engines]
    report = VerifyReport(outputs, nodes, engine="litert", requantization="fixedpoint",
                          reference="tflite reference", model=str(path), samples=samples,
                          boundaries=tuple(cut_names),
                          float_layers=tuple(tensors[i].name for i in found))
    log.info("verify_tflite: max %.3g LSB over %d outputs", report.max_lsb, len(names))
    return report
