"""Fake-quant modules for QAT: activations (moving-average min/max or LSQ) and weights.

Qparams are always computed by :func:`edgequant.qparams.choose_qparams` — the same numpy code
PTQ uses — and stored as float32 tensors, so :meth:`qparams` returns exactly the values the
forward pass used, and ``convert`` ships exactly those.

Moving-average min/max: ``min ← min + c · (batch_min − min)`` with ``c = momentum = 0.01``
(PyTorch's ``MovingAverageMinMaxObserver`` averaging constant), initialised with the first
batch's range. A slow average keeps the range from jumping with each batch (whose outliers
would otherwise widen the grid for one step and shrink it the next).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgequant.errors import EdgequantError
from edgequant.qparams import MIN_SCALE, QParams, choose_qparams, reduce_range
from edgequant.spec import PerChannel, PerTensor, QuantSpec
from edgequant.torch.fake_quant import fake_quantize, fake_quantize_lsq

#: PyTorch's default averaging constant for moving-average min/max observers.
DEFAULT_MOMENTUM = 0.01


class ScaleTracker:
    """The scale of the activation fake-quantized most recently in the current forward pass.

    A QAT Conv/Linear reads it as its *input* scale to quantize its bias to int32 with
    ``scale = input_scale · weight_scale`` exactly as the deployed graph does. "Most recent"
    is the producer for chains (Sequential CNNs); ``convert`` checks it against the exported
    graph and reports any layer where it was not.
    """

    def __init__(self) -> None:
        self.last: torch.Tensor | None = None


def _as_qparams(scale: torch.Tensor, zp: torch.Tensor, spec: QuantSpec) -> QParams:
    s = np.maximum(scale.detach().cpu().numpy().astype(np.float32), np.float32(MIN_SCALE))
    z = zp.detach().cpu().numpy().astype(spec.qtype.numpy_dtype)
    return QParams(np.asarray(s, np.float32), np.asarray(z), spec.qtype, spec.granularity)


class ActivationQuantizer(nn.Module):
    """Per-tensor fake quantization of an activation with a moving-average min/max observer.

    With ``learn_scale=True`` the scale is an ``nn.Parameter`` (LSQ), initialised from the
    observer on the first observed batch; the zero point stays where the observer put it.
    The observer updates in training mode (or inside :func:`edgequant.torch.calibrate`) until
    :meth:`freeze` is called.
    """

    def __init__(
        self, spec: QuantSpec, momentum: float = DEFAULT_MOMENTUM, learn_scale: bool = False
    ) -> None:
        super().__init__()
        if not isinstance(spec.granularity, PerTensor):
            raise ValueError(
                f"activation granularity {spec.granularity!r} is not allowed for QAT: use PerTensor"
            )
        self.spec = spec
        self.momentum = float(momentum)
        self.learn_scale = learn_scale
        self.calibrating = False
        self.tracker: ScaleTracker | None = None
        self.register_buffer("min_val", torch.zeros(()))
        self.register_buffer("max_val", torch.zeros(()))
        self.register_buffer("observed", torch.zeros((), dtype=torch.bool))
        self.register_buffer("frozen", torch.zeros((), dtype=torch.bool))
        self.register_buffer("zero_point", torch.zeros(()))
        if learn_scale:
            self.scale = nn.Parameter(torch.ones(()))
        else:
            self.register_buffer("scale", torch.ones(()))

    @torch.no_grad()
    def _observe(self, x: torch.Tensor) -> None:
        lo, hi = torch.aminmax(x.detach().to(torch.float32))
        if not bool(self.observed):
            self.min_val.copy_(lo)
            self.max_val.copy_(hi)
        else:
            self.min_val.add_(self.momentum * (lo - self.min_val))
            self.max_val.add_(self.momentum * (hi - self.max_val))
        first = not bool(self.observed)
        self.observed.fill_(True)
        if self.learn_scale and not first:
            return  # the learned scale moves by gradient only; the observer just initialises it
        qp = choose_qparams(self.min_val.item(), self.max_val.item(), self.spec)
        self.scale.copy_(torch.from_numpy(qp.scale))
        self.zero_point.copy_(torch.from_numpy(qp.zero_point.astype(np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Observe (when training/calibrating and not frozen), then fake-quantize ``x``."""
        if (self.training or self.calibrating) and not bool(self.frozen):
            self._observe(x)
        if not bool(self.observed):
            raise EdgequantError(
                "activation quantizer has seen no data: run the QAT model in train mode (or "
                "edgequant.torch.calibrate) on some batches before evaluating or converting it"
            )
        if self.tracker is not None:
            self.tracker.last = self.effective_scale()
        if self.learn_scale:
            return fake_quantize_lsq(x, self.scale, self.zero_point, self.spec.qtype, None,
                                     self.spec.rounding)
        return fake_quantize(x, self.scale, self.zero_point, self.spec.qtype, None,
                             self.spec.rounding)

    def effective_scale(self) -> torch.Tensor:
        """The float32 scale the forward pass divides by (LSQ scales clamped positive)."""
        return self.scale.detach().to(torch.float32).clamp_min(MIN_SCALE)

    @torch.no_grad()
    def load_qparams(self, qp: QParams) -> None:
        """Start from ``qp`` (e.g. PTQ's calibrated qparams): the forward uses exactly them,
        and the moving-average range continues from the range they cover."""
        if qp.qtype != self.spec.qtype or np.asarray(qp.scale).ndim:
            raise ValueError(f"qparams {qp.qtype.name} / scale shape {np.shape(qp.scale)} do not "
                             f"fit this per-tensor {self.spec.qtype.name} quantizer")
        s, z = float(np.float32(qp.scale)), float(qp.zero_point)
        self.scale.copy_(torch.tensor(s, dtype=torch.float32))
        self.zero_point.copy_(torch.tensor(z))
        self.min_val.fill_((self.spec.qtype.qmin - z) * s)
        self.max_val.fill_((self.spec.qtype.qmax - z) * s)
        self.observed.fill_(True)

    def freeze(self) -> None:
        """Stop updating the observed range (qparams stay fixed from now on)."""
        self.frozen.fill_(True)

    def qparams(self) -> QParams:
        """The qparams the forward pass uses, as edgequant :class:`QParams`."""
        return _as_qparams(self.scale, self.zero_point, self.spec)

    def extra_repr(self) -> str:
        return f"{self.spec.qtype.name}, learn_scale={self.learn_scale}"


def clipped_qparams(w: np.ndarray, alpha: np.ndarray, spec: QuantSpec) -> QParams:
    """The qparams of ``α · [min, max]`` of ``w`` per granule (α float32, (C,) or ()): what a
    :class:`WeightQuantizer` with range ratios ``α`` computes from the weight ``w``."""
    lo, hi = reduce_range(w, spec.granularity)  # (C,) or () float32
    return choose_qparams(lo * alpha, hi * alpha, spec)


class WeightQuantizer(nn.Module):
    """Fake quantization of a weight (per channel along the spec's axis, or per tensor).

    Without LSQ the qparams follow the current weight's min/max at every call (so the deployed
    weight scale is a pure function of the deployed float weight). With ``learn_scale=True``
    the scale is a parameter initialised from the weight's range on the first call.
    """

    def __init__(self, spec: QuantSpec, channels: int, learn_scale: bool = False) -> None:
        super().__init__()
        gran = spec.granularity
        if not isinstance(gran, PerChannel | PerTensor):
            raise ValueError(
                f"weight granularity {gran!r} is not allowed for QAT: use PerChannel or PerTensor"
            )
        self.spec = spec
        self.axis = gran.axis if isinstance(gran, PerChannel) else None
        self.learn_scale = learn_scale
        shape = (channels,) if self.axis is not None else ()
        self.register_buffer("zero_point", torch.zeros(shape))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        #: range ratio α per granule (PTQ's weight clip search): qparams of α · [min, max]
        self.register_buffer("clip", torch.ones(shape))
        if learn_scale:
            self.scale = nn.Parameter(torch.ones(shape))
        else:
            self.register_buffer("scale", torch.ones(shape))

    @torch.no_grad()
    def _update(self, w: torch.Tensor) -> None:
        alpha = self.clip.cpu().numpy().astype(np.float32)  # (C,) or ()
        qp = clipped_qparams(w.detach().cpu().numpy(), alpha, self.spec)
        self.scale.copy_(torch.from_numpy(qp.scale))
        self.zero_point.copy_(torch.from_numpy(qp.zero_point.astype(np.float32)))
        self.initialized.fill_(True)

    @torch.no_grad()
    def load_qparams(self, qp: QParams) -> None:
        """Use ``qp`` (e.g. scales raised so an int32 bias fits) until the next update."""
        self.scale.copy_(torch.from_numpy(np.asarray(qp.scale, np.float32)).reshape(
            self.scale.shape))
        self.zero_point.copy_(torch.from_numpy(np.asarray(qp.zero_point).astype(np.float32))
                              .reshape(self.zero_point.shape))
        self.initialized.fill_(True)

    def forward(self, w: torch.Tensor, update: bool = True) -> torch.Tensor:
        """Fake-quantize the weight ``w`` (float32; ``channels`` entries along the axis).
        ``update=False``: keep the current qparams (set by :meth:`load_qparams`)."""
        if update and (not self.learn_scale or not bool(self.initialized)):
            self._update(w)
        if self.learn_scale:
            return fake_quantize_lsq(w, self.scale, self.zero_point, self.spec.qtype, self.axis,
                                     self.spec.rounding)
        return fake_quantize(w, self.scale, self.zero_point, self.spec.qtype, self.axis,
                             self.spec.rounding)

    def effective_scale(self) -> torch.Tensor:
        """The float32 scale(s) the forward pass divides by (LSQ scales clamped positive)."""
        return self.scale.detach().to(torch.float32).clamp_min(MIN_SCALE)

    def qparams(self) -> QParams:
        """The qparams of the last forward call."""
        return _as_qparams(self.scale, self.zero_point, self.spec)

    def extra_repr(self) -> str:
        return f"{self.spec.qtype.name}, axis={self.axis}, learn_scale={self.learn_scale}"
