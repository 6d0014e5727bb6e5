"""Never slower than float in LiteRT: per-region A/B timing of ``.tflite`` exports.

LiteRT has no per-op profile from Python, so each region is judged by exporting the model
with that region kept float and timing it against the current model (rounds interleaved,
medians; :func:`analysis.latency.measure_interleaved`). A region goes float only when the
model without it is clearly faster (by :data:`speed_regions.REL_MARGIN` plus
:data:`speed_regions.ABS_MARGIN_MS`); one region per round, the largest gain first, until the
model is at least as fast as the float ``.tflite`` or no region helps. The result lands in
``report["speed"]`` like the onnxruntime guard's (``"runtime": "litert"``).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgequant.analysis.latency import measure_interleaved
from edgequant.errors import EdgequantError
from edgequant.ptq.speed_regions import ABS_MARGIN_MS, REL_MARGIN, regions, with_own_report
from edgequant.recipes.builtin import get_recipe
from edgequant.recipes.recipe import Recipe, Rule

log = logging.getLogger(__name__)

#: Interleaved LiteRT rounds per comparison (batch-1 runs of small models take microseconds).
REPEATS = 200


def _time(paths: dict[str, Path], feeds: dict[str, np.ndarray], repeats: int) -> dict[str, float]:
    from edgequant.runtime.litert import LiteRTRunner

    runners = {k: LiteRTRunner(p) for k, p in paths.items()}
    calls = {k: (lambda r=r: r.run(feeds)) for k, r in runners.items()}
    return measure_interleaved(calls, repeats=repeats, warmup=10)


def guard_litert(float_model: onnx.ModelProto, first: Any, recipe: Recipe,
                 requantize: Callable[[Recipe], Any], feeds: dict[str, np.ndarray],
                 repeats: int = REPEATS, max_rounds: int = 8,
                 save_kwargs: dict[str, Any] | None = None) -> Any:
    """The LiteRT version of :func:`ptq.speed_guard.guard`: returns the QuantizedModel to
    save as ``.tflite`` with ``report["speed"]`` filled. ``feeds``: one batch-1 input;
    ``save_kwargs``: passed to every ``.tflite`` save (``fixed_dims``). When the model cannot
    be timed in LiteRT the guard is skipped with a warning in the report."""
    try:
        return _guard_litert(float_model, first, recipe, requantize, feeds, repeats,
                             max_rounds, dict(save_kwargs or {}))
    except (EdgequantError, ValueError, RuntimeError, ImportError) as exc:
        log.warning("LiteRT speed guard skipped: %s", exc)
        qm = with_own_report(first)
        qm.report["warnings"].append(f"LiteRT speed guard skipped: {str(exc).splitlines()[0]}")
        return qm


def _guard_litert(float_model, first, recipe, requantize, feeds, repeats, max_rounds,
                  save_kwargs) -> Any:
    with tempfile.TemporaryDirectory(prefix="eq_litert_guard_") as tmp:
        root = Path(tmp)
        # the float model through the same exporter (the fp32 recipe only cleans the graph)
        float_path = requantize(get_recipe("fp32")).save(root / "float.tflite",
                                                         **save_kwargs)
        qm, kept, rounds = with_own_report(first), [], []
        for k in range(max_rounds):
            cur = qm.save(root / f"round{k}.tflite", **save_kwargs)
            ms = _time({"float": float_path, "quantized": cur}, feeds, repeats)
            rounds.append({"float_ms": round(ms["float"], 4), "quantized_ms":
                           round(ms["quantized"], 4), "kept_float": [r["region"] for r in kept]})
            if ms["quantized"] <= ms["float"]:
                break
            done = {n for r in kept for n in r["nodes"]}
            quantized = {d.node for d in qm.plan.nodes if d.action == "quantize"} - done
            cands = {}
            for reg in regions(float_model, quantized):
                names = (*[n for r in kept for n in r["nodes"]], *reg.nodes)
                cand = requantize(recipe.with_rules(Rule(nodes=names, action="float")))
                cands[reg.name] = (reg, cand, cand.save(root / f"round{k}_{len(cands)}.tflite",
                                                            **save_kwargs))
            if not cands:
                break
            ab = _time({"current": cur, **{n: c[2] for n, c in cands.items()}}, feeds, repeats)
            gains = sorted(((ab["current"] - ab[n], n) for n in cands
                            if ab["current"] > ab[n] * (1 + REL_MARGIN) + ABS_MARGIN_MS),
                           key=lambda g: (-g[0], g[1]))
            if not gains:
                break
            reg, qm, _ = cands[gains[0][1]]
            kept.append({"region": reg.name, "nodes": list(reg.nodes),
                         "quantized_ms": round(ab["current"], 4),
                         "float_ms": round(ab[reg.name], 4),
                         "reason": "model faster in LiteRT with this region float"})
            log.info("LiteRT speed guard: keeping region %s float", reg.name)
        final = qm.save(root / "final.tflite", **save_kwargs)
        ms = _time({"float": float_path, "quantized": final}, feeds, repeats)
    speed = {"runtime": "litert", "batch": 1, "float_ms": round(ms["float"], 4),
             "quantized_ms": round(ms["quantized"], 4),
             "speedup": round(ms["float"] / ms["quantized"], 4), "kept_float": kept,
             "rounds": rounds}
    qm.report["speed"] = speed
    qm.report["speedup_vs_float"] = speed["speedup"]
    return qm
