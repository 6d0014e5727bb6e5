"""``edgequant analyze`` and the ``quantize --recipe auto`` search: command bodies.

Registered from :mod:`edgequant.cli` (``analyze`` command) and called by its ``quantize``
command for ``--recipe auto``; kept here so the main CLI module stays small.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgequant.analysis.budget import METRICS


def _labels(path: Path | None):
    import numpy as np

    if path is None:
        return None
    if not path.is_file():
        raise FileNotFoundError(f"labels file {str(path)!r} does not exist")
    return np.load(path, allow_pickle=False).reshape(-1)


def _metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"--metric {metric!r} is unknown: use one of {list(METRICS)}")
    return metric


def _cache(cache_dir: Path | None, no_cache: bool):
    from edgequant.analysis.cache import default_cache_dir

    return None if no_cache else (cache_dir or default_cache_dir())


def _json_safe(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _fmt(v, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def make_analyze_command(console, progress, recipe_arg):
    """The ``analyze`` command, printing to ``console`` (the CLI passes its own console,
    progress bar factory and recipe parser: this module never imports ``edgequant.cli``)."""

    def analyze(
        model: Annotated[Path, typer.Argument(help="float ONNX model")],
        calibration: Annotated[Path, typer.Option(help="DATA.npz that sets activation ranges")],
        data: Annotated[Path, typer.Option(help="DATA.npz the drops are measured on")],
        labels: Annotated[Path | None, typer.Option(help="LABELS.npy for --metric accuracy")] = None,
        metric: Annotated[str, typer.Option(help="agreement | accuracy | cosine")] = "agreement",
        recipe: Annotated[str, typer.Option(help="base static recipe (name or .json)")] = "w8a8",
        int4: Annotated[bool, typer.Option(help="also sweep int4 weights per layer")] = False,
        top: Annotated[int, typer.Option(help="rows to print (0: all)")] = 0,
        workers: Annotated[int, typer.Option(help="parallel sweeps on Ray (1: serial)")] = 1,
        ray_address: Annotated[str | None, typer.Option(help="existing Ray cluster")] = None,
        cache_dir: Annotated[Path | None, typer.Option(
            help="result cache (default ~/.cache/edgequant)")] = None,
        no_cache: Annotated[bool, typer.Option(help="do not read or write the cache")] = False,
        json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
        html: Annotated[Path | None, typer.Option(help="also write an HTML report (one file)")
                        ] = None,
    ) -> None:
        """Per-layer sensitivity: quantize one layer alone and all but one, rank, suggest fixes."""
        from edgequant.analysis.sensitivity import analyze as run_analyze
        from edgequant.outputs import plan_outputs

        plan_outputs({"input model": model, "calibration data": calibration, "data": data,
                      "labels": labels}, {"HTML report": html})
        _metric(metric)
        if not model.is_file():
            raise FileNotFoundError(f"model {str(model)!r} does not exist")
        sweeps = ("single", "all_but_one", "int4") if int4 else ("single", "all_but_one")
        with progress() as bar:
            task = bar.add_task("sweeping layers", total=None)
            rep = run_analyze(model, calibration, data, labels=_labels(labels), metric=metric,
                              recipe=recipe_arg(recipe), sweeps=sweeps, workers=workers,
                              ray_address=ray_address, cache_dir=_cache(cache_dir, no_cache),
                              progress=lambda d, t: bar.update(task, completed=d, total=t))
        if html:
            from edgequant.report.html import write_html
            from edgequant.report.pages import analyze_page

            write_html(html, analyze_page(rep.to_dict()), inputs=[model])
        if json_out:
            d = rep.to_dict()
            d["layers"] = [{k: _json_safe(v) for k, v in row.items()} for row in d["layers"]]
            print(json.dumps(d, indent=2))
            return
        t = Table("rank", "layer", "op", "single", "gain", *(["int4"] if int4 else []),
                  "w SQNR dB", "a SQNR dB", "a outlier", "fix", "why",
                  title=f"{model.name}: {rep.recipe} drops {rep.base_drop:.3f} {rep.metric} points "
                        f"(float score {rep.float_score:.2f}, {rep.samples} samples)"
                        + (" [cached]" if rep.cached else ""))
        for r in rep.layers[: top or None]:
            t.add_row(str(r.rank), r.node, r.op_type, f"{r.single_drop:.3f}", f"{r.gain:.3f}",
                      *([_fmt(r.int4_drop)] if int4 else []), _fmt(r.weight_sqnr_db, ".1f"),
                      _fmt(r.activation_sqnr_db, ".1f"), _fmt(r.activation_outlier_ratio, ".1f"),
                      r.suggestion, r.reason)
        console.print(t)

    return analyze


def auto_search(model: Path, calibration: Path | None, eval_data: Path | None,
                eval_labels: Path | None, *, max_drop: float | None, metric: str,
                objective: str, workers: int, ray_address: str | None,
                cache_dir: Path | None, no_cache: bool):
    """``quantize --recipe auto``: the search's result (the recipe is ``result.recipe``).

    ``--eval-data`` is split in two contiguous halves: the search scores on the first, the
    chosen mix is checked on the second (held apart). Labels split the same way.
    """
    from edgequant.analysis.auto_recipe import auto_recipe, check_objective
    from edgequant.analysis.budget import check_budget
    from edgequant.analysis.sweep import check_workers
    from edgequant.runtime.feeds import read_npz

    if max_drop is None:
        raise ValueError("--recipe auto needs --max-drop POINTS (the accuracy budget)")
    check_budget(max_drop)
    _metric(metric)
    check_objective(objective)
    check_workers(workers)
    if eval_data is None:
        raise ValueError("--recipe auto needs held-apart evaluation data (--eval-data DATA.npz): "
                         "the search scores on its first half and checks the choice on the "
                         "second")
    if calibration is None:
        raise ValueError("--recipe auto needs --calibration DATA.npz (static int8 layers)")
    arrays = read_npz(eval_data)
    n = min(len(v) for v in arrays.values())
    if n < 2:
        raise ValueError(f"--eval-data {str(eval_data)!r} has {n} sample(s): the search and the "
                         "held-apart check need at least 2")
    half = n // 2
    labels = _labels(eval_labels)
    if labels is not None and len(labels) != n:
        raise ValueError(f"--eval-labels has {len(labels)} labels for {n} samples")
    return auto_recipe(model, calibration, {k: v[:half] for k, v in arrays.items()},
                       {k: v[half:] for k, v in arrays.items()}, max_drop=max_drop,
                       labels=None if labels is None else labels[:half],
                       check_labels=None if labels is None else labels[half:], metric=metric,
                       objective=objective, workers=workers, ray_address=ray_address,
                       cache_dir=_cache(cache_dir, no_cache))


def print_auto(result, console) -> None:
    """The candidates table and the held-apart verdict, on ``console``."""
    t = Table("candidate", "bytes", "search drop", "held-apart drop", "latency ms", "mix",
              title=f"auto ({result.objective}, budget {result.max_drop:g} {result.metric} "
                    "points)")
    for c in result.candidates:
        mix = {}
        for p in c.precisions.values():
            mix[p] = mix.get(p, 0) + 1
        mark = " *" if c.name == result.chosen else ""
        t.add_row(c.name + mark, f"{c.bytes:,}", f"{c.search_drop:.3f}",
                  _fmt(c.held_apart_drop), _fmt(c.latency_ms), ", ".join(
                      f"{v} {k}" for k, v in sorted(mix.items())) or c.kind)
    console.print(t)
    c = result.choice
    verdict = "meets" if result.meets_budget_held_apart else "MISSES"
    console.print(f"chosen {c.name}: held-apart drop {_fmt(c.held_apart_drop)} {verdict} the "
                  f"budget of {result.max_drop:g} points")
