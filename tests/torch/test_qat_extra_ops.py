"""QAT op functions for activations, normalizations and pixel moves (torch/onnx_extra_ops.py,
Pad in onnx_shape_ops.py) against onnxruntime's kernels, and a super-resolution and a
GroupNorm network trained, converted and run: fake quant == onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from onnx import helper
from onnx_single_node import node_attrs, run_node
from torch import nn

import edgequant.torch as eqt
from edgequant.runtime.runners import open_runner
from edgequant.torch.onnx_ops import OPS

RNG = np.random.default_rng(0)
X = (RNG.standard_normal((2, 8, 6, 4)) * 2).astype(np.float32)  # (N, C, H, W)

CASES = [  # (op, attrs, extra initializers (name, array), opset)
    ("PRelu", {}, [("slope", RNG.standard_normal((8, 1, 1)).astype(np.float32))], 19),
    ("PRelu", {}, [("slope", np.array([0.25], np.float32))], 19),
    ("Elu", {"alpha": 0.7}, [], 19),
    ("Selu", {}, [], 19),
    ("Celu", {"alpha": 1.3}, [], 19),
    ("Mish", {}, [], 19),
    ("Softplus", {}, [], 19),
    ("Softsign", {}, [], 19),
    ("ThresholdedRelu", {"alpha": 0.5}, [], 19),
    ("InstanceNormalization", {"epsilon": 1e-3},
     [("s", RNG.standard_normal(8).astype(np.float32)),
      ("b", RNG.standard_normal(8).astype(np.float32))], 19),
    ("GroupNormalization", {"num_groups": 4},
     [("s", RNG.standard_normal(8).astype(np.float32)),
      ("b", RNG.standard_normal(8).astype(np.float32))], 21),
    ("DepthToSpace", {"blocksize": 2}, [], 19),
    ("DepthToSpace", {"blocksize": 2, "mode": "CRD"}, [], 19),
    ("SpaceToDepth", {"blocksize": 2}, [], 19),
    ("Pad", {"mode": "reflect"}, [("pads", np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64))], 19),
    ("Pad", {"mode": "edge"}, [("pads", np.array([1, 2, 2, 1], np.int64)),
                               ("", None), ("axes", np.array([2, 3], np.int64))], 19),
]


@pytest.mark.parametrize("op,attrs,extra,opset", CASES, ids=lambda v: str(v)[:24])
def test_op_matches_onnxruntime(op, attrs, extra, opset):
    inits = {k: v for k, v in extra if v is not None}
    node = helper.make_node(op, ["x", *(k for k, _ in extra)], ["y"], **attrs)
    want = run_node(node, {"x": X}, inits, opset)
    args = [torch.from_numpy(X), *(None if v is None else torch.from_numpy(v) for _, v in extra)]
    got = OPS[op](args, node_attrs(node)).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


class SuperRes(nn.Module):
    """ESPCN-like: reflect padding, PReLU, PixelShuffle (DepthToSpace CRD)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3)
        self.act = nn.PReLU(16)
        self.c2 = nn.Conv2d(16, 12, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.c2(self.act(self.c1(F.pad(x, (1, 1, 1, 1), mode="reflect")))))


class GroupNormNet(nn.Module):
    """GroupNorm / InstanceNorm / Mish / ELU / Softplus, L2-normalized pooled features."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.gn = nn.GroupNorm(4, 16)
        self.c2 = nn.Conv2d(16, 8, 3, padding=1)
        self.inorm = nn.InstanceNorm2d(8, affine=True)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.mish(self.gn(self.c1(x)))
        y = F.elu(self.inorm(self.c2(y))) + F.softplus(y[:, :8])
        return self.fc(F.normalize(y.mean((2, 3)), dim=1))


@pytest.mark.parametrize("cls", [SuperRes, GroupNormNet])
def test_network_trains_converts_and_matches_onnxruntime(cls):
    torch.manual_seed(0)
    model = cls().eval()
    x = torch.randn(16, 3, 12, 12)
    qat = eqt.prepare_qat(model, "w8a8", example_inputs=x[:2], calibration=x[:8])
    params = {n: p.detach().clone() for n, p in qat.named_parameters()}
    eqt.fit_qat(qat, [torch.randn(8, 3, 12, 12) for _ in range(3)], teacher=model, labels=False,
                distill="mse", lr=1e-3, show_progress=False)
    moved = [n for n, p in qat.named_parameters() if not torch.equal(p, params[n])]
    assert moved
    qat.eval()
    with torch.no_grad():
        fq = qat(x).numpy()
    result = eqt.convert(qat)
    out = open_runner(result.model).run({qat.input_names[0]: x.numpy()})
    out = out[0] if isinstance(out, (list, tuple)) else next(iter(out.values()))
    lsb = np.abs(out - fq).max()
    assert lsb <= 1e-5 * max(1.0, np.abs(fq).max()), lsb
