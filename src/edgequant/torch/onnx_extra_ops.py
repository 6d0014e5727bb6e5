"""More ONNX ops as differentiable torch functions (see :mod:`onnx_ops`): the activations,
normalizations and pixel rearrangements of super-resolution, detection and generative
networks (PRelu, Elu, Selu, Celu, Mish, Softplus, Softsign, ThresholdedRelu,
GroupNormalization, InstanceNormalization, DepthToSpace, SpaceToDepth).

The plan keeps them float (no integer kernel in onnxruntime) or shares qparams through them
(pixel moves); here they only need ONNX's float semantics, in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def PRelu(i, a):
    x, slope = i[0], i[1]
    if slope.ndim == 1 and x.ndim > 2 and slope.shape[0] == x.shape[1] and slope.shape[0] > 1:
        slope = slope.reshape(-1, *[1] * (x.ndim - 2))  # per channel (unidirectional broadcast)
    return torch.where(x < 0, slope * x, x)


def Elu(i, a):
    return F.elu(i[0], alpha=a.get("alpha", 1.0))


def Selu(i, a):
    alpha, gamma = a.get("alpha", 1.67326319217681884765625), a.get("gamma", 1.05070102214813232421875)
    x = i[0]
    return gamma * torch.where(x > 0, x, alpha * (torch.exp(x) - 1))


def Celu(i, a):
    return F.celu(i[0], alpha=a.get("alpha", 1.0))


def Mish(i, a):
    return i[0] * torch.tanh(F.softplus(i[0]))


def Softplus(i, a):
    return torch.log(torch.exp(i[0]) + 1)


def Softsign(i, a):
    return i[0] / (1 + i[0].abs())


def ThresholdedRelu(i, a):
    x = i[0]
    return torch.where(x > a.get("alpha", 1.0), x, torch.zeros_like(x))


def _affine(y: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    shape = [1, -1, *[1] * (y.ndim - 2)]
    return y * scale.reshape(shape) + bias.reshape(shape)


def InstanceNormalization(i, a):
    x = i[0]  # (N, C, *S)
    dims = tuple(range(2, x.ndim))
    mean = x.mean(dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dims, keepdim=True)
    return _affine((x - mean) / torch.sqrt(var + a.get("epsilon", 1e-5)), i[1], i[2])


def GroupNormalization(i, a):
    """Opset 21: scale / bias per channel (C,); opset 18: per group (num_groups,) — the two
    agree when num_groups == C, so the length decides."""
    x, scale, bias = i
    n, c, g = x.shape[0], x.shape[1], a["num_groups"]
    xg = x.reshape(n, g, -1)  # (N, G, C/G · S)
    mean = xg.mean(-1, keepdim=True)
    var = ((xg - mean) ** 2).mean(-1, keepdim=True)
    y = ((xg - mean) / torch.sqrt(var + a.get("epsilon", 1e-5))).reshape(x.shape)
    if scale.numel() == g and g != c:
        scale, bias = (t.repeat_interleave(c // g) for t in (scale, bias))
    return _affine(y, scale, bias)


def DepthToSpace(i, a):
    x, b = i[0], a["blocksize"]
    n, c, h, w = x.shape
    if a.get("mode", "DCR") == "CRD":
        y = x.reshape(n, c // (b * b), b, b, h, w).permute(0, 1, 4, 2, 5, 3)
    else:
        y = x.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(n, c // (b * b), h * b, w * b)


def SpaceToDepth(i, a):
    x, b = i[0], a["blocksize"]
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)
