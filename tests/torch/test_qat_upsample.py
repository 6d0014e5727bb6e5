"""QAT on decoder graphs: ConvTranspose and Resize (torch/onnx_upsample_ops.py) against
onnxruntime's kernels, and a small U-Net trained, converted and run: fake quant == onnxruntime.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from onnx import helper
from onnx_single_node import node_attrs, run_node
from torch import nn

import edgequant.torch as eqt
from edgequant.errors import UnsupportedOpError
from edgequant.runtime.runners import open_runner
from edgequant.torch.onnx_ops import OPS

RESIZE_CASES = [
    dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
    dict(mode="nearest"),  # half_pixel, round_prefer_floor
    dict(mode="nearest", coordinate_transformation_mode="align_corners",
         nearest_mode="round_prefer_ceil"),
    dict(mode="linear"),
    dict(mode="linear", coordinate_transformation_mode="align_corners"),
    dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel"),
    dict(mode="cubic", cubic_coeff_a=-0.5),
]


@pytest.mark.parametrize("attrs", RESIZE_CASES, ids=lambda a: "-".join(map(str, a.values())))
@pytest.mark.parametrize("how", ["up2", "sizes", "down"])
def test_resize_matches_onnxruntime(attrs, how):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    inits = {"roi": np.zeros(0, np.float32)}
    if how == "sizes":
        inits["sizes"] = np.array([2, 3, 11, 7], np.int64)
        inputs = ["x", "roi", "", "sizes"]
    else:
        inits["scales"] = np.array([1, 1, 2, 2] if how == "up2" else [1, 1, 0.5, 0.6], np.float32)
        inputs = ["x", "roi", "scales"]
    node = helper.make_node("Resize", inputs, ["y"], **attrs)
    want = run_node(node, {"x": x}, inits)
    args = [torch.from_numpy(x), torch.from_numpy(inits["roi"]),
            torch.from_numpy(inits["scales"]) if "scales" in inits else None,
            torch.from_numpy(inits["sizes"]) if "sizes" in inits else None]
    got = OPS["Resize"](args, node_attrs(node)).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)


CONV_T_CASES = [
    dict(strides=[2, 2]),
    dict(strides=[2, 2], pads=[1, 0, 0, 1], output_padding=[1, 1]),
    dict(strides=[2, 1], dilations=[2, 1], group=2),
    dict(strides=[2, 2], auto_pad="SAME_UPPER"),
    dict(strides=[2, 2], output_shape=[13, 11]),
]


@pytest.mark.parametrize("attrs", CONV_T_CASES, ids=str)
def test_conv_transpose_matches_onnxruntime(attrs):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 6, 5)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)  # (C, M/g, kh, kw)
    b = rng.standard_normal(3 * attrs.get("group", 1)).astype(np.float32)
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], **attrs)
    want = run_node(node, {"x": x}, {"w": w, "b": b})
    got = OPS["ConvTranspose"]([torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)],
                               node_attrs(node)).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_conv_transpose_1d_matches_onnxruntime():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 9)).astype(np.float32)
    w = rng.standard_normal((4, 2, 4)).astype(np.float32)
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[3], pads=[1, 2])
    want = run_node(node, {"x": x}, {"w": w})
    got = OPS["ConvTranspose"]([torch.from_numpy(x), torch.from_numpy(w)], node_attrs(node)).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_resize_refuses_what_it_cannot_train():
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(UnsupportedOpError, match="tf_crop_and_resize"):
        OPS["Resize"]([x, None, torch.tensor([1, 1, 2, 2.0])],
                      {"coordinate_transformation_mode": "tf_crop_and_resize"})


class UNet(nn.Module):
    """Encoder (Conv, MaxPool), decoder (ConvTranspose, nearest and bilinear upsampling, skip
    Concat, residual Add): the shapes of segmentation and super-resolution networks."""

    def __init__(self) -> None:
        super().__init__()
        self.e1 = nn.Conv2d(3, 8, 3, padding=1)
        self.e2 = nn.Conv2d(8, 16, 3, padding=1)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.d1 = nn.Conv2d(16, 8, 3, padding=1)
        self.side = nn.Conv2d(16, 8, 1)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.e1(x))
        b = F.relu(self.e2(F.max_pool2d(a, 2)))
        c = F.relu(self.d1(torch.cat([self.up(b), a], 1)))
        v = F.interpolate(self.side(b), scale_factor=2, mode="nearest")
        w = F.interpolate(self.side(b), scale_factor=2, mode="bilinear", align_corners=False)
        return self.out(c + v + w)


@pytest.mark.parametrize("recipe", ["w8a8", "w4a8"])
def test_unet_qat_trains_converts_and_matches_onnxruntime(recipe):
    torch.manual_seed(0)
    model = UNet().eval()
    x = torch.randn(24, 3, 16, 16)
    qat = eqt.prepare_qat(model, recipe, example_inputs=x[:2], calibration=x[:16])
    losses = eqt.fit_qat(qat, [torch.randn(8, 3, 16, 16) for _ in range(4)], teacher=model,
                         labels=False, distill="mse", lr=1e-4, show_progress=False)
    assert np.isfinite(losses).all()
    qat.eval()
    with torch.no_grad():
        fq = qat(x).numpy()
        ref = model(x).numpy()
    result = eqt.convert(qat)
    ops = [n.op_type for n in result.model.graph.node]
    assert "ConvTranspose" in ops and "Resize" in ops
    out = open_runner(result.model).run({qat.input_names[0]: x.numpy()})
    out = out[0] if isinstance(out, (list, tuple)) else next(iter(out.values()))
    # the deployed model computes what training evaluated (the float ConvTranspose stays float
    # in onnxruntime: graph/passes/float_weights.py)
    np.testing.assert_array_equal(out, fq)
    assert np.corrcoef(fq.ravel(), ref.ravel())[0, 1] > 0.95
