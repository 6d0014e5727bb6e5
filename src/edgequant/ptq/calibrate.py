"""Calibration: run the float model in onnxruntime and stream activations into observers.

Memory stays independent of the number of samples: each batch's intermediate tensors are
handed to the observers and dropped before the next batch runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import onnx

from edgequant.errors import CalibrationError
from edgequant.observers import make_observer
from edgequant.ptq.range_sanity import RangeStats, check_ranges
from edgequant.qparams import QParams
from edgequant.runtime.sessions import ort_session
from edgequant.spec import QuantSpec

log = logging.getLogger(__name__)

#: Samples per onnxruntime call when the model's batch dimension is dynamic.
DEFAULT_BATCH = 32

Progress = Callable[[int, int], None]


def calibrate(model: onnx.ModelProto, specs: Mapping[str, QuantSpec],
              batches: Iterable[Mapping[str, np.ndarray]], *, total: int | None = None,
              progress: Progress | None = None,
              tensors: Mapping[str, str] | None = None,
              warnings: list[str] | None = None, strict: bool = False) -> dict[str, QParams]:
    """Observe every tensor in ``specs`` over ``batches``; return qparams per key of ``specs``.

    ``batches`` yields feeds (input name → array with samples on the first axis).
    ``progress(done_samples, total_samples)`` is called after each batch. ``tensors`` maps
    a key of ``specs`` to the tensor it observes when they differ (one tensor observed in
    two precisions at a mixed-precision seam); by default the key is the tensor name.

    Every observed tensor's range is also checked for degeneracy
    (:mod:`~edgequant.ptq.range_sanity`): findings are appended to ``warnings`` (an error
    under ``strict``), and per-tensor ranges a handful of outliers dominate are clipped.
    """
    names = sorted(specs)
    tensors = tensors or {}
    observers = {n: make_observer(specs[n]) for n in names}
    sources = sorted({tensors.get(n, n) for n in names})
    stats = {s: RangeStats() for s in sources}
    sess = ort_session(model, extra_outputs=sources)
    out_names = [o.name for o in sess.get_outputs()]
    wanted = [out_names.index(tensors.get(n, n)) for n in names]
    seen = 0
    for feeds in batches:
        n = len(next(iter(feeds.values())))
        try:
            results = sess.run(None, dict(feeds))
        except Exception as exc:  # onnxruntime raises its own exception types
            raise CalibrationError(f"onnxruntime failed on a calibration batch: {exc}") from exc
        for name, idx in zip(names, wanted, strict=True):
            try:
                observers[name].update(np.asarray(results[idx]))
            except ValueError as exc:
                raise CalibrationError(f"tensor {name!r}: {exc}") from exc
        for src in sources:
            stats[src].update(results[out_names.index(src)], n)
        seen += n
        if progress:
            progress(seen, total or seen)
    if seen == 0:
        raise CalibrationError("the calibration set is empty: give at least one sample")
    log.info("calibrated %d tensors on %d samples", len(names), seen)
    qparams = {n: observers[n].qparams() for n in names}
    order = [i.name for i in model.graph.input] + [o for n in model.graph.node for o in n.output]
    found = check_ranges(stats, specs, qparams, {n: tensors.get(n, n) for n in names}, order,
                         inputs=[i.name for i in model.graph.input], strict=strict)
    for w in found:
        log.info("%s", w)  # the report carries them; the CLI prints report warnings
    if warnings is not None:
        warnings.extend(found)
    return qparams
