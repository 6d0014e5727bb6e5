"""Never slower than float: time the quantized model against its float original and keep
float every quantized region that runs slower (issue 13).

The loop (deterministic given the timings):

1. time float and quantized whole models side by side (:func:`whole_model_speed`, rounds
   interleaved, medians); done when the quantized model is at least as fast;
2. profile both in onnxruntime (:func:`profile_nodes`: per-node kernel medians over runs),
   group the quantized nodes into regions and compare each region's attributed time with the
   float nodes it replaced (:mod:`speed_regions`);
3. re-resolve the recipe with a float-compute rule (:func:`fallback_rule`: ``weight_only``
   int8 weights when the recipe quantizes weights — float speed, int8 size — else
   ``action="float"``) for the clearly slower regions (or, when none is but the whole model
   is clearly slower, the worst one) and quantize again; repeat until faster or nothing is
   left to drop.

The final whole-model timing, the regions kept float and why land in ``report["speed"]``
(and ``report["speedup_vs_float"]``). Timing is noisy on shared machines: regions are
dropped only when clearly slower (:data:`speed_regions.REL_MARGIN`), the whole model counts
as slower below :data:`SLOWER_THRESHOLD` for the fallback drop.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgequant.analysis.latency import measure_interleaved
from edgequant.ptq.speed_regions import (
    RegionTiming,
    compare_regions,
    regions,
    regions_to_drop,
    with_own_report,
)
from edgequant.recipes.recipe import Recipe, Rule
from edgequant.runtime.feeds import batch_axes_of, load_feeds, model_inputs
from edgequant.runtime.sessions import ort_session

log = logging.getLogger(__name__)

#: Below this float/quantized ratio a whole model counts as clearly slower than float.
SLOWER_THRESHOLD = 0.95
#: Whole-model timing rounds (interleaved float / quantized; medians).
REPEATS = 30
#: Profiled runs per model (the first ``PROFILE_WARMUP`` are discarded).
PROFILE_RUNS = 30
PROFILE_WARMUP = 5


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


def whole_model_speed(float_model: onnx.ModelProto, quant_model: onnx.ModelProto,
                      sample: dict[str, np.ndarray] | None = None, repeats: int = REPEATS
                      ) -> tuple[float, float]:
    """(float ms, quantized ms): medians of interleaved batch-1 runs in onnxruntime; NaN when
    the quantized model has integer inputs (its feeds differ)."""
    sessions = {name: ort_session(m) for name, m in (("float", float_model),
                                                     ("quantized", quant_model))}
    feeds = sample_feeds(float_model, sample)
    qin = {i.name: i.type for i in sessions["quantized"].get_inputs()}
    if any("float" not in qin[k] for k in feeds if k in qin):
        return float("nan"), float("nan")
    calls = {name: (lambda s=s: s.run(None, feeds)) for name, s in sessions.items()}
    ms = measure_interleaved(calls, repeats=repeats, warmup=3)
    return ms["float"], ms["quantized"]


def relative_speed(float_model: onnx.ModelProto, quant_model: onnx.ModelProto,
                   sample: dict[str, np.ndarray] | None = None, repeats: int = REPEATS) -> float:
    """float latency / quantized latency (> 1 means the quantized model is faster)."""
    f, q = whole_model_speed(float_model, quant_model, sample, repeats)
    return f / q


def _profile_events(model: Any, feeds: dict[str, np.ndarray], runs: int, warmup: int,
                    threads: int | None) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="eq_profile_") as tmp:
        model = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
        sess = ort_session(model, threads=threads, profile_prefix=Path(tmp) / "ort")
        names = {i.name for i in sess.get_inputs()}
        fd = {k: v for k, v in feeds.items() if k in names}
        for _ in range(warmup + runs):
            sess.run(None, fd)
        path = sess.end_profiling()
        try:
            with open(path) as f:
                events = json.load(f)
        finally:
            os.remove(path)
    kernels = [e for e in events if e.get("cat") == "Node"
               and e.get("name", "").endswith("_kernel_time")]
    per_node: dict[str, list[dict]] = {}
    for e in kernels:
        per_node.setdefault(e["name"], []).append(e)
    return [e for evs in per_node.values() for e in evs[warmup:]]


def profile_nodes(model: Any, feeds: dict[str, np.ndarray], *, runs: int = PROFILE_RUNS,
                  warmup: int = PROFILE_WARMUP, threads: int | None = None) -> dict[str, float]:
    """Median kernel time (ms) per node of onnxruntime's optimized graph of ``model``.

    Names are onnxruntime's: original names for nodes it kept or fused in place, new names
    for nodes it created (see :mod:`edgequant.ptq.speed_regions`). ``model``: ModelProto,
    bytes or path; ``feeds``: one input batch.
    """
    times: dict[str, list[float]] = {}
    for e in _profile_events(model, feeds, runs, warmup, threads):
        times.setdefault(e["name"].removesuffix("_kernel_time"), []).append(e["dur"] / 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def profile_nodes_by_type(model: Any, feeds: dict[str, np.ndarray], *, runs: int = 10,
                          threads: int | None = None) -> dict[str, float]:
    """Per-op-type total of the median kernel times (ms) of one run."""
    med: dict[str, list[float]] = {}
    kind: dict[str, str] = {}
    for e in _profile_events(model, feeds, runs, 2, threads):
        med.setdefault(e["name"], []).append(e["dur"] / 1e3)
        kind[e["name"]] = e["args"]["op_name"]
    out: dict[str, float] = {}
    for name, v in med.items():
        out[kind[name]] = out.get(kind[name], 0.0) + statistics.median(v)
    return out


def fallback_rule(recipe: Recipe, names: tuple[str, ...]) -> Rule:
    """The rule for regions that run slower quantized: float compute. When the recipe
    quantizes weights, they stay int8 in the file (``weight_only``: onnxruntime decompresses
    them once at session start, so the region runs at float speed and the model keeps its
    size); otherwise the nodes stay float."""
    if recipe.mode in ("static", "dynamic") and recipe.weights is not None:
        return Rule(nodes=names, mode="weight_only", name="speed guard: float compute, "
                                                            "int8 weights")
    return Rule(nodes=names, action="float", name="speed guard: float")


def guard(float_model: onnx.ModelProto, first: Any, recipe: Recipe,
          requantize: Callable[[Recipe], Any], sample: dict[str, np.ndarray] | None = None,
          max_rounds: int = 8) -> Any:
    """Run the never-slower-than-float loop; returns the QuantizedModel to keep (``first`` or
    a re-quantized one) with ``report["speed"]`` filled.

    ``requantize(recipe)`` quantizes the same model and data with ``recipe`` (no guard).
    """
    feeds = sample_feeds(float_model, sample)
    qm, kept, rounds = with_own_report(first), [], []
    float_profile: dict[str, float] | None = None
    for _ in range(max_rounds):
        f_ms, q_ms = whole_model_speed(float_model, qm.model, sample)
        rounds.append({"float_ms": _r(f_ms), "quantized_ms": _r(q_ms),
                       "kept_float": [k["region"] for k in kept]})
        if not q_ms == q_ms or f_ms >= q_ms:  # NaN (integer I/O) or already at least as fast
            break
        done = {n for k in kept for n in k["nodes"]}
        quantized = {d.node for d in qm.plan.nodes if d.action == "quantize"} - done
        regs = regions(float_model, quantized)
        if not regs:
            break
        if float_profile is None:
            float_profile = profile_nodes(float_model, feeds)
        timings = compare_regions(regs, profile_nodes(qm.model, feeds), qm.model,
                                  float_profile, float_model)
        drop = regions_to_drop(timings, f_ms / q_ms < SLOWER_THRESHOLD)
        if not drop:
            break
        by_region = {t.region.name: t for t in timings}
        kept += [_kept(by_region[r.name]) for r in drop]
        names = tuple(n for k in kept for n in k["nodes"])
        log.info("speed guard: keeping %d region(s) float: %s", len(drop),
                 ", ".join(r.name for r in drop))
        qm = requantize(recipe.with_rules(fallback_rule(recipe, names)))
    f_ms, q_ms = whole_model_speed(float_model, qm.model, sample)
    speed = {"runtime": "onnxruntime", "batch": 1, "float_ms": _r(f_ms), "quantized_ms": _r(q_ms),
             "speedup": _r(f_ms / q_ms), "kept_float": kept, "rounds": rounds}
    qm.report["speed"] = speed
    qm.report["speedup_vs_float"] = speed["speedup"]
    if speed["speedup"] is not None and speed["speedup"] < SLOWER_THRESHOLD:
        qm.report["warnings"].append(
            f"the quantized model runs at {speed['speedup']:.2f}x the float model's speed in "
            "onnxruntime on this CPU even with slower regions kept float")
    return qm


def run_guard(model: Any, result: Any, recipe: Recipe | str, calibration: Any = None, *,
              quantize_fn: Callable[..., Any], float_model: onnx.ModelProto | None = None,
              batch_axes: Mapping[str, int] | None = None,
              quantize_kwargs: Mapping[str, Any] | None = None,
              runtime: str = "onnxruntime", save_kwargs: Mapping[str, Any] | None = None
              ) -> Any:
    """The guard for a ``quantize_fn(model, recipe, calibration, **quantize_kwargs)`` result
    (``quantize_fn``: ``edgequant.quantize``, passed in to keep imports one-way):
    re-quantizes through the same call with float rules added. ``runtime``: ``"onnxruntime"``
    (profiled, :func:`guard`) or ``"litert"`` (``.tflite`` A/B, ``speed_guard_litert``;
    ``save_kwargs`` such as ``fixed_dims`` go to its ``.tflite`` saves)."""
    from edgequant.graph.io import as_model_proto
    from edgequant.graph.passes.fold import prepare_float

    if runtime not in ("onnxruntime", "litert"):
        raise ValueError(f"runtime {runtime!r} is not allowed: use 'onnxruntime' or 'litert'")
    if float_model is None:
        float_model = prepare_float(as_model_proto(model))
    sample = None
    inputs = model_inputs(float_model, batch_axes)
    if isinstance(calibration, str | os.PathLike | Mapping) and \
            not any(batch_axes_of(inputs).values()):  # the guard slices axis 0
        sample = load_feeds(calibration, inputs, what="calibration data")
    if isinstance(recipe, str):
        from edgequant.recipes.builtin import get_recipe

        recipe = get_recipe(recipe)
    inner = recipe.with_options(speed_guard=False)
    kwargs = dict(quantize_kwargs or {})

    def requantize(r: Recipe) -> Any:
        return quantize_fn(model, r, calibration, check_speed=False, batch_axes=batch_axes,
                           **kwargs)

    if runtime == "litert":
        from edgequant.ptq.speed_guard_litert import guard_litert

        return guard_litert(float_model, result, inner, requantize,
                            sample_feeds(float_model, sample), save_kwargs=dict(save_kwargs or {}))
    return guard(float_model, result, inner, requantize, sample)


def _kept(t: RegionTiming) -> dict[str, Any]:
    return {"region": t.region.name, "nodes": list(t.region.nodes),
            "quantized_ms": round(t.quant_ms, 4), "float_ms": round(t.float_ms, 4),
            "reason": "quantized region slower than float compute in onnxruntime"}


def _r(v: float) -> float | None:
    return None if v != v else round(float(v), 4)
