"""LiteRT latency of each TFLite export mode vs the fp32 .tflite, batch 1, 1 and 2 threads.

Models: the MNIST tutorial CNN and a MobileNet-style net (≈1.3 M parameters, 3×96×96).
Modes are timed interleaved (``measure_interleaved``: A B C A B C …, medians) so drift on
a shared machine hits every mode alike; the table prints median ms and the ratio to fp32
for the default XNNPACK path and the plain builtin kernels.

    .venv/bin/python bench/tflite_latency.py [--repeats 50] [--models mnist,mobilenet]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

# the test-model definitions (PyTorch modules + onnxruntime QDQ helper) live with the tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "tflite"))
import tflite_models as M

from edgequant import quantize
from edgequant.analysis.latency import measure_interleaved
from edgequant.runtime.litert import LiteRTRunner

MODELS = {
    "mnist": (M.MnistCnn, (1, 1, 28, 28)),
    "mobilenet": (M.MobileNetish, (1, 3, 96, 96)),
}
MODES = ("fp32", "fp16", "dynamic", "int8", "int16x8")


#: The edgequant recipe behind each TFLite mode.
RECIPES = {"fp32": "fp32", "fp16": "fp16", "dynamic": "w8_dynamic", "int8": "w8a8",
           "int16x8": "w8a16"}


def build(name: str, root: Path) -> dict[str, Path]:
    """Quantize one model with every recipe through ``edgequant.quantize`` and save each as
    ``.tflite``, exactly as a user would; returns mode → .tflite path."""
    cls, shape = MODELS[name]
    f = M.export_onnx(cls(), shape, root / f"{name}.onnx")
    rng = np.random.default_rng(0)
    calib = M.mnist_images(16) if name == "mnist" else \
        rng.standard_normal((16, *shape[1:])).astype(np.float32)
    input_name = onnx.load(f).graph.input[0].name
    paths = {}
    for mode, recipe in RECIPES.items():
        qm = quantize(f, recipe, calibration={input_name: calib}, check_speed=False)
        paths[mode] = qm.save(root / f"{name}_{mode}.tflite")
    return paths


def main() -> None:
    """Print one table per model: mode × (threads, kernels) median ms and ratio to fp32."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--models", default="mnist,mobilenet")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            paths = build(name, Path(tmp))
            shape = MODELS[name][1]
            x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
            cols = [(t, k) for k in ("xnnpack", "builtin") for t in (1, 2)]
            table: dict[tuple[str, int, str], float] = {}
            for threads, kernels in cols:
                runners = {m: LiteRTRunner(p, threads, xnnpack=kernels == "xnnpack")
                           for m, p in paths.items()}
                ms = measure_interleaved({m: (lambda r=r, f={"x": x}: r.run(f)) for m, r in
                                          runners.items()}, repeats=args.repeats)
                for m, v in ms.items():
                    table[(m, threads, kernels)] = v
            sizes = {m: p.stat().st_size for m, p in paths.items()}
            print(f"\n{name} {shape}, batch 1 — median ms (ratio to fp32)")
            head = "".join(f"{k + ' ' + str(t) + 'T':>22}" for t, k in cols)
            print(f"{'mode':10}{'size KB':>10}{head}")
            for m in MODES:
                cells = "".join(
                    f"{table[(m, t, k)]:>12.3f} ({table[(m, t, k)] / table[('fp32', t, k)]:.2f}x)"
                    for t, k in cols)
                print(f"{m:10}{sizes[m] / 1024:>10.1f}{cells}")


if __name__ == "__main__":
    main()
