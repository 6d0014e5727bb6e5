"""``quantize --recipe auto --max-drop X``: the smallest (or fastest) per-layer mix of int4 /
int8 / int16 activations / fp16 / float that stays within an accuracy budget.

The search, every step a real quantized model scored on the *search* data:

1. uniform int8 (``w8a8``); when it drops more than the budget, **promote** layers in order of
   sensitivity per unit of cost (``impact`` from :mod:`edgequant.analysis.sensitivity`, cost =
   extra weight bytes, or the layer's float ms from onnxruntime's profiler for
   ``objective="latency"``): to int16 activations when the layer's fix says its activations
   are the weak side, else to fp16 (size) / float (latency); one more layer per step at
   first, then 25 % more per step, until the budget is met;
2. (``objective="size"``) **demote** int8 layers to int4 weights, least harmful per byte saved
   first (the input-weighted int4 weight SQNR, or the measured ``int4`` sweep when asked
   for), in halving chunks; a chunk stays only if the budget still holds.

Every model tried is a candidate; the chosen one is the smallest (or fastest: latencies of the
candidates within budget are measured side by side) within the budget on the search data, then
**checked on held-apart data** (``meets_budget_held_apart``), never assumed. The choice is an
ordinary recipe (``w8a8`` plus one rule per precision) the user can edit and re-run.

``AutoResult.to_dict()``: ``{"metric", "max_drop", "objective", "chosen", "float_bytes",
"meets_budget_held_apart", "candidates": [Candidate.to_dict(), ...]}`` where each candidate is
``{"name", "recipe" (recipe JSON as a dict), "precisions" ({layer: precision}), "bytes",
"search_drop", "held_apart_drop", "held_apart_score", "latency_ms", "meets_budget", "kind"}``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgequant.analysis.budget import Scorer, check_budget, metric_name
from edgequant.analysis.cache import ResultCache
from edgequant.analysis.evaluator import Evaluator
from edgequant.analysis.latency import measure_interleaved
from edgequant.analysis.layers import Layer, find_layers, mixed_recipe
from edgequant.analysis.sensitivity import analyze, load_model_arg, make_evaluator
from edgequant.analysis.sweep import Progress, cached_sweep
from edgequant.ptq.speed_guard import profile_nodes
from edgequant.recipes.builtin import get_recipe
from edgequant.recipes.recipe import Recipe
from edgequant.runtime.sessions import ort_session

log = logging.getLogger(__name__)

OBJECTIVES = ("size", "latency")
#: Upper bound on search steps (promotion + demotion) after the sweeps.
MAX_STEPS = 40
#: Interleaved batch-1 latency rounds per candidate.
LATENCY_REPEATS = 10


@dataclass
class Candidate:
    """One evaluated mix (see the module docstring for the dict form)."""

    name: str
    kind: str
    recipe: dict
    precisions: dict[str, str]
    bytes: int
    search_drop: float
    held_apart_drop: float | None
    held_apart_score: float | None
    meets_budget: bool
    latency_ms: float | None = None

    def to_dict(self) -> dict:
        """JSON-able fields."""
        return asdict(self)


@dataclass
class AutoResult:
    """The candidates tried, the chosen one and the held-apart check of it."""

    metric: str
    max_drop: float
    objective: str
    chosen: str
    float_bytes: int
    meets_budget_held_apart: bool
    candidates: list[Candidate] = field(default_factory=list)

    @property
    def choice(self) -> Candidate:
        """The chosen candidate."""
        return next(c for c in self.candidates if c.name == self.chosen)

    @property
    def recipe(self) -> Recipe:
        """The chosen mix as a recipe."""
        return Recipe.from_json(json.dumps(self.choice.recipe))

    def to_dict(self) -> dict:
        """The stable JSON form."""
        d = {k: v for k, v in asdict(self).items() if k != "candidates"}
        d["candidates"] = [c.to_dict() for c in self.candidates]
        return d


def check_objective(objective: str) -> str:
    """``objective`` must be one of :data:`OBJECTIVES`."""
    if objective not in OBJECTIVES:
        raise ValueError(f"--objective {objective!r} is not allowed: use one of {list(OBJECTIVES)}")
    return objective


class _Search:
    """Evaluates mixes (through the cache / Ray sweep) and records them as candidates."""

    def __init__(self, ev: Evaluator, layers: list[Layer], max_drop: float, cache: ResultCache,
                 workers: int, ray_address: str | None) -> None:
        self.ev, self.layers, self.max_drop = ev, layers, max_drop
        self.cache, self.workers, self.ray_address = cache, workers, ray_address
        self.base = get_recipe("w8a8")
        self.candidates: list[Candidate] = []

    def try_mixes(self, mixes: list[tuple[str, str, dict[str, str] | Recipe]]) -> list[Candidate]:
        recipes = [m if isinstance(m, Recipe)
                   else mixed_recipe(self.base, self.layers, m, f"auto-{name}")
                   for name, _, m in mixes]
        evals = cached_sweep(self.ev, recipes, self.cache, workers=self.workers,
                             ray_address=self.ray_address)
        out = []
        for (name, kind, m), rec, e in zip(mixes, recipes, evals, strict=True):
            prec = m if isinstance(m, dict) else {}
            full = {la.node: prec.get(la.node, "int8") for la in self.layers} \
                if isinstance(m, dict) else {}
            c = Candidate(name, kind, json.loads(rec.to_json()), full, e.bytes, e.drop,
                          e.check_drop, e.check_score, e.drop <= self.max_drop)
            self.candidates.append(c)
            out.append(c)
        return out

    def try_mix(self, name: str, kind: str, mix: dict[str, str]) -> Candidate:
        return self.try_mixes([(name, kind, mix)])[0]


def auto_recipe(model: Any, calibration: Any, data: Any, check: Any, *, max_drop: float,
                labels: np.ndarray | None = None, check_labels: np.ndarray | None = None,
                metric: str | Scorer = "agreement", objective: str = "size",
                workers: int = 1, ray_address: str | None = None,
                cache_dir: str | os.PathLike | bool | None = True,
                progress: Progress | None = None, max_steps: int = MAX_STEPS,
                latency_repeats: int = LATENCY_REPEATS,
                sweeps: tuple[str, ...] = ("single", "all_but_one")) -> AutoResult:
    """Search a per-layer mix within ``max_drop`` points of ``metric`` (see the module doc).

    ``data`` is what the search scores on; ``check`` is held-apart data the chosen mix is
    checked on (required: a budget met only on the data it was tuned on is not met).
    ``sweeps`` adds ``"int4"`` to order int4 demotions by measured drops instead of the
    int4 weight SQNR.
    """
    max_drop = check_budget(max_drop)
    check_objective(objective)
    if check is None:
        raise ValueError("--recipe auto needs held-apart evaluation data (--eval-data DATA.npz): "
                         "the chosen mix is checked on data the search did not see")
    proto = load_model_arg(model, calibration)
    ev = make_evaluator(proto, calibration, data, labels=labels, metric=metric, check=check,
                        check_labels=check_labels)
    search_ev = ev.without_check()
    sens = analyze(proto, calibration, data, labels=labels, metric=metric,
                   sweeps=sweeps, workers=workers,
                   ray_address=ray_address, cache_dir=cache_dir, progress=progress,
                   evaluator=search_ev)
    ev.share_table(search_ev)
    rows = {r.node: r for r in sens.layers}
    layers = find_layers(ev.float_model, get_recipe("w8a8"))
    s = _Search(ev, layers, max_drop, ResultCache(cache_dir), workers, ray_address)
    fp32, int8, *_ = s.try_mixes([("float", "uniform", get_recipe("fp32")),
                                  ("uniform int8", "uniform", {}),
                                  ("uniform fp16", "uniform", get_recipe("fp16")),
                                  ("uniform int16 act", "uniform", get_recipe("w8a16"))])
    cost = _layer_costs(ev, layers, objective)
    mix: dict[str, str] = {}
    steps, current = 0, int8
    order = sorted(layers, key=lambda la: -rows[la.node].impact / cost[la.node])
    while order and not current.meets_budget and steps < max_steps:
        # one layer at a time at first, then 25 % more each step (large models converge in
        # tens of steps, not hundreds)
        for la in order[: max(1, len(mix) // 4)]:
            weak_acts = rows[la.node].suggestion in ("int16 activations", "percentile/MSE range")
            mix[la.node] = "int16" if weak_acts else ("fp16" if objective == "size" else "float")
        order = [la for la in order if la.node not in mix]
        steps += 1
        current = s.try_mix(f"promote-{steps}", "promote", dict(mix))
    if objective == "size" and current.meets_budget:
        _demote(s, rows, dict(current.precisions), sens.base_drop, max_steps - steps)
    within = [c for c in s.candidates if c.meets_budget]
    _measure_latency(ev, s.candidates, within, latency_repeats)
    if objective == "size":
        best = min(within, key=lambda c: (c.bytes, c.search_drop))
    else:
        best = min(within, key=lambda c: (c.latency_ms or float("inf"), c.bytes))
    held = best.held_apart_drop is not None and best.held_apart_drop <= max_drop
    log.info("auto: chose %s (%d bytes, search drop %.3f, held-apart drop %s)", best.name,
             best.bytes, best.search_drop, best.held_apart_drop)
    return AutoResult(metric_name(metric), max_drop, objective, best.name, fp32.bytes, held,
                      s.candidates)


def _layer_costs(ev: Evaluator, layers: list[Layer], objective: str) -> dict[str, float]:
    """Cost of promoting each layer: extra weight bytes (fp16 vs int8) or float ms."""
    if objective == "size":
        return {la.node: max(1.0, float(la.params)) for la in layers}
    one = {k: v[:1] for k, v in ev.data.items()}
    prof = profile_nodes(ev.float_model, one, threads=1)
    out = {}
    for la in layers:
        keys = (*la.nodes, la.output)
        ms = sum(v for k, v in prof.items() if any(n and n in k for n in keys))
        out[la.node] = max(ms, 1e-3)
    return out


def _demote(s: _Search, rows: dict, mix: dict[str, str], base_drop: float, budget: int) -> None:
    """Move int8 layers to int4 weights in halving chunks while the budget holds."""
    eligible = [la for la in s.layers if mix.get(la.node, "int8") == "int8"]
    eligible.sort(key=lambda la: (_int4_harm(rows[la.node], base_drop) / max(1, la.params),
                                  la.node))
    i, k, steps = 0, max(1, len(eligible) // 2), 0
    while i < len(eligible) and steps < budget:
        trial = dict(mix)
        for la in eligible[i:i + k]:
            trial[la.node] = "int4"
        steps += 1
        c = s.try_mix(f"int4-{steps}", "demote", trial)
        if c.meets_budget:
            mix, i = trial, i + k
            k = max(1, min(k, len(eligible) - i))
        elif k == 1:
            i += 1
        else:
            k = max(1, k // 2)


def _int4_harm(row, base_drop: float) -> float:
    """Measured extra drop of int4 weights (the ``int4`` sweep) or, without it, the relative
    noise power of the input-weighted int4 weight SQNR."""
    if row.int4_drop is not None:
        return max(0.0, row.int4_drop - base_drop)
    if row.weight_sqnr_int4_db is None:
        return float("inf")
    return 10.0 ** (-row.weight_sqnr_int4_db / 10.0)


def _measure_latency(ev: Evaluator, candidates: list[Candidate], within: list[Candidate],
                     repeats: int) -> None:
    """Batch-1 latency (ms, one thread, interleaved) of the candidates within budget and of
    the uniform references."""
    if repeats < 1:
        return
    pick = {c.name: c for c in candidates if c in within or c.kind == "uniform"}
    one = {k: v[:1] for k, v in ev.data.items()}
    calls = {}
    for name, c in pick.items():
        qm = ev.quantize(Recipe.from_json(json.dumps(c.recipe)))
        sess = ort_session(qm.model, threads=1)
        calls[name] = lambda sess=sess: sess.run(None, one)
    ms = measure_interleaved(calls, repeats=repeats, warmup=2)
    for name, c in pick.items():
        c.latency_ms = ms[name]
