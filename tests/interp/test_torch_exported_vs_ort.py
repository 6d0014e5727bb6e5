"""Graphs as PyTorch's TorchScript exporter writes them (the form of many published models):
LSTM / GRU with states, bilinear and nearest ``interpolate``, ConvTranspose2d, LocalResponseNorm
(exported as Pad + 3-D AveragePool), InstanceNorm, and scripted ``for`` / ``if`` control flow
(Loop with an If inside whose bodies read outer-scope names) — interpreter vs onnxruntime."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
from single_op import run_ort, run_ref

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

#: a conv / resize / norm chain and two recurrent layers in float32: summation order and
#: MLAS exp / tanh approximations differ from numpy by a few ulp per step.
TORCH_RTOL = 1e-5
TORCH_ATOL = 1e-5


class Mixed(nn.Module):
    """Conv → LRN → bilinear up → ConvTranspose → InstanceNorm → nearest resize; BiLSTM → GRU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.lrn = nn.LocalResponseNorm(3)
        self.up = nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1)
        self.norm = nn.InstanceNorm2d(2, affine=True)
        self.lstm = nn.LSTM(8, 6, bidirectional=True)
        self.gru = nn.GRU(12, 5)

    def forward(self, x, seq, h0, c0):
        y = self.lrn(torch.relu(self.conv(x)))
        y = F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)
        y = F.interpolate(self.norm(self.up(y)), size=(5, 7), mode="nearest")
        out, (h, c) = self.lstm(seq, (h0, c0))
        g, _ = self.gru(out)
        return y, g, h, c


class Accumulate(nn.Module):
    """Scripted loop with a data-dependent branch: exported as Loop + If subgraphs."""

    def forward(self, x, n: int):
        acc = torch.zeros_like(x)
        for i in range(n):
            if bool(x.sum() > 0):
                acc = acc + x * i
            else:
                acc = acc - x
        return acc


def export(module, args, names) -> onnx.ModelProto:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buf, dynamo=False, opset_version=17, input_names=names)
    return onnx.load_from_string(buf.getvalue())


def compare(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    feeds = {i.name: feeds[i.name] for i in model.graph.input}  # unused inputs are dropped
    ours, theirs = run_ref(model, feeds), run_ort(model, feeds)
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape)
        np.testing.assert_allclose(a, b, rtol=TORCH_RTOL, atol=TORCH_ATOL)
    return ours


def test_torchscript_exported_layers_match_onnxruntime():
    torch.manual_seed(0)
    args = (torch.randn(1, 3, 6, 6), torch.randn(4, 2, 8), torch.randn(2, 2, 6),
            torch.randn(2, 2, 6))
    names = ["x", "seq", "h0", "c0"]
    model = export(Mixed().eval(), args, names)
    ops = {n.op_type for n in model.graph.node}
    assert {"LSTM", "GRU", "Resize", "ConvTranspose", "InstanceNormalization", "AveragePool"} <= ops
    compare(model, {k: v.numpy() for k, v in zip(names, args, strict=True)})


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_scripted_loop_with_branch_matches_onnxruntime(sign):
    model = export(torch.jit.script(Accumulate()), (torch.randn(3), 4), ["x", "n"])
    assert [n.op_type for n in model.graph.node if n.op_type == "Loop"] == ["Loop"]
    x = np.float32([1, 2, 3]) * np.float32(sign)
    (acc,) = compare(model, {"x": x, "n": np.array(4, np.int64)})
    np.testing.assert_allclose(acc, x * 6 if sign > 0 else -4 * x)  # 0+1+2+3 or four −x


class Collect(nn.Module):
    """Scripted list building: exported as SequenceEmpty / SequenceInsert inside a Loop and
    ConcatFromSequence after it."""

    def forward(self, x, n: int):
        outs: list[torch.Tensor] = []
        for i in range(n):
            outs.append(x * i)
        return torch.stack(outs)


def test_scripted_list_append_and_stack_matches_onnxruntime():
    model = export(torch.jit.script(Collect()), (torch.randn(2, 3), 3), ["x", "n"])
    ops = {n.op_type for n in model.graph.node}
    assert "ConcatFromSequence" in ops or "SequenceInsert" in str(model.graph), ops
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    (y,) = compare(model, {"x": x, "n": np.array(4, np.int64)})
    np.testing.assert_array_equal(y, np.stack([x * i for i in range(4)]))
