"""Run many independent evaluations: serially, or in parallel on Ray (``workers > 1``).

Every job is one recipe scored by the same :class:`~edgequant.analysis.evaluator.Evaluator`;
the evaluator is shipped to the cluster once (``ray.put``) and each worker runs onnxruntime
with one thread, so the results are identical to the serial run, in the same order. Ray is
an optional extra (``pip install edgequant[ray]``); without ``ray_address`` a local cluster
with ``workers`` CPUs is started and shut down again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from edgequant.analysis.cache import ResultCache, cache_key
from edgequant.analysis.evaluator import Evaluation, Evaluator
from edgequant.errors import EdgequantError
from edgequant.recipes.recipe import Recipe

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


class RayMissingError(EdgequantError, ImportError):
    """``workers > 1`` was asked for but Ray is not installed."""


def check_workers(workers: int) -> int:
    """``workers`` must be an integer >= 1."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"--workers {workers!r} is not allowed: use an integer >= 1 "
                         "(1 runs serially, more runs on Ray)")
    return workers


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise RayMissingError("--workers > 1 runs the sweeps on Ray, which is not installed: "
                              "pip install edgequant[ray]") from exc
    return ray


def run_sweep(evaluator: Evaluator, recipes: Sequence[Recipe], *, workers: int = 1,
              ray_address: str | None = None, progress: Progress | None = None
              ) -> list[Evaluation]:
    """Evaluate every recipe; results in the order of ``recipes``."""
    check_workers(workers)
    if workers == 1 and ray_address is None:
        out = []
        for i, r in enumerate(recipes):
            out.append(evaluator.evaluate(r))
            if progress:
                progress(i + 1, len(recipes))
        return out
    return _ray_sweep(evaluator, recipes, workers, ray_address, progress)


def cached_sweep(evaluator: Evaluator, recipes: Sequence[Recipe], cache: ResultCache, *,
                 workers: int = 1, ray_address: str | None = None,
                 progress: Progress | None = None) -> list[Evaluation]:
    """:func:`run_sweep` of the recipes ``cache`` does not hold yet; stores the new results."""
    keys = [cache_key(evaluator.digest, r.to_json()) for r in recipes]
    found = [cache.get("evaluations", k) for k in keys]
    todo = [i for i, f in enumerate(found) if f is None]
    if todo:
        fresh = run_sweep(evaluator, [recipes[i] for i in todo], workers=workers,
                          ray_address=ray_address, progress=progress)
        for i, ev in zip(todo, fresh, strict=True):
            found[i] = ev.to_dict()
            cache.put("evaluations", keys[i], found[i])
    log.info("%d evaluation(s), %d from the cache", len(recipes), len(recipes) - len(todo))
    return [Evaluation.from_dict(f) for f in found]


def _evaluate_json(evaluator: Evaluator, recipe_json: str) -> dict:
    return evaluator.evaluate(Recipe.from_json(recipe_json)).to_dict()


def _ray_sweep(evaluator: Evaluator, recipes: Sequence[Recipe], workers: int,
               ray_address: str | None, progress: Progress | None) -> list[Evaluation]:
    ray = _import_ray()
    if not recipes:
        return []
    evaluator.activation_table()  # calibrate once in the driver, ship the ranges
    started = not ray.is_initialized()
    if started:
        if ray_address:
            ray.init(address=ray_address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=1)(_evaluate_json)
        ref = ray.put(evaluator)
        futures = [remote.remote(ref, r.to_json()) for r in recipes]
        results: list[Evaluation | None] = [None] * len(futures)
        index = {f: i for i, f in enumerate(futures)}
        pending = list(futures)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for f in done:
                results[index[f]] = Evaluation.from_dict(ray.get(f))
            if progress:
                progress(len(futures) - len(pending), len(futures))
        log.info("ran %d evaluations on Ray (%d workers)", len(futures), workers)
        return [r for r in results if r is not None]
    finally:
        if started:
            ray.shutdown()
