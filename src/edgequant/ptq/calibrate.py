"""Calibration: run the float model in onnxruntime and stream activations into observers.

Memory stays independent of the number of samples: each batch's intermediate tensors are
handed to the observers and dropped before the next batch runs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import onnx

from edgequant.errors import CalibrationError
from edgequant.observers import make_observer
from edgequant.ptq.range_sanity import RangeStats, check_ranges
from edgequant.qparams import QParams
from edgequant.runtime.batching import batches as sample_batches
from edgequant.runtime.batching import num_samples
from edgequant.runtime.feeds import batch_axes_of, load_feeds, model_inputs
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


def calibration_batches(model: onnx.ModelProto, calibration, batch_size: int = DEFAULT_BATCH,
                        batch_axes: Mapping[str, int] | None = None
                        ) -> tuple[Iterable[dict[str, np.ndarray]], int | None]:
    """Checked feeds to run ``model`` on, and the sample count when known.

    ``calibration`` is a DATA.npz path (streamed from disk, one batch in memory) or a dict
    (split into batches of ``batch_size`` on each input's batch axis) or an iterable of dicts,
    each run as given — the way to calibrate on mixed sequence lengths (every batch padded to
    its own length). The one home for turning calibration data into batches.
    """
    inputs = model_inputs(model, batch_axes)
    if isinstance(calibration, str | os.PathLike):  # streamed from disk, one batch in memory
        from edgequant.runtime.feed_stream import stream_feeds

        stream = stream_feeds(calibration, inputs, batch_size)

        def streamed() -> Iterable[dict[str, np.ndarray]]:
            for feeds in stream:
                check_shared_dims(feeds, model, "calibration data")
                yield feeds
        return streamed(), stream.total
    if isinstance(calibration, Mapping):
        feeds = load_feeds(calibration, inputs, what="calibration data")
        axes = batch_axes_of(inputs)
        check_shared_dims(feeds, model, "calibration data")
        batches = (b.feeds for b in sample_batches(
            feeds, {i.name: i.shape for i in inputs}, batch_size, pad=False, axes=axes))
        return batches, num_samples(feeds, axes)

    def checked(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = load_feeds(batch, inputs, what="calibration batch")
        check_shared_dims(feeds, model, "calibration batch")
        return feeds
    return (checked(b) for b in calibration), None


def check_shared_dims(feeds: Mapping[str, np.ndarray], model: onnx.ModelProto, what: str) -> None:
    """Inputs declaring the same named dim (``sequence``) must agree on its size: a batch whose
    ``input_ids`` are 128 long and ``attention_mask`` 64 long is refused, naming both."""
    sizes: dict[str, tuple[str, int]] = {}
    for vi in model.graph.input:
        if vi.name not in feeds:
            continue
        arr = np.asarray(feeds[vi.name])
        for axis, d in enumerate(vi.type.tensor_type.shape.dim):
            if not d.dim_param or axis >= arr.ndim:
                continue
            seen = sizes.setdefault(d.dim_param, (vi.name, arr.shape[axis]))
            if seen[1] != arr.shape[axis]:
                raise CalibrationError(
                    f"{what}: input {vi.name!r} has {d.dim_param!r} = {arr.shape[axis]} (axis "
                    f"{axis}) but input {seen[0]!r} has {seen[1]}; inputs sharing a named dim "
                    "must agree (pad every input of a batch to one length)")
