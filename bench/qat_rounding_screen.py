"""Screen learned-rounding QAT settings on EfficientNet-Lite0 w4a8 cheaply (docs/qat.md,
"Learned rounding"): ``PYTHONPATH=src .venv/bin/python bench/qat_rounding_screen.py
'<json list>' [threads]``.

Each JSON object is one run (:mod:`edgequant.torch.learned_rounding`): ``name``, ``start``
(``"adaround"``: PTQ's sequential AdaRound, cached by ``bench/qat_adaround.py`` under
``$QAT_ADAROUND_CACHE`` — computed on the first run; ``"nearest"``: the default PTQ start,
weight clip search + bias correction), ``margin`` (0.1; null: AdaRound's float start),
``straight_through`` (false: soft training forward; true: hardened, STE),
``steps`` (100), ``batch`` (4), ``seed`` (11), ``extra`` (false: + ``EXTRA_TRAINING_PHOTOS``
in the training pool), ``synthetic`` (0: fraction of procedural training images,
:mod:`edgequant_zoo.synthetic_images`), the rest passed to ``fit_qat`` over the
defaults ``rounding_lr=1e-2, rounding_reg=0.01, lr=1e-5`` (biases, constants),
``scale_lr=1e-6`` (LSQ), ``schedule="cosine"``, ``T=1``. Activation ranges stay PTQ's.

Printed per run: top-1 agreement with the float model and KL(float ‖ QAT) on the first
``EVAL_N`` (64) crops of the held-apart evaluation photos (plain fake quantization of the
hardened integers, no integer-kernel emulation: a screen, not the bench's deployed figure),
on 32 held-out crops of the calibration photos (overfitting shows as the second rising while
the first falls), the fraction of undecided ``h`` and of weights whose integer changed.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from pathlib import Path

import torch
from onnx import numpy_helper

import edgequant.torch as eqt
from edgequant.recipes.builtin import get_recipe
from edgequant.torch.capture import qat_from_capture
from edgequant.torch.learned_rounding import learn_rounding, rounding_quantizers, rounding_stats

sys.path.insert(0, str(Path(__file__).parent))
import qat_adaround
import qat_architectures as qa
from qat_effnet_screen import _Loud, evaluate

#: held-apart evaluation crops (``$QAT_SCREEN_EVAL_N``; the full bench reads 128)
EVAL_N = int(os.environ.get("QAT_SCREEN_EVAL_N", "64"))


def main() -> None:
    """Run the JSON list of settings in ``sys.argv[1]``; print one RESULT line each."""
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    torch.manual_seed(0)
    from edgequant_zoo.photos import (
        CALIBRATION_PHOTOS,
        EXTRA_TRAINING_PHOTOS,
        augmented_crops,
        calibration_crops,
    )

    configs = json.loads(sys.argv[1])
    teacher, cap, x_cal, x_ev, _ = qa.effnet_setup(EVAL_N)
    x_ho = calibration_crops(32, 224, seed=99)  # held-out crops of the training photos
    with torch.no_grad():
        ref_ev, ref_ho = (torch.cat([teacher(torch.from_numpy(x[s:s + 32]))
                                     for s in range(0, len(x), 32)]) for x in (x_ev, x_ho))
    floats = {t.name: numpy_helper.to_array(t) for t in cap.graph.graph.initializer}
    starts = {}
    for cfg in configs:
        which = cfg.get("start", "adaround")
        if which in starts:
            continue
        if which == "adaround":
            starts[which], _ = qat_adaround.adaround_start(cap, "w4a8", x_cal, True,
                                                           qat_adaround.cache_dir())
        else:
            starts[which] = qat_from_capture(cap, get_recipe("w4a8"), calibration=x_cal,
                                             learn_scales=True)
        print(f"START {which}: eval {evaluate(starts[which], ref_ev, x_ev)} holdout "
              f"{evaluate(starts[which], ref_ho, x_ho)}", flush=True)
    for cfg in configs:
        cfg = dict(cfg)
        name, which = cfg.pop("name"), cfg.pop("start", "adaround")
        steps, batch, seed = cfg.pop("steps", 100), cfg.pop("batch", 4), cfg.pop("seed", 11)
        margin, ste = cfg.pop("margin", 0.1), cfg.pop("straight_through", False)
        extra, synthetic = cfg.pop("extra", False), cfg.pop("synthetic", 0.0)
        qat = copy.deepcopy(starts[which])
        learn_rounding(qat, reference=floats if which == "adaround" else None, margin=margin,
                       straight_through=ste)
        first = [q.integers().clone() for q in rounding_quantizers(qat)]
        kw = {"rounding_lr": 1e-2, "rounding_reg": 0.01, "lr": 1e-5, "scale_lr": 1e-6,
              "schedule": "cosine", "T": 1.0, **cfg}
        names = CALIBRATION_PHOTOS + (EXTRA_TRAINING_PHOTOS if extra else ())
        train = augmented_crops(steps * batch, 224, seed=seed, names=names, synthetic=synthetic)
        loader = _Loud([torch.from_numpy(train[s:s + batch]) for s in range(0, len(train), batch)],
                       name)
        t1 = time.time()
        eqt.fit_qat(qat, loader, teacher=teacher, labels=False, show_progress=False,
                    freeze_observers_step=0, **kw)
        ev, ho = evaluate(qat, ref_ev, x_ev), evaluate(qat, ref_ho, x_ho)
        qs = rounding_quantizers(qat)
        changed = sum(int((q.integers() != f).sum()) for q, f in zip(qs, first, strict=True))
        st = rounding_stats(qat)
        print(f"RESULT {name}: eval agree {ev[0]:.1f} KL {ev[1]:.3f} | train-photo holdout "
              f"{ho[0]:.1f} KL {ho[1]:.3f} | undecided {st['undecided']:.4f} changed "
              f"{changed / st['weights']:.4f} | {time.time() - t1:.0f}s | start={which} "
              f"steps={steps} batch={batch} margin={margin} ste={ste} extra={extra} "
              f"synthetic={synthetic} {kw}", flush=True)


if __name__ == "__main__":
    main()
