"""A quick side-by-side latency check of a quantized model against its float original, so
``quantize`` never hands back a slower model without saying so."""

from __future__ import annotations

import numpy as np
import onnx

from edgequant.analysis.latency import measure_interleaved
from edgequant.runtime.feeds import model_inputs
from edgequant.runtime.sessions import ort_session

#: Below this, a quantized model counts as slower than float (timing noise on a shared box).
SLOWER_THRESHOLD = 0.95


def sample_feeds(model: onnx.ModelProto, sample: dict[str, np.ndarray] | None = None
                 ) -> dict[str, np.ndarray]:
    """One batch-1 input: ``sample`` when given, else ones (symbolic dims set to 1)."""
    if sample:
        return {k: v[:1] for k, v in sample.items()}
    feeds = {}
    for spec in model_inputs(model):
        shape = tuple(d if d else 1 for d in spec.shape)
        feeds[spec.name] = np.ones(shape, dtype=spec.dtype)
    return feeds


def relative_speed(float_model: onnx.ModelProto, quant_model: onnx.ModelProto,
                   sample: dict[str, np.ndarray] | None = None, repeats: int = 30) -> float:
    """float latency / quantized latency (> 1 means the quantized model is faster)."""
    sessions = {name: ort_session(m) for name, m in (("float", float_model),
                                                     ("quantized", quant_model))}
    feeds = sample_feeds(float_model, sample)
    qin = {i.name: i.type for i in sessions["quantized"].get_inputs()}
    if any("float" not in qin[k] for k in feeds if k in qin):
        return float("nan")  # integer I/O: inputs differ; compare runs quantize them itself
    calls = {name: (lambda s=s: s.run(None, feeds)) for name, s in sessions.items()}
    ms = measure_interleaved(calls, repeats=repeats, warmup=3)
    return ms["float"] / ms["quantized"]

