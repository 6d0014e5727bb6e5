"""Never slower than float: the demo CNN and EfficientNet-Lite0, float vs default int8 (w8a8)
without and with the speed guard, in onnxruntime and in LiteRT, side by side in one run.

Per model and runtime: batch-1 median latency (rounds interleaved across the three models),
speed over fp32, accuracy (demo CNN: MNIST test accuracy; EfficientNet-Lite0: top-1
agreement with fp32 on real photo crops) and the regions the guard kept in float compute.
onnxruntime uses its default threads; LiteRT one thread with XNNPACK (``LiteRTRunner``).

Measured on the 2-core shared AMD EPYC box (AVX-512 VNNI), onnxruntime 1.31, ai_edge_litert,
02:10 UTC with other jobs running (load ~30; ratios from one run, ``--repeats 200``)::

    model     runtime      fp32      int8 (x fp32)      guarded (x fp32)   MNIST test acc
    demo CNN  onnxruntime  16.3 µs   35.4 µs (0.46x)    16.2 µs (1.00x)    95.50 / 95.50 / 95.50 %
    demo CNN  LiteRT       17.1 µs   16.1 µs (1.06x)    15.8 µs (1.08x)    96.50 / 96.50 / 96.50 %
    (onnxruntime: conv and fc regions kept in float compute with int8 weights; LiteRT:
    nothing dropped; LiteRT accuracy on the first 200 test images)

    EfficientNet-Lite0 (``--models effnet --repeats 30``, under ``nice``, load ~20):
    onnxruntime fp32 122.1 ms, int8 66.2 ms (1.84x), guarded 63.2 ms (1.93x), nothing dropped;
    LiteRT fp32 60.3 ms, int8 28.6 ms (2.11x), guarded (same model, nothing dropped) 33.4 ms
    (1.80x: the timing noise of 30 rounds on this box); top-1 agreement with fp32 85.9 %.

The demo CNN's int8 loses in onnxruntime because its QLinearConv on a 1-channel 28×28
input (plus the NHWC transposes around it) costs ~3x the NCHWc float conv, and the
10-output QGemm with its input QuantizeLinear costs more than the float Gemm; the guard
keeps both in float compute with int8 weights (weight_only), so the file stays 3.9x
smaller and the accuracy is the float model's.

    .venv/bin/python bench/never_slower.py [--models cnn,effnet] [--repeats 100]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import edgequant as eq
from edgequant.analysis.latency import measure_interleaved
from edgequant.analysis.metrics import top1_agreement
from edgequant.ptq.speed_guard import run_guard
from edgequant.runtime.litert import LiteRTRunner
from edgequant.runtime.sessions import ort_session


def _cnn(tmp: Path):
    import torch

    from edgequant_zoo.mnist import load_mnist
    from edgequant_zoo.tutorial_cnn import export_onnx, train_tutorial_cnn

    split = load_mnist(seed=0)
    path = export_onnx(train_tutorial_cnn(split, seed=0), tmp / "cnn.onnx",
                       torch.zeros(1, 1, 28, 28))
    return path, split.x_train[:500], split.x_test, split.y_test


def _effnet(tmp: Path):
    from edgequant_zoo.efficientnet import export_efficientnet_lite0
    from edgequant_zoo.photos import calibration_crops, evaluation_crops

    return export_efficientnet_lite0(tmp / "effnet.onnx"), calibration_crops(64), \
        evaluation_crops(128), None


def _predict(run, x: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([run(x[i:i + batch]) for i in range(0, len(x), batch)])


def _row(name, runtime, ms, outs, labels, kept):
    base = ms["fp32"]

    def acc(k):
        if labels is not None:
            return f"{100 * float(np.mean(outs[k].argmax(1) == labels)):.2f}%"
        return f"{100 * top1_agreement(outs['fp32'], outs[k]):.1f}% top-1 agr"

    print(f"{name:10s} {runtime:12s} " + "  ".join(
        f"{k}: {ms[k] * 1e3:8.1f} µs {base / ms[k]:5.2f}x {acc(k)}" for k in ms)
        + f"  kept float: {kept or '-'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="cnn,effnet")
    ap.add_argument("--repeats", type=int, default=100)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="never_slower_"))
    for name in args.models.split(","):
        path, cal, evals, labels = (_cnn if name == "cnn" else _effnet)(tmp)
        data = {"input": cal}
        plain = eq.quantize(path, "w8a8", data)
        guarded = run_guard(path, plain, "w8a8", data, quantize_fn=eq.quantize)
        fp32 = eq.quantize(path, "fp32")
        files = {"fp32": fp32.save(tmp / f"{name}_fp32.onnx"),
                 "int8": plain.save(tmp / f"{name}_int8.onnx"),
                 "guarded": guarded.save(tmp / f"{name}_guarded.onnx")}
        sess = {k: ort_session(p) for k, p in files.items()}
        x1 = {"input": evals[:1]}
        ms = measure_interleaved({k: (lambda s=s, x1=x1: s.run(None, x1)) for k, s in sess.items()},
                                 repeats=args.repeats, warmup=5)
        outs = {k: _predict(lambda b, s=s: s.run(None, {"input": b})[0], evals, 50)
                for k, s in sess.items()}
        _row(name, "onnxruntime", ms, outs, labels,
             [k["region"] for k in guarded.report["speed"]["kept_float"]])
        lite = run_guard(path, plain, "w8a8", data, quantize_fn=eq.quantize, runtime="litert")
        tfl = {"fp32": fp32.save(tmp / f"{name}_fp32.tflite"),
               "int8": plain.save(tmp / f"{name}_int8.tflite"),
               "guarded": lite.save(tmp / f"{name}_guarded.tflite")}
        runners = {k: LiteRTRunner(p) for k, p in tfl.items()}
        ms = measure_interleaved({k: (lambda r=r, x1=x1: r.run(x1)) for k, r in runners.items()},
                                 repeats=args.repeats, warmup=5)
        outs = {k: _predict(lambda b, r=r: np.concatenate(
            [r.run({"input": b[i:i + 1]})[0] for i in range(len(b))]), evals[:200], 50)
            for k, r in runners.items()}
        _row(name, "LiteRT", ms, outs, labels[:200] if labels is not None else None,
             [k["region"] for k in lite.report["speed"]["kept_float"]])


if __name__ == "__main__":
    main()
