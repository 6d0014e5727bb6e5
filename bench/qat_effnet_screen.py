"""Screen EfficientNet-Lite0 w4a8 QAT settings cheaply (the table in docs/qat.md, "4-bit
weights"): ``PYTHONPATH=src .venv/bin/python bench/qat_effnet_screen.py '<json list>' [threads]``.

Each JSON object is one run from the same PTQ start (default recipe: weight clip search + bias
correction, LSQ scales; the start is built once and deep-copied): ``name``, ``steps``
(default 150), ``batch`` (4), ``seed`` (11), ``mix`` / ``extra`` (``augmented_crops(mix=)``,
``EXTRA_TRAINING_PHOTOS`` in the training pool), the rest passed to ``fit_qat`` over the
defaults ``lr=1e-4, step_lr=1e-3, schedule="cosine", T=1`` (e.g. ``"features": 30,
"features_local": true, "step_lr": 0.03``). Activation ranges stay PTQ's (frozen from step 0).

Printed per run: top-1 agreement with the float model and KL(float ‖ QAT) on 64 crops of the
held-apart evaluation photos (plain fake quantization, no integer-kernel emulation: a
screen, not the bench's deployed figure) and on 32 held-out crops of the calibration photos
(overfitting shows as the second rising while the first falls). Default 1 thread per process:
on 2 shared cores (load average 7–8) 1-thread runs took ~4–7 s per update; a 2-thread run
under load 9–12 did not finish 150 updates with features in 47 min (cause not examined).
"""

from __future__ import annotations

import copy
import json
import sys
import time

import torch

import edgequant.torch as eqt
from edgequant.recipes.builtin import get_recipe
from edgequant.torch.capture import capture, qat_from_capture
from edgequant_zoo.efficientnet import efficientnet_lite0
from edgequant_zoo.photos import (
    CALIBRATION_PHOTOS,
    EXTRA_TRAINING_PHOTOS,
    augmented_crops,
    calibration_crops,
    evaluation_crops,
)


class _Loud(list):
    """Batches that print the elapsed time every 10 steps."""

    def __init__(self, batches, name: str) -> None:
        super().__init__(batches)
        self.name = name

    def __iter__(self):
        t = time.time()
        for i, b in enumerate(list.__iter__(self)):
            if i % 10 == 0:
                print(f"  {self.name} step {i} {time.time() - t:.0f}s", flush=True)
            yield b


def evaluate(qat, teacher_logits: torch.Tensor, x) -> tuple[float, float]:
    """(% top-1 agreement, KL(teacher ‖ student)) of plain fake quant on crops ``x``."""
    qat.eval()
    kernels, qat.kernels = qat.kernels, None
    with torch.no_grad():
        y = torch.cat([qat(torch.from_numpy(x[s:s + 32])) for s in range(0, len(x), 32)])
    qat.kernels = kernels
    agree = 100 * float((y.argmax(1) == teacher_logits.argmax(1)).float().mean())
    kl = float(torch.nn.functional.kl_div(y.log_softmax(1), teacher_logits.log_softmax(1),
                                          reduction="batchmean", log_target=True))
    return agree, kl


def main() -> None:
    """Run the JSON list of settings in ``sys.argv[1]``; print one RESULT line each."""
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    torch.manual_seed(0)
    configs = json.loads(sys.argv[1])
    teacher = efficientnet_lite0().eval()
    x_ev = evaluation_crops(128, 224)[:64]
    x_ho = calibration_crops(32, 224, seed=99)  # held-out crops of the training photos
    x_cal = calibration_crops(64, 224, seed=7)
    with torch.no_grad():
        ref_ev, ref_ho = (torch.cat([teacher(torch.from_numpy(x[s:s + 32]))
                                     for s in range(0, len(x), 32)]) for x in (x_ev, x_ho))
    cap = capture(teacher, torch.from_numpy(x_ev[:2]))
    start = qat_from_capture(cap, get_recipe("w4a8"), calibration=x_cal, learn_scales=True)
    print("PTQ start", evaluate(start, ref_ev, x_ev), evaluate(start, ref_ho, x_ho), flush=True)
    for cfg in configs:
        cfg = dict(cfg)
        qat = copy.deepcopy(start)
        name, steps, batch = cfg.pop("name"), cfg.pop("steps", 150), cfg.pop("batch", 4)
        seed, mix, extra = cfg.pop("seed", 11), cfg.pop("mix", None), cfg.pop("extra", False)
        kw = {"lr": 1e-4, "step_lr": 1e-3, "schedule": "cosine", "T": 1.0, **cfg}
        names = CALIBRATION_PHOTOS + (EXTRA_TRAINING_PHOTOS if extra else ())
        train = augmented_crops(steps * batch, 224, seed=seed, names=names, mix=mix)
        loader = _Loud((torch.from_numpy(train[s:s + batch]) for s in range(0, len(train), batch)),
                       name)
        t1 = time.time()
        eqt.fit_qat(qat, loader, teacher=teacher, labels=False, show_progress=False,
                    freeze_observers_step=0, **kw)
        ev, ho = evaluate(qat, ref_ev, x_ev), evaluate(qat, ref_ho, x_ho)
        print(f"RESULT {name}: eval agree {ev[0]:.1f} KL {ev[1]:.3f} | train-photo holdout "
              f"{ho[0]:.1f} KL {ho[1]:.3f} | {time.time() - t1:.0f}s | {kw} mix={mix} "
              f"extra={extra}", flush=True)


if __name__ == "__main__":
    main()
