"""Which per-layer measurement picks the int8 layers of a w4a8 mix best (EfficientNet-Lite0).

``w4_keep_int8="sensitivity"`` ranks layers by a measured sensitivity per extra byte and fills
a byte budget greedily (``edgequant.ptq.recovery.sensitivity_int8``). This bench swaps the
measurement, keeps the greedy fill and the budget (first/last/depthwise's 3.04 MB), and scores
each resulting mix (clip search + bias correction, no AdaRound) on evaluation photos disjoint
from the calibration ones, side by side in one run:

* ``rest float``: the float model with only this layer's weights as the pipeline stores them
  at 4 bits (clip search, bias-corrected), relative output MSE — what edgequant uses;
* ``local noise``: the layer's own output noise after clip + bias correction
  (E[e²] − E[e]² over E[y²], ``error_stats``: one pass for all layers, no end-to-end run);
* ``rest w8a8``: ``edgequant analyze --sweeps int4`` (the w8a8 model with this one layer at
  RTN int4 weights), drop in cosine points (AIMET AMP's "others at the highest precision").

Measured 2026-12-02 (``--calib 32 --eval 64``, shared 2-core machine, load ~12):

    mix (3.04 MB)              int8 layers  top-1 agree  cosine  sure agree  in top-5  measure s
    first/last/depthwise                18        0.500  0.8323       0.909     0.797
    rest float (edgequant)              40        0.766  0.9698       1.000     0.984         82
    local layer noise                   42        0.703  0.9537       1.000     1.000
    rest w8a8 (analyze int4)            41        0.750  0.9610       1.000     0.984        108

Every measurement beats the rule of thumb by far at the same size; the end-to-end ones beat the
local one (a layer's noise is amplified or damped by what follows it), and "rest float" edges
out "rest w8a8" at lower cost: the int4 layer's activations are rounded the same either way,
and w8a8's own error (cosine 0.985) blurs the smaller single-layer effects.

Run: ``.venv/bin/python bench/w4_sensitivity_proxies.py [--calib 32] [--eval 64]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx

import edgequant as eq
from edgequant.analysis.layers import literal
from edgequant.analysis.metrics import confident_agreement, cosine, top1_agreement, top1_in_topk
from edgequant.analysis.sensitivity import analyze
from edgequant.graph.passes.fold import prepare_float
from edgequant.ptq.recovery.error_stats import measure, static_layers
from edgequant.ptq.recovery.keep_int8 import int8_layers
from edgequant.ptq.recovery.sensitivity_int8 import LayerCost, choose_int8, measure_sensitivity
from edgequant.ptq.recovery.weight_clip import clipped_weights
from edgequant.recipes import get_recipe
from edgequant.recipes.plan import resolve
from edgequant.recipes.recipe import Rule
from edgequant.spec import QType
from edgequant_zoo.efficientnet import export_efficientnet_lite0
from edgequant_zoo.photos import calibration_crops, evaluation_crops

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ptq_recovery import FLDW_BUDGET, run


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calib", type=int, default=32)
    ap.add_argument("--eval", type=int, default=64)
    args = ap.parse_args(argv)
    cal, ev = calibration_crops(args.calib), evaluation_crops(args.eval)
    rec = get_recipe("w4a8").with_options(weight_clip="mse", bias_correction="empirical")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        src = export_efficientnet_lite0(d / "effnet_lite0.onnx")
        ref = run(src, ev)
        model = prepare_float(onnx.load(str(src)), [])
        plan = resolve(rec, model)
        t = time.perf_counter()
        base = measure_sensitivity(model, plan, rec, [{"input": cal[i:i + 16]}
                                                      for i in range(0, len(cal), 16)])
        seconds = {"rest float (edgequant)": time.perf_counter() - t}
        measures = {"rest float (edgequant)": {c.node: c.sensitivity for c in base}}
        clip = clipped_weights(model, plan)[0]
        local = measure(model, static_layers(model, plan, clip), lambda: iter([{"input": cal}]))
        measures["local layer noise"] = {
            la.node: float(np.sum(np.maximum(la.mean_e2 - la.mean_e ** 2, 0)) / np.sum(la.mean_y2))
            for la in local}
        t = time.perf_counter()
        rep = analyze(str(src), {"input": cal}, {"input": cal}, recipe="w8a8", sweeps=("int4",),
                      metric="cosine", cache_dir=None)
        seconds["rest w8a8 (analyze int4)"] = time.perf_counter() - t
        measures["rest w8a8 (analyze int4)"] = {r.node: max(r.int4_drop or 0.0, 0.0)
                                                for r in rep.layers}
        print(f"EfficientNet-Lite0, {args.calib} calibration / {args.eval} evaluation crops; "
              f"every mix at budget {FLDW_BUDGET} (first/last/depthwise's bytes), clip + BC")
        print(f"{'mix':<26} {'int8 layers':>11} {'top-1 agree':>11} {'cosine':>7} "
              f"{'sure agree':>10} {'in top-5':>8} {'measure s':>9}")
        spec8 = replace(rec.weights, qtype=QType(8, True, narrow_range=True))
        mixes = {"first/last/depthwise": int8_layers(model, plan, "first_last_depthwise")}
        for name, s in measures.items():
            costs = [LayerCost(c.node, c.weight, c.params, c.extra_bytes, s.get(c.node, 0.0))
                     for c in base]
            mixes[name] = [c.node for c in choose_int8(costs, FLDW_BUDGET) if c.int8]
        for name, nodes in mixes.items():
            r = rec.with_rules(Rule(nodes=tuple(literal(n) for n in nodes), weights=spec8,
                                    name="int8"))
            qm = eq.quantize(str(src), r, calibration={"input": cal})
            out = run(qm.save(d / "q.onnx"), ev)
            sec = f"{seconds[name]:>9.0f}" if name in seconds else ""
            print(f"{name:<26} {len(nodes):>11} {top1_agreement(ref, out):>11.3f} "
                  f"{cosine(ref, out):>7.4f} {confident_agreement(ref, out)[0]:>10.3f} "
                  f"{top1_in_topk(ref, out, 5):>8.3f} {sec}", flush=True)


if __name__ == "__main__":
    main()
