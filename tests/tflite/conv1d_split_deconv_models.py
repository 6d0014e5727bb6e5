"""Small PyTorch models for the 1-D Conv / Split / ConvTranspose TFLite tests, as users write
them: a keyword-spotting CNN (Conv1d incl. depthwise and dilated, BatchNorm1d, ReLU / SiLU,
``x.mean(-1)``, Linear), an MLP-Mixer-like gated block (``chunk`` / ``torch.split``), a U-Net
style decoder (ConvTranspose2d) and a 1-D layout stress model (a Conv1d output read by
Transpose, Flatten, Add, Split and a 1-D ConvTranspose).

Each builder returns ``(module, example input shape)``; weights come from ``torch.manual_seed``.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from torch import nn

import edgequant
from edgequant.torch import export_onnx


class KWS(nn.Module):
    """Keyword-spotting CNN over (N, C, T) features."""

    def __init__(self, c: int = 8, classes: int = 10, act: str = "silu", width: int = 16) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(c, width, 3, padding=1)
        self.b1 = nn.BatchNorm1d(width)
        self.dw = nn.Conv1d(width, width, 3, padding=2, dilation=2, groups=width)
        self.b2 = nn.BatchNorm1d(width)
        self.pw = nn.Conv1d(width, width * 3 // 2, 1)
        # pads (1, 1) ≠ TFLite SAME (0, 1) at even lengths: an explicit PAD
        self.c3 = nn.Conv1d(width * 3 // 2, width * 3 // 2, 3, stride=2, padding=1)
        self.fc = nn.Linear(width * 3 // 2, classes)
        self.act = nn.SiLU() if act == "silu" else nn.ReLU()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features the classifier reads: (N, C, T) → (N, 3·width/2)."""
        x = torch.relu(self.b1(self.c1(x)))
        x = self.act(self.b2(self.dw(x)))
        x = torch.relu(self.pw(x))
        x = torch.relu(self.c3(x))
        return x.mean(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class Mixer(nn.Module):
    """Gated MLP block: ``chunk(2)`` (opset-18 Split num_outputs) and uneven ``torch.split``."""

    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.a = nn.Linear(d, 2 * d)
        self.b = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = self.a(x).chunk(2, dim=-1)
        p, q, r = torch.split(x, [4, 5, 7], dim=-1)
        return self.b(u * torch.sigmoid(v)) + torch.cat([r, q, p], -1)


class Decoder(nn.Module):
    """U-Net decoder step: Conv2d, ConvTranspose2d (k3 s2 p1 op1: cropped; k4 s2 p1: SAME),
    Conv2d, and a channel split of the upsampled map."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(4, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, output_padding=1)
        self.up2 = nn.ConvTranspose2d(6, 4, 4, stride=2, padding=1)
        self.o = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.up(torch.relu(self.c(x))))
        a, b = torch.split(self.up2(y), [1, 3], dim=1)
        return self.o(b) + a


class Layout1d(nn.Module):
    """A Conv1d output read by ops that must see the ONNX (N, C, L) layout."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(6, 8, 3, padding=1)
        self.c2 = nn.Conv1d(8, 8, 5, padding=2, groups=8)
        self.seq = nn.Linear(8, 5)
        self.flat = nn.Linear(8 * 12, 5)
        self.up = nn.ConvTranspose1d(4, 3, 4, stride=2, padding=1)
        self.bias = nn.Parameter(torch.linspace(-1, 1, 12))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.c1(x))  # (N, 8, 12)
        r = self.c2(h) + h + self.bias  # residual, constant over L
        s = self.seq(r.transpose(1, 2)).mean(1)  # (N, 5)
        f = self.flat(r.flatten(1))  # (N, 5)
        lo, hi = r.chunk(2, dim=1)  # channel split: (N, 4, 12) each
        u = self.up(lo * torch.sigmoid(hi))  # (N, 3, 24)
        return torch.cat([s, f, u.mean(1)], dim=1)  # (N, 34)


class PoolKWS(nn.Module):
    """Conv1d stack with 1-D pooling: MaxPool1d, AvgPool1d (padded, count_include_pad off),
    AdaptiveAvgPool1d(1) (GlobalAveragePool) and AdaptiveMaxPool1d(1)."""

    def __init__(self, c: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(c, 16, 3, padding=1)
        self.mp = nn.MaxPool1d(2)
        self.c2 = nn.Conv1d(16, 16, 3, padding=1)
        self.ap = nn.AvgPool1d(3, stride=1, padding=1, count_include_pad=False)
        self.fc = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mp(torch.relu(self.c1(x)))
        h = self.ap(torch.relu(self.c2(h)))
        avg = nn.functional.adaptive_avg_pool1d(h, 1).flatten(1)
        top = nn.functional.adaptive_max_pool1d(h, 1).flatten(1)
        return self.fc(torch.cat([avg, top], 1))


MODELS = {
    "kws": (lambda: KWS(), (1, 8, 16)),
    "kws_relu": (lambda: KWS(act="relu"), (1, 8, 16)),
    "kws_pool": (lambda: PoolKWS(), (1, 8, 16)),
    "mixer": (lambda: Mixer(), (1, 5, 16)),
    "decoder": (lambda: Decoder(), (1, 4, 6, 6)),
    "layout1d": (lambda: Layout1d(), (1, 6, 12)),
}


def build(name: str) -> tuple[onnx.ModelProto, np.ndarray]:
    """Float ONNX of model ``name`` (BatchNorm in eval mode with trained-looking statistics)
    and 16 standard-normal inputs."""
    make, shape = MODELS[name]
    torch.manual_seed(0)
    module = make().eval()
    for m in module.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    model = export_onnx(module, torch.zeros(shape))
    x = np.random.default_rng(1).standard_normal((16, *shape[1:])).astype(np.float32)
    return model, x


def quantized(name: str, recipe: str = "w8a8") -> tuple[onnx.ModelProto, onnx.ModelProto,
                                                          np.ndarray]:
    """(float ONNX, edgequant PTQ QDQ ONNX, inputs) of model ``name``."""
    model, x = build(name)
    qm = edgequant.quantize(model, recipe, calibration={model.graph.input[0].name: x})
    return model, qm.model, x


def trained_digits_kws(epochs: int = 8) -> tuple[nn.Module, tuple[np.ndarray, ...]]:
    """A KWS CNN trained on sklearn's ``load_digits`` with each image's 8 rows as 8 channels
    over 8 steps; returns the module (eval) and (x_train, y_train, x_test, y_test).

    Adam, batch 100, one torch thread (several threads only contend on a shared machine;
    the previous thread count is restored): ~4 s, ~95 % test accuracy."""
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.target))
    x = (d.images[order] / 16.0).astype(np.float32)  # (1797, 8, 8): (N, C, T) in [0, 1]
    y = d.target[order].astype(np.int64)
    x_tr, y_tr, x_te, y_te = x[:1400], y[:1400], x[1400:], y[1400:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        module = KWS(c=8, classes=10)
        opt = torch.optim.Adam(module.parameters(), 1e-2)
        xs, ys = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
        gen = torch.Generator().manual_seed(0)
        module.train()
        for _ in range(epochs):
            perm = torch.randperm(len(xs), generator=gen)
            for i in range(0, len(xs), 100):
                idx = perm[i:i + 100]
                loss = nn.functional.cross_entropy(module(xs[idx]), ys[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return module.eval(), (x_tr, y_tr, x_te, y_te)
