"""QAT replacements for Conv2d (+BatchNorm2d) (+ReLU) and Linear (+ReLU).

Each module fake-quantizes its weight, runs the float op, applies the fused ReLU and then
fake-quantizes its output — the order of the deployed QDQ graph, where the ReLU is fused into
the producer's output range.

Conv+BN (Jacob et al. 2018, PyTorch ``ConvBn2d``): the weight is always folded with the BN
*running* statistics ``w_fold = w · γ / sqrt(var + ε)`` before fake quantization, so the
quantized weight training sees is the one that ships. Before :meth:`QATConv2d.freeze_bn`, in
training mode the conv output is un-scaled again and passed through BN with batch statistics
(which keeps BN's training dynamics and updates the running stats); after the freeze, and in
eval mode, the module computes exactly the folded conv ``conv(x, fq(w_fold)) + b_fold`` that
:func:`edgequant.torch.convert` exports.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from edgequant.qparams import QParams
from edgequant.spec import QType, QuantSpec
from edgequant.torch.fake_quant import fake_quantize
from edgequant.torch.quantizers import (
    DEFAULT_MOMENTUM,
    ActivationQuantizer,
    ScaleTracker,
    WeightQuantizer,
)

#: int32 biases (docs/architecture.md).
BIAS_QTYPE = QType(32, True)


class _QATBase(nn.Module):
    """Shared parts: weight/bias parameters, weight and output quantizers, fused ReLU."""

    def __init__(
        self,
        float_module: nn.Conv2d | nn.Linear,
        weight_spec: QuantSpec,
        act_spec: QuantSpec | None,
        relu: bool,
        learn_scales: bool,
        momentum: float,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(float_module.weight.detach().clone())
        self.bias = (
            nn.Parameter(float_module.bias.detach().clone())
            if float_module.bias is not None
            else None
        )
        self.relu = relu
        self.weight_quant = WeightQuantizer(weight_spec, self.weight.shape[0], learn_scales)
        self.act_quant = (
            ActivationQuantizer(act_spec, momentum, learn_scales) if act_spec is not None else None
        )
        self.tracker: ScaleTracker | None = None
        # Input scale used for the int32 bias in the last forward (0: bias left float).
        self.register_buffer("bias_input_scale", torch.zeros(()))

    def folded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The float weight and bias the deployed op uses (BN folded in, if any)."""
        return self.weight, self.bias

    def weight_qparams(self) -> QParams:
        """Qparams of the (folded) weight as used by the last forward pass."""
        return self.weight_quant.qparams()

    def output_qparams(self) -> QParams | None:
        """Qparams of the output (after the fused ReLU), or None when it stays float."""
        return self.act_quant.qparams() if self.act_quant is not None else None

    def _weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Fake-quantized folded weight and the bias as the deployed graph holds it.

        The bias becomes int32 with ``scale = input_scale · weight_scale`` (per channel) when
        the input is quantized — the same float32 product ``bias_qparams`` computes.
        """
        w, b = self.folded()
        wq = self.weight_quant(w)  # (C_out, ...) float32 on the weight grid
        s_in = self.tracker.last if self.tracker is not None else None
        if b is None or s_in is None:
            self.bias_input_scale.zero_()
            return wq, b
        self.bias_input_scale.copy_(s_in)
        scale = s_in * self.weight_quant.effective_scale()  # (C_out,) or () float32
        axis = 0 if scale.ndim else None
        return wq, fake_quantize(b, scale, torch.zeros_like(scale), BIAS_QTYPE, axis)

    def _finish(self, y: torch.Tensor) -> torch.Tensor:
        if self.relu:
            y = F.relu(y)
        return self.act_quant(y) if self.act_quant is not None else y


class QATLinear(_QATBase):
    """Linear with fake-quantized weight and output (optionally fused ReLU)."""

    def __init__(
        self,
        linear: nn.Linear,
        weight_spec: QuantSpec,
        act_spec: QuantSpec | None,
        relu: bool = False,
        learn_scales: bool = False,
        momentum: float = DEFAULT_MOMENTUM,
    ) -> None:
        super().__init__(linear, weight_spec, act_spec, relu, learn_scales, momentum)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``fq(relu?(x @ fq(W)ᵀ + b))``."""
        wq, bq = self._weight_and_bias()
        return self._finish(F.linear(x, wq, bq))  # (N, out) float32

    def to_float(self) -> nn.Module:
        """A plain module computing the deployed float op (folded weights, fused ReLU)."""
        w, b = self.folded()
        lin = nn.Linear(self.in_features, self.out_features, bias=b is not None)
        lin.weight.data.copy_(w.detach())
        if b is not None:
            lin.bias.data.copy_(b.detach())
        return _WithRelu(lin) if self.relu else lin


class QATConv2d(_QATBase):
    """Conv2d (optionally with a folded BatchNorm2d and a fused ReLU) for QAT."""

    def __init__(
        self,
        conv: nn.Conv2d,
        weight_spec: QuantSpec,
        act_spec: QuantSpec | None,
        bn: nn.BatchNorm2d | None = None,
        relu: bool = False,
        learn_scales: bool = False,
        momentum: float = DEFAULT_MOMENTUM,
    ) -> None:
        super().__init__(conv, weight_spec, act_spec, relu, learn_scales, momentum)
        if conv.padding_mode != "zeros":
            raise ValueError(
                f"Conv2d padding_mode={conv.padding_mode!r} is not allowed for QAT: use 'zeros'"
            )
        self.conv_args = dict(
            in_channels=conv.in_channels, out_channels=conv.out_channels,
            kernel_size=conv.kernel_size, stride=conv.stride, padding=conv.padding,
            dilation=conv.dilation, groups=conv.groups,
        )
        self.bn = copy.deepcopy(bn) if bn is not None else None
        self.register_buffer("bn_frozen", torch.zeros((), dtype=torch.bool))

    def _conv(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        a = self.conv_args
        return F.conv2d(x, w, b, a["stride"], a["padding"], a["dilation"], a["groups"])

    def _bn_scale(self) -> torch.Tensor:
        bn = self.bn
        assert bn is not None and bn.running_var is not None
        gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
        return gamma / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``w_fold = w·γ/σ``, ``b_fold = β + (b − μ)·γ/σ`` with BN running statistics."""
        if self.bn is None:
            return self.weight, self.bias
        bn = self.bn
        sf = self._bn_scale()  # (C_out,)
        w = self.weight * sf.reshape(-1, 1, 1, 1)  # (C_out, C_in/g, kh, kw)
        b = self.bias if self.bias is not None else torch.zeros_like(sf)
        beta = bn.bias if bn.bias is not None else torch.zeros_like(sf)
        return w, beta + (b - bn.running_mean) * sf  # (C_out,)

    def freeze_bn(self) -> None:
        """From now on use running statistics in training too (stop updating them)."""
        self.bn_frozen.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quantized (folded) conv, fused ReLU, fake-quantized output."""
        if self.bn is not None and self.training and not bool(self.bn_frozen):
            # Simulated folding: quantize the running-stat-folded weight, undo the per-channel
            # factor, then let BN normalise with batch statistics (and update running stats).
            sf = self._bn_scale()  # (C_out,)
            w, _ = self.folded()
            y = self._conv(x, self.weight_quant(w), None)  # (N, C_out, H, W)
            self.bias_input_scale.zero_()  # training-only path: the bias is BN's business
            y = y / sf.reshape(1, -1, 1, 1)
            if self.bias is not None:
                y = y + self.bias.reshape(1, -1, 1, 1)
            return self._finish(self.bn(y))
        wq, bq = self._weight_and_bias()
        return self._finish(self._conv(x, wq, bq))  # (N, C_out, H, W)

    def to_float(self) -> nn.Module:
        """A plain Conv2d (folded weights) computing the deployed float op, ReLU fused."""
        w, b = self.folded()
        conv = nn.Conv2d(**self.conv_args, bias=b is not None)
        conv.weight.data.copy_(w.detach())
        if b is not None:
            conv.bias.data.copy_(b.detach())
        return _WithRelu(conv) if self.relu else conv


class _WithRelu(nn.Module):
    """``relu(op(x))`` with the op's parameters registered directly on this module.

    Keeping ``weight`` / ``bias`` at this level makes the exported ONNX initializers
    ``<module path>.weight`` / ``.bias``, which is how ``convert`` finds each QAT module's node.
    """

    def __init__(self, op: nn.Conv2d | nn.Linear) -> None:
        super().__init__()
        self.weight = op.weight
        self.bias = op.bias
        self.conv = (
            (op.stride, op.padding, op.dilation, op.groups) if isinstance(op, nn.Conv2d) else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            return F.relu(F.conv2d(x, self.weight, self.bias, *self.conv))
        return F.relu(F.linear(x, self.weight, self.bias))
