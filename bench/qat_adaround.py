"""EfficientNet-Lite0 QAT started from PTQ's sequential AdaRound (``bench/qat.py --arch effnet
--start adaround``; figures in ``bench/qat.py``'s docstring and docs/qat.md).

One process, the same photos as ``qat_architectures.efficientnet()`` (64 calibration crops,
``eval_n`` crops of the held-apart photos, top-1 agreement with the float model):

1. PTQ with the recipe's defaults (weight clip search + bias correction);
2. PTQ + AdaRound: ``qat_from_capture`` with ``adaround=True`` runs PTQ's AdaRound stage
   (sequential below 8-bit weights) and starts from its integers; the untrained QAT model
   converted is that PTQ model bit for bit (``tests/torch/test_qat_adaround_start.py``), so
   this row costs no second AdaRound run;
3. QAT + label-free distillation from that start, with ``qat_architectures.EFFNET_QAT``'s
   w4a8 settings; fake quant vs the converted model on onnxruntime, the reference interpreter
   and LiteRT.

AdaRound takes ~15 min on EfficientNet (longer on a loaded machine): the prepared start
(the QAT model's state: grid-point weights, corrected biases, clip ratios, PTQ's qparams) is
cached under ``cache`` (default ``$QAT_ADAROUND_CACHE``, else ``/tmp/w4ada``) and reloaded
into a model captured with the same plan (reloading reproduces the converted model exactly;
a cache made with other :data:`ADAROUND_OPTIONS` is recomputed; delete the files after
changing the code, recipe or photos: the cache is not keyed on them).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from onnx import numpy_helper

import edgequant
import edgequant.torch as eqt
from edgequant.recipes.builtin import get_recipe
from edgequant.runtime.runners import open_runner
from edgequant.torch.capture import qat_from_capture
from edgequant.torch.learned_rounding import learn_rounding, rounding_stats

CACHE = Path("/tmp/w4ada")
CACHE_ENV = "QAT_ADAROUND_CACHE"
#: AdaRound options of the start: iterations only (no per-layer wall-time budget, so the start
#: does not depend on the machine's load: with the default 5 s budget it read 50.0–54.7 % on
#: different days), more steps and rows than the defaults (1000 / 4096: 51.6 %; these 53.9 %)
ADAROUND_OPTIONS = {"adaround_seconds_per_layer": 0, "adaround_iters": 2000,
                    "adaround_rows": 16384}
#: Procedural images (:mod:`edgequant_zoo.synthetic_images`: dead leaves, 1/f colour noise)
#: added to the 64 calibration crops for the AdaRound start: AdaRound fits each layer's output
#: on the calibration activations, and six object photos give it a narrow set of them
#: (measured, 128 held-apart crops: 64 crops alone 53.9 %, + 64 procedural images 59.4 %
#: (seed 6: 57.0 %), + 128 of them 54.7 %, + 192 augmented crops of the same photos 50.8 %;
#: docs/qat.md "The AdaRound start"). ``n`` 0: the calibration crops only.
ADAROUND_SYNTHETIC = {"n": 64, "seed": 5}


def adaround_calibration(x_cal: np.ndarray) -> np.ndarray:
    """The AdaRound start's calibration set: ``x_cal`` + :data:`ADAROUND_SYNTHETIC`'s
    procedural images, (64 + n, 3, 224, 224)."""
    from edgequant_zoo.photos import augmented_crops

    n = ADAROUND_SYNTHETIC["n"]
    if not n:
        return x_cal
    syn = augmented_crops(n, x_cal.shape[-1], seed=ADAROUND_SYNTHETIC["seed"], synthetic=1.0)
    return np.concatenate([x_cal, syn])  # (64 + n, 3, H, W)


def _options() -> dict:
    return {**ADAROUND_OPTIONS, "synthetic": ADAROUND_SYNTHETIC}


def cache_dir() -> Path:
    """Where the AdaRound start is cached: ``$QAT_ADAROUND_CACHE``, else :data:`CACHE`."""
    return Path(os.environ.get(CACHE_ENV) or CACHE)


def _agree(pred: np.ndarray, ref: np.ndarray) -> float:
    return 100 * float(np.mean(pred == ref))


def adaround_start(cap, recipe: str, x_cal: np.ndarray, learn_scales: bool, cache: Path):
    """The QAT model started from PTQ's AdaRound (``recipe`` + ``adaround=True``, calibrated
    on :func:`adaround_calibration` of ``x_cal``), and the AdaRound report; from ``cache``
    when a previous run stored it."""
    rec = get_recipe(recipe).with_options(adaround=True, **ADAROUND_OPTIONS)
    x_cal = adaround_calibration(x_cal)
    state, meta = cache / f"effnet_{recipe}_adaround.pt", cache / f"effnet_{recipe}_adaround.json"
    if (state.exists() and meta.exists()
            and json.loads(meta.read_text()).get("options") == _options()):
        # the same plan without AdaRound (cheap), then the stored start loaded over it
        qat = qat_from_capture(cap, rec.with_options(adaround=False, bias_correction="none"),
                               calibration=x_cal, learn_scales=learn_scales)
        qat.load_state_dict(torch.load(state, weights_only=True))
        return qat, {**json.loads(meta.read_text()), "cached": True}
    t0 = time.perf_counter()
    qat = qat_from_capture(cap, rec, calibration=x_cal, learn_scales=learn_scales)
    ada = qat.ptq_report["adaround"]
    report = {"seconds": time.perf_counter() - t0, "mode": ada["mode"],
              "wall_seconds": ada["wall_seconds"], "layers": len(ada["layers"]),
              "bias_correction": ada.get("bias_correction"), "options": _options()}
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(qat.state_dict(), state)
    meta.write_text(json.dumps(report, default=str))
    return qat, report


def efficientnet_adaround(recipe: str = "w4a8", eval_n: int = 128, reference_n: int = 32,
                          cache: Path | None = None, rounding: str = "nearest",
                          train_seed: int | None = None) -> dict:
    """PTQ default vs PTQ + AdaRound vs QAT from the AdaRound start on EfficientNet-Lite0.

    ``rounding="learned"``: QAT with learned rounding (``qat_architectures.EFFNET_ROUNDING``;
    each weight keeps ⌊w/s⌋ or ⌊w/s⌋ + 1 of the float weight, starting at AdaRound's choice);
    ``"nearest"``: ``EFFNET_QAT``'s settings (the weights move freely). ``train_seed``: another
    draw of the training crops than the settings' (training noise)."""
    import qat_architectures as qa

    cfg = (qa.EFFNET_ROUNDING if rounding == "learned" else qa.EFFNET_QAT)["w4a8"]
    if train_seed is not None:
        cfg = dataclasses.replace(cfg, seed=train_seed)
    teacher, cap, x_cal, x_ev, ref = qa.effnet_setup(eval_n)
    t0 = time.perf_counter()
    qat, ada = adaround_start(cap, recipe, x_cal, cfg.learn_scales, cache or cache_dir())
    names = qat.input_names
    ptq = edgequant.quantize(cap.graph, recipe, calibration={names[0]: x_cal})
    ptq_pred = qa._run(open_runner(ptq.model), names, (x_ev,), 32).argmax(1)  # (eval_n,)
    # default PTQ on the start's calibration set too (procedural images included), so the
    # margin is measured against the better of the two PTQ baselines
    cal = adaround_calibration(x_cal)
    ptq_same = (edgequant.quantize(cap.graph, recipe, calibration={names[0]: cal})
                if len(cal) != len(x_cal) else ptq)
    same_pred = qa._run(open_runner(ptq_same.model), names, (x_ev,), 32).argmax(1)  # (eval_n,)
    start = eqt.convert(qat)  # = PTQ + AdaRound (tested bit for bit on a small CNN)
    ada_agree = _agree(qa._run(open_runner(start.model), names, (x_ev,), 32).argmax(1), ref)
    start_fq = _agree(qa.fq_outputs(qat, (x_ev,), 32).argmax(1), ref)
    stats = None
    if rounding == "learned":  # the two integers come from the float weights AdaRound rounded
        floats = {t.name: numpy_helper.to_array(t) for t in cap.graph.graph.initializer}
        learn_rounding(qat, reference=floats, margin=cfg.margin,
                       straight_through=cfg.straight_through)
    train_s = qa.effnet_train(qat, teacher, cfg)
    if rounding == "learned":
        stats = rounding_stats(qat)
    result = eqt.convert(qat)
    fq = qa.fq_per_engine(qat, (x_ev,), batch=32)
    with tempfile.TemporaryDirectory() as tmp:
        outs = qa.deployed_outputs(result, names, (x_ev,), Path(tmp), reference_n=reference_n,
                                    ort_qop=True)
    rows = qa.judge_int4_on_qop(qa.compare(fq, outs, qa.output_scale(qat), ref), result)
    with tempfile.TemporaryDirectory() as tmp:  # onnxruntime's quantizer, same 64 crops
        fresh = qa.confirm(teacher, names, {"ort_static": qa.ort_peer(cap, x_cal, recipe,
                                                                      Path(tmp)),
                                            "ptq": ptq, "ptq_start_calibration": ptq_same,
                                            "adaround": start, "qat": result})
    qat_pred = outs["onnxruntime"].argmax(1)  # (eval_n,)
    return {"recipe": recipe, "eval_n": eval_n, "cfg": cfg, "adaround": ada,
            "ptq_agree": _agree(ptq_pred, ref),
            "ptq_start_calibration_agree": _agree(same_pred, ref),
            "margin": {"ptq": qa.paired_margin(qat_pred, ptq_pred, ref),
                       "ptq_start_calibration": qa.paired_margin(qat_pred, same_pred, ref)},
            "confirm": fresh,
            "ada_agree": ada_agree, "start_fq_agree": start_fq,
            "qat_agree": _agree(qat_pred, ref),
            "qat_fq_agree": _agree(fq["onnxruntime"].argmax(1), ref), "rows": rows,
            "holds": qa.holds(rows, acc=True), "train_seconds": train_s,
            "rounding": stats, "seconds": time.perf_counter() - t0}
