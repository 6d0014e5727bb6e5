"""Range search: choose each activation's range estimator by the error it causes downstream.

For every static activation tensor, every candidate observer (min/max, three percentiles,
MSE, entropy) watches the same calibration stream. Each candidate's qparams then fake-
quantize sampled input rows of the tensor's consumers with a constant weight (Conv / Gemm /
MatMul), which run in float: the candidate with the smallest summed output MSE wins (the
tensor's own quantization MSE when no such consumer reads it). Min/max wins ties, so another
observer is chosen only when it measurably helps. Memory is bounded: observers keep fixed
histograms and at most a fixed number of rows per consumer is sampled (see ``layer_rows``).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import onnx

from edgequant.errors import CalibrationError
from edgequant.graph.info import GraphInfo
from edgequant.observers import make_observer
from edgequant.primitives import fake_quantize
from edgequant.ptq.recovery.layer_rows import (
    gather_rows,
    layer_output,
    pick_rows,
    rows_per_batch,
    weighted_layers,
)
from edgequant.ptq.recovery.samples import calibration_batches
from edgequant.qparams import QParams
from edgequant.recipes.decisions import QuantPlan
from edgequant.runtime.feeds import model_inputs
from edgequant.runtime.sessions import ort_session
from edgequant.spec import PerTensor

log = logging.getLogger(__name__)

#: (label, observer, observer_args); the first is the default and wins ties.
CANDIDATES: tuple[tuple[str, str, tuple], ...] = (
    ("minmax", "minmax", ()),
    ("percentile_99.9", "percentile", (("percentile", 99.9),)),
    ("percentile_99.99", "percentile", (("percentile", 99.99),)),
    ("percentile_99.999", "percentile", (("percentile", 99.999),)),
    ("mse", "mse", ()),
    ("entropy", "entropy", ()),
)
ROWS = 1024          # input rows sampled per consumer
VALUES = 65536       # values sampled per tensor without a weighted consumer


def searchable(plan: QuantPlan, model: onnx.ModelProto, overrides, io: str) -> dict[str, str]:
    """Plan key → tensor of the per-tensor static activations calibration would observe."""
    ends = {i.name for i in model_inputs(model)} | {o.name for o in model.graph.output}
    out = {}
    for key, d in plan.tensors.items():
        if (d.role != "activation" or d.action != "quantize" or d.mode != "static"
                or key in overrides or not isinstance(d.spec.granularity, PerTensor)
                or (io != "float" and not d.consumers and d.tensor in ends)):
            continue
        out[key] = d.tensor
    return out


def search_ranges(float_model: onnx.ModelProto, plan: QuantPlan, calibration, overrides,
                  io: str, batch_size: int, batch_axes, report: dict) -> dict[str, QParams]:
    """Chosen qparams per plan key; ``report["range_search"]`` gets the winner per tensor
    and every candidate's measured error."""
    keys = searchable(plan, float_model, overrides, io)
    if not keys:
        return {}
    if calibration is None:
        raise CalibrationError("range search needs calibration data")
    batches, samples = calibration_batches(float_model, calibration, batch_size, batch_axes)
    tensors = sorted(set(keys.values()))
    layers = [la for la in weighted_layers(float_model) if la.input in set(tensors)]
    info = GraphInfo.build(float_model)
    w_gok = {la.node: la.to_gok(info.const_array(la.weight).astype(np.float32)) for la in layers}
    observers = {k: [make_observer(replace(plan.tensors[k].spec, observer=obs, observer_args=args), k)
                     for _, obs, args in CANDIDATES] for k in keys}
    rng = np.random.default_rng(0)
    rows: dict[str, list[np.ndarray]] = {la.node: [] for la in layers}
    values: dict[str, list[np.ndarray]] = {t: [] for t in tensors}
    sess = ort_session(float_model, extra_outputs=tensors)
    names = [o.name for o in sess.get_outputs()]
    for feeds in batches:
        got = dict(zip(names, sess.run(None, feeds), strict=True))
        for k, t in keys.items():
            for ob in observers[k]:
                ob.update(got[t])
        for la in layers:
            x = got[la.input]
            r = rows_per_batch(la.max_rows(ROWS), len(x), samples)
            rows[la.node].append(gather_rows(la, x, pick_rows(la, x.shape, r, rng)))
        for t in tensors:
            flat = np.asarray(got[t], np.float32).reshape(-1)
            take = min(flat.size, rows_per_batch(VALUES, len(got[t]), samples))
            values[t].append(flat[rng.integers(0, flat.size, take)])
    chosen: dict[str, QParams] = {}
    summary: dict[str, dict] = {}
    for k, t in keys.items():
        cands = [ob.qparams() for ob in observers[k]]
        users = [la for la in layers if la.input == t]
        errs = [_error(qp, users, rows, w_gok, np.concatenate(values[t])) for qp in cands]
        best = int(np.argmin(errs))  # first minimum: min/max on ties
        chosen[k] = cands[best]
        summary[k] = {"observer": CANDIDATES[best][0],
                      "measured_on": "consumers" if users else "tensor",
                      "errors": {c[0]: float(e) for c, e in zip(CANDIDATES, errs, strict=True)}}
    report["range_search"] = summary
    won = sum(s["observer"] != "minmax" for s in summary.values())
    log.info("range search: %d of %d tensors use another observer than minmax", won, len(summary))
    return chosen


def _error(qp: QParams, users, rows, w_gok, values: np.ndarray) -> float:
    if not users:
        return float(np.mean((fake_quantize(values, qp) - values) ** 2))
    total = 0.0
    for la in users:
        x = np.concatenate(rows[la.node])  # (r, G, K)
        y = layer_output(x, w_gok[la.node])
        yq = layer_output(fake_quantize(x, qp), w_gok[la.node])
        total += float(np.mean((yq - y) ** 2))
    return total
