"""Whole-graph QAT on a MobileNet-style CNN (not Sequential): float → PTQ → QAT → 3 formats.

Run: ``.venv/bin/python examples/qat_mobilenet.py`` (MNIST from the offline zoo, a few
minutes on 2 cores). Prints the accuracy of the float model, of PTQ, of the QAT fake-quant
model and of the converted model in onnxruntime (QDQ and QOperator) and LiteRT.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import edgequant
import edgequant.torch as eqt
from edgequant.runtime.runners import open_runner
from edgequant_zoo.mnist import load_mnist
from edgequant_zoo.mobilenet_style import MobileNetStyle
from edgequant_zoo.training import train_classifier

RECIPE = "w4a8"


def accuracy(runner_or_module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy (%) of a runtime runner or a torch module on ``x``."""
    if isinstance(runner_or_module, torch.nn.Module):
        runner_or_module.eval()
        with torch.no_grad():
            logits = runner_or_module(torch.from_numpy(x)).numpy()
    else:
        logits = np.asarray(runner_or_module.run({runner_or_module.input_names[0]: x})[0])
    return 100 * float(np.mean(logits.argmax(1) == y))


def main() -> None:
    """Train, quantize, fine-tune and export; print one line per model."""
    logging.basicConfig(level=logging.WARNING)
    split = load_mnist()
    split = replace(split, x_train=split.x_train[:8000], y_train=split.y_train[:8000],
                    x_test=split.x_test[:2000], y_test=split.y_test[:2000])
    torch.manual_seed(0)
    model = train_classifier(MobileNetStyle(), split, epochs=1, lr=3e-3)
    x_te, y_te = split.x_test, split.y_test
    qat = eqt.prepare_qat(model, RECIPE, example_inputs=torch.from_numpy(x_te[:2]),
                          calibration=split.x_train[:512])
    ptq = edgequant.quantize(qat.graph, RECIPE, calibration={qat.input_names[0]:
                                                             split.x_train[:512]})
    x, y = torch.from_numpy(split.x_train[:3200]), torch.from_numpy(split.y_train[:3200])
    loader = [(x[s:s + 64], y[s:s + 64]) for s in range(0, len(x), 64)]
    eqt.fit_qat(qat, loader, teacher=model, lr=3e-4, freeze_observers_step=len(loader) // 2)
    result = eqt.convert(qat)
    with tempfile.TemporaryDirectory() as tmp:
        qop = result.save(Path(tmp) / "m_qop.onnx", format="qop")
        tfl = result.save(Path(tmp) / "m.tflite")
        rows = {"fp32": accuracy(model, x_te, y_te),
                f"PTQ {RECIPE} (onnxruntime)": accuracy(open_runner(ptq.model), x_te, y_te),
                "QAT fake quant (PyTorch)": accuracy(qat, x_te, y_te),
                "QAT QDQ (onnxruntime)": accuracy(open_runner(result.model), x_te, y_te),
                "QAT QOperator (onnxruntime)": accuracy(open_runner(qop), x_te, y_te),
                "QAT .tflite (LiteRT)": accuracy(open_runner(tfl), x_te, y_te)}
    for name, acc in rows.items():
        print(f"{name:32s} {acc:6.2f} %")


if __name__ == "__main__":
    main()
