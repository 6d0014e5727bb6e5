"""Check a ``.tflite`` file's LiteRT kernels against edgequant's TFLite reference, in LSB.

Each kernel path of :data:`~edgequant.runtime.litert.KERNEL_PATHS` (LiteRT's builtin kernels
and XNNPACK) is compared with the reference executor reproducing that path's integer
arithmetic. Integer outputs are compared as integers; float outputs produced by DEQUANTIZE in
LSB of the dequantized tensor; float outputs of float ops by absolute difference only (the
reference's float kernels are not bit-exact with LiteRT's). The result is the same
:class:`~edgequant.runtime.report.VerifyReport` as ONNX verification, with one diff per output
and kernel path (``engine`` ``litert/builtin`` / ``litert/xnnpack``).
"""

from __future__ import annotations

import logging
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


def _output_facts(ref: TFLiteReferenceRunner) -> dict[str, tuple[str, np.ndarray | None]]:
    """Per output: (producing op name, scale of the integer tensor DEQUANTIZEd into it)."""
    from edgequant.interp.tflite.reference import OP_NAMES

    r = ref.reference
    producer = {int(op.outputs[0]): op for op in r.sub.operators}
    facts = {}
    for i in r.sub.outputs:
        op = producer.get(int(i))
        name = OP_NAMES[r.model.operatorCodes[op.opcodeIndex].builtinCode] if op is not None \
            else ""
        scale = None
        if name == "DEQUANTIZE" and r.tensors[int(i)].dtype.kind == "f":
            src = r.tensors[int(op.inputs[0])]
            scale = None if src.scale is None or src.scale.size != 1 else src.scale
        facts[r.tensors[int(i)].name] = (name, scale)
    return facts


def verify_tflite(path: str | Path, feeds: Mapping[str, np.ndarray], threads: int = 1,
                  batch_size: int | None = None) -> VerifyReport:
    """LiteRT (builtin kernels and XNNPACK) vs the reference executor, per output, in LSB.

    ``feeds``: input name → array, samples on the first axis (float data is quantized with
    the input's qparams when the model takes integers; matched by position when the names
    differ, see :func:`~edgequant.runtime.runner.match_feeds`). A batch-1 model runs sample by sample.
    """
    path = Path(path)
    refs = {k: TFLiteReferenceRunner(path, k) for k in KERNEL_PATHS}
    engines = {k: LiteRTRunner(path, threads, xnnpack=v) for k, v in KERNEL_PATHS.items()}
    first = refs["builtin"]
    feeds = match_feeds(first, feeds)
    facts = _output_facts(first)
    parts: dict[tuple[str, str], list[TensorDiff]] = {}
    samples = 0
    for batch in batches(feeds, first.input_shapes, batch_size):
        prepared = first.prepare_feeds(batch.feeds)
        for k, engine in engines.items():
            want = refs[k].run(prepared, raw=True)
            got = engine.run(prepared, raw=True)
            for name, e, g in zip(first.output_names, want, got, strict=True):
                op, scale = facts[name]
                parts.setdefault((k, name), []).append(
                    compare(name, e[:batch.count], g[:batch.count], scale, producer=op,
                            engine=f"litert/{k}"))
        samples += batch.count
    outputs = [merge_diffs(parts[(k, n)]) for n in first.output_names for k in engines]
    report = VerifyReport(outputs, engine="litert", requantization="fixedpoint",
                          reference="tflite reference", model=str(path), samples=samples)
    log.info("verify_tflite: max %.3g LSB over %d outputs", report.max_lsb,
             len(first.output_names))
    return report
