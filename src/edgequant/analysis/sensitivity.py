"""``edgequant analyze``: which layers hurt when quantized, by how much, and what to do.

For every layer (a weighted node and its fused activation, :mod:`edgequant.analysis.layers`)
three sweeps of real quantized models, each scored on ``data`` against the float model:

* ``single``: only this layer quantized (as the base recipe says), the rest float;
* ``all_but_one``: the base recipe everywhere except this layer, kept float — its ``gain`` is
  how much of the base recipe's drop keeping this one layer float wins back;
* ``int4`` (optional): the base recipe everywhere, this layer with int4 weights.

Plus per-tensor statistics (weight / input-activation SQNR, ranges, outlier ratio) and a
suggested fix per layer. Layers are ranked by ``impact = max(single_drop, gain)``.

``SensitivityReport.to_dict()`` is the stable JSON the CLI prints (``--json``) and the HTML
report reads: ``{"model", "metric", "recipe", "samples", "float_score", "base_drop",
"base_bytes", "float_bytes", "sweeps", "layers": [LayerSensitivity.to_dict(), ...]}``,
layers ranked (rank 1 = most sensitive). Drops are in metric points
(:mod:`edgequant.analysis.budget`). Results are cached (:mod:`edgequant.analysis.cache`): a
second run with the same model, data and options reads everything back.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import onnx

from edgequant.analysis.budget import Scorer, metric_name
from edgequant.analysis.cache import ResultCache, cache_key
from edgequant.analysis.evaluator import Evaluator
from edgequant.analysis.layers import Layer, all_but, find_layers, only_layer
from edgequant.analysis.sweep import Progress, cached_sweep, check_workers
from edgequant.analysis.tensor_stats import layer_stats
from edgequant.recipes.builtin import get_recipe
from edgequant.recipes.plan import resolve
from edgequant.recipes.recipe import Recipe
from edgequant.spec import PerTensor

log = logging.getLogger(__name__)

SWEEPS = ("single", "all_but_one", "int4")
DEFAULT_SWEEPS = ("single", "all_but_one")
#: A layer whose impact stays below this many points needs no fix.
NEGLIGIBLE_POINTS = 0.1
#: ``absmax / p99.9`` above this: a few outliers set the range (clip them: percentile / MSE).
OUTLIER_RATIO = 8.0
#: Weights count as the weaker side when their SQNR is this many dB below the activation's.
WEIGHT_WORSE_DB = 3.0

FIXES = ("none", "keep float", "int16 activations", "per-channel", "percentile/MSE range",
         "4→8 bits")


@dataclass
class LayerSensitivity:
    """One layer's sweep results (points), tensor statistics and suggested fix."""

    node: str
    op_type: str
    nodes: list[str]
    weight: str
    params: int
    single_drop: float
    all_but_one_drop: float
    gain: float
    int4_drop: float | None
    weight_sqnr_db: float | None
    weight_sqnr_int4_db: float | None
    weight_absmax: float
    weight_outlier_ratio: float
    activation_sqnr_db: float | None
    activation_min: float | None
    activation_max: float | None
    activation_outlier_ratio: float | None
    impact: float
    suggestion: str
    reason: str
    rank: int = 0

    def to_dict(self) -> dict:
        """JSON-able fields (stable names; see the module docstring)."""
        return asdict(self)


@dataclass
class SensitivityReport:
    """Ranked per-layer sensitivity of one model under one base recipe."""

    model: str
    metric: str
    recipe: str
    samples: int
    float_score: float
    base_drop: float
    base_bytes: int
    float_bytes: int
    sweeps: list[str]
    layers: list[LayerSensitivity] = field(default_factory=list)
    cached: bool = False

    def to_dict(self) -> dict:
        """The stable JSON form (``cached`` is left out: it describes this run only)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("layers",
                                                                              "cached")}
        d["layers"] = [layer.to_dict() for layer in self.layers]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SensitivityReport:
        """Inverse of :meth:`to_dict`."""
        layers = [LayerSensitivity(**x) for x in d["layers"]]
        return cls(**{k: v for k, v in d.items() if k != "layers"}, layers=layers)

    def top(self, k: int = 5) -> list[LayerSensitivity]:
        """The ``k`` most sensitive layers."""
        return self.layers[:k]


def suggest(impact: float, w_sqnr: float | None, a_sqnr: float | None, a_ratio: float | None,
            base: Recipe) -> tuple[str, str]:
    """(fix, reason) for one layer; the rules are listed in docs/mixed_precision.md."""
    if impact < NEGLIGIBLE_POINTS:
        return "none", f"impact {impact:.3f} < {NEGLIGIBLE_POINTS} points"
    weights_worse = w_sqnr is not None and (a_sqnr is None or w_sqnr + WEIGHT_WORSE_DB < a_sqnr)
    if weights_worse:
        spec = base.weights
        if spec is not None and isinstance(spec.granularity, PerTensor):
            return "per-channel", f"weight SQNR {w_sqnr:.1f} dB with per-tensor scales"
        if spec is not None and spec.qtype.bits < 8:
            return "4→8 bits", f"weight SQNR {w_sqnr:.1f} dB at {spec.qtype.bits} bits"
        return "keep float", f"weight SQNR {w_sqnr:.1f} dB at 8 bits (fp16 keeps it small)"
    if a_ratio is not None and a_ratio >= OUTLIER_RATIO:
        return "percentile/MSE range", (f"input activation absmax is {a_ratio:.0f}x its "
                                        f"p99.9: outliers set the range")
    sq = "n/a" if a_sqnr is None else f"{a_sqnr:.1f} dB"
    return "int16 activations", f"input activation SQNR {sq} without outliers"


def load_model_arg(model: Any, calibration: Any, example_inputs: Any = None) -> onnx.ModelProto:
    """An ONNX path / proto as-is; an ``nn.Module`` exported through ``edgequant.torch``
    (example input: ``example_inputs`` or the first calibration sample)."""
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, str | os.PathLike):
        from edgequant.graph.io import load_model

        return load_model(model)
    if hasattr(model, "forward") and hasattr(model, "parameters"):
        import torch

        from edgequant.torch.export import export_onnx

        if example_inputs is None:
            arrays = list(_arrays(calibration).values())
            example_inputs = tuple(torch.from_numpy(np.asarray(a[:1])) for a in arrays)
        return export_onnx(model, example_inputs)
    raise TypeError(f"model of type {type(model).__name__} is not allowed: use an .onnx path, "
                    "onnx.ModelProto or torch.nn.Module")


def _arrays(data: Any) -> dict[str, np.ndarray]:
    if data is None:
        return {}
    if isinstance(data, str | os.PathLike):
        from edgequant.runtime.feeds import read_npz

        return read_npz(data)
    if isinstance(data, np.ndarray):
        return {"input": data}
    return dict(data)


def make_evaluator(model: onnx.ModelProto, calibration, data, *, labels=None,
                   metric: str | Scorer = "agreement", check=None, check_labels=None,
                   recipe: Recipe | None = None) -> Evaluator:
    """An :class:`Evaluator` from paths or dicts (a lone array feeds the only input)."""
    return Evaluator(model, _feeds(model, calibration), _feeds(model, data), labels=labels,
                     metric=metric, check=_feeds(model, check) if check is not None else None,
                     check_labels=check_labels, recipes=(recipe,) if recipe else ())


def _feeds(model: onnx.ModelProto, data: Any) -> dict[str, np.ndarray]:
    arrays = _arrays(data)
    real = [i.name for i in model.graph.input
            if i.name not in {t.name for t in model.graph.initializer}]
    if len(arrays) == 1 and len(real) == 1 and real[0] not in arrays:
        return {real[0]: next(iter(arrays.values()))}
    return arrays


def analyze(model: Any, calibration: Any, data: Any, *, labels: np.ndarray | None = None,
            metric: str | Scorer = "agreement", recipe: str | Recipe = "w8a8",
            sweeps: tuple[str, ...] = DEFAULT_SWEEPS, workers: int = 1,
            ray_address: str | None = None,
            cache_dir: str | os.PathLike | bool | None = True,
            example_inputs: Any = None, progress: Progress | None = None,
            evaluator: Evaluator | None = None) -> SensitivityReport:
    """Per-layer sensitivity of ``model`` (ONNX path / proto, or ``nn.Module``).

    ``calibration`` sets the activation ranges, ``data`` is what the drops are measured on
    (npz paths, dicts or a lone array); ``labels`` enables ``metric="accuracy"``.
    ``workers > 1`` runs the sweeps on Ray; ``cache_dir``: a folder, ``True`` (default:
    ``~/.cache/edgequant``) or ``None`` (no cache).
    """
    check_workers(workers)
    bad = [s for s in sweeps if s not in SWEEPS]
    if bad or not sweeps:
        raise ValueError(f"sweep(s) {bad} not allowed: use some of {list(SWEEPS)}")
    base = get_recipe(recipe) if isinstance(recipe, str) else recipe
    if base.mode != "static":
        raise ValueError(f"analyze needs a static base recipe (w8a8, w8a16, w4a8, a .json with "
                         f"mode static); {base.name!r} is {base.mode}")
    proto = load_model_arg(model, calibration, example_inputs)
    cache = ResultCache(cache_dir)
    from edgequant.analysis.cache import feeds_digest

    key = cache_key(proto.SerializeToString(), feeds_digest(_feeds(proto, calibration)),
                    feeds_digest(_feeds(proto, data)),
                    None if labels is None else feeds_digest({"l": np.asarray(labels)}),
                    metric_name(metric), base.to_json(), list(sweeps))
    hit = cache.get("sensitivity", key)
    if hit is not None:
        log.info("sensitivity report read from the cache (%s)", key[:12])
        rep = SensitivityReport.from_dict(hit)
        rep.cached = True
        return rep
    ev = evaluator or make_evaluator(proto, calibration, data, labels=labels, metric=metric,
                                     recipe=base)
    rep = _sweep_report(ev, proto, base, sweeps, cache, workers, ray_address, progress, metric)
    cache.put("sensitivity", key, rep.to_dict())
    return rep


def _sweep_report(ev: Evaluator, proto: onnx.ModelProto, base: Recipe, sweeps, cache,
                  workers: int, ray_address, progress, metric) -> SensitivityReport:
    layers = find_layers(ev.float_model, base)
    if not layers:
        raise ValueError(f"model {proto.graph.name!r} has no weighted layer (Conv / Gemm / MatMul "
                         f"with an initializer weight) that recipe {base.name!r} quantizes")
    recipes = [base, get_recipe("fp32")]
    jobs: dict[str, list[Recipe]] = {
        "single": [only_layer(base, la) for la in layers],
        "all_but_one": [all_but(base, la, "float") for la in layers],
        "int4": [all_but(base, la, "int4") for la in layers],
    }
    for s in SWEEPS:
        if s in sweeps:
            recipes += jobs[s]
    evals = cached_sweep(ev, recipes, cache, workers=workers, ray_address=ray_address,
                         progress=progress)
    base_ev, float_ev = evals[0], evals[1]
    results: dict[str, list] = {}
    i = 2
    for s in SWEEPS:
        if s in sweeps:
            results[s] = evals[i:i + len(layers)]
            i += len(layers)
    plan = resolve(base, ev.float_model)
    table = ev.activation_table()
    act = {}
    for la in layers:
        d = next((d for d in plan.tensors.values() if d.tensor == la.input and d.role ==
                  "activation" and not d.consumers), None)
        if d is not None and d.action == "share":  # e.g. a Flatten output: its input's range
            d = plan.tensors.get(d.share_with)
        if d is not None and d.action != "quantize":
            d = None
        if d is not None and (d.tensor, d.spec) in table:
            act[la.input] = table[(d.tensor, d.spec)]
    stats = layer_stats(ev.float_model, layers, plan, act, ev.calibration)
    rows = [_row(la, idx, base_ev.drop, results, stats[la.node], base)
            for idx, la in enumerate(layers)]
    rows.sort(key=lambda r: (-r.impact, -r.single_drop, r.node))
    for rank, r in enumerate(rows, 1):
        r.rank = rank
    n = len(next(iter(ev.data.values())))
    return SensitivityReport(getattr(proto.graph, "name", "model"), metric_name(metric),
                             base.name, n, ev.float_score, base_ev.drop, base_ev.bytes,
                             float_ev.bytes, list(sweeps), rows)


def _row(la: Layer, idx: int, base_drop: float, results: Mapping[str, list], st,
         base: Recipe) -> LayerSensitivity:
    single = results["single"][idx].drop if "single" in results else 0.0
    abo = results["all_but_one"][idx].drop if "all_but_one" in results else base_drop
    gain = base_drop - abo
    int4 = results["int4"][idx].drop if "int4" in results else None
    impact = max(single, gain)
    fix, why = suggest(impact, st.weight_sqnr_db, st.activation_sqnr_db,
                       st.activation_outlier_ratio, base)
    return LayerSensitivity(la.node, la.op_type, list(la.nodes), la.weight, la.params, single,
                            abo, gain, int4, st.weight_sqnr_db, st.weight_sqnr_int4_db,
                            st.weight_absmax,
                            st.weight_outlier_ratio, st.activation_sqnr_db, st.activation_min,
                            st.activation_max, st.activation_outlier_ratio, impact, fix, why)
