"""Knowledge distillation and a small QAT training loop with a rich progress bar."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from edgequant.ptq.recovery.adaround_relax import annealed_beta
from edgequant.torch.feature_distill import FloatFeatures, LocalFeatures, feature_loss, run_with
from edgequant.torch.learned_rounding import rounding_loss, rounding_parameters
from edgequant.torch.prepare import freeze_bn, freeze_observers
from edgequant.torch.quantizers import ActivationQuantizer, WeightQuantizer
from edgequant.torch.step_lr import StepScaledUpdates

log = logging.getLogger(__name__)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      T: float = 4.0) -> torch.Tensor:
    """Hinton et al. 2015: ``T² · KL(softmax(teacher/T) ‖ softmax(student/T))``, batch mean.

    The ``T²`` factor keeps the soft-target gradients on the same scale as a hard-label loss
    when ``T`` changes.
    """
    if T <= 0:
        raise ValueError(f"distillation temperature T={T} is not allowed: use T > 0")
    log_p = F.log_softmax(student_logits / T, dim=-1)  # (N, classes)
    log_q = F.log_softmax(teacher_logits.detach() / T, dim=-1)  # (N, classes)
    return F.kl_div(log_p, log_q, reduction="batchmean", log_target=True) * (T * T)


def _scale_params(module: nn.Module) -> list[nn.Parameter]:
    """The learned (LSQ) scales of ``module``'s quantizers."""
    return [m.scale for m in module.modules()
            if isinstance(m, ActivationQuantizer | WeightQuantizer)
            and isinstance(m.scale, nn.Parameter)]


def _split(batch, labels: bool) -> tuple[tuple, torch.Tensor | None]:
    """(inputs, labels) of one batch: ``(x, y)`` with labels, else a tensor or input tuple."""
    if labels:
        if not isinstance(batch, tuple | list) or len(batch) < 2:
            raise ValueError("fit_qat with labels=True needs (inputs..., y) batches; use "
                             "labels=False (with a teacher) for unlabeled inputs")
        return tuple(batch[:-1]), batch[-1]
    return (tuple(batch) if isinstance(batch, tuple | list) else (batch,)), None


def fit_qat(
    module: nn.Module,
    loader: Iterable,
    teacher: nn.Module | None = None,
    epochs: int = 1,
    lr: float = 1e-3,
    alpha: float = 0.5,
    T: float = 4.0,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    freeze_bn_epoch: int | None = None,
    freeze_observers_epoch: int | None = None,
    scale_lr: float | None = None,
    show_progress: bool = True,
    *,
    labels: bool = True,
    distill: str = "kl",
    freeze_bn_step: int | None = None,
    freeze_observers_step: int | None = None,
    schedule: str = "constant",
    features: float = 0.0,
    features_local: bool = False,
    step_lr: float | None = None,
    rounding_lr: float = 1e-2,
    rounding_reg: float = 100.0,
) -> list[float]:
    """Train ``module`` in place with Adam; returns the mean loss per epoch.

    Labeled batches are ``(x, y)`` (or ``(x1, x2, ..., y)``); with a ``teacher`` the loss is
    ``alpha · distillation + (1 − alpha) · loss_fn``. ``labels=False``: label-free
    distillation from the float ``teacher`` — each batch is the input tensor (or a tuple of
    inputs), e.g. unlabeled photos or token ids, and the loss is the distillation term alone.
    ``distill``: ``"kl"`` (Hinton soft targets on logits, temperature ``T``) or ``"mse"``
    (outputs matched directly: embeddings, regression heads).
    ``freeze_bn_epoch`` / ``freeze_bn_step``: from that epoch / optimizer step on, Conv+BN
    folds with frozen running statistics; ``freeze_observers_*``: activation ranges stop
    moving (Jacob et al. 2018). Learned (LSQ) scales get their own learning rate ``scale_lr``
    (default ``lr / 10``): Adam normalises gradient magnitudes, so LSQ's gradient scaling
    alone does not keep a scale of ~0.01 from moving by ``lr`` per step.
    ``schedule``: ``"constant"`` learning rates, or ``"cosine"`` decay to zero over all steps
    (long low-bit fine-tuning: large steps early move weights between int4 levels, small steps
    late settle them).
    ``features``: weight of an intermediate-feature term added to the loss (whole-graph QAT
    only): every quantized activation matched to the same tensor of the float graph
    (:mod:`edgequant.torch.feature_distill`; dense supervision that generalises from a few
    photos where logits alone overfit them). 0 (default): logits only.
    ``features_local``: each matched tensor reaches its consumers detached, so its term trains
    only the layer that produces it, from the inputs its quantized predecessors give it
    (layer-wise reconstruction, as sequential AdaRound / BRECQ; the logit term then trains
    only the head). False (default): every term trains all layers before it.
    ``step_lr``: the quantized weights' learning rate in units of their own quantization step
    (whole-graph QAT only; :mod:`edgequant.torch.step_lr`): each Adam update moves a weight
    by about ``step_lr`` of its channel's step, whatever the layer's range; ``lr`` then applies
    to the other parameters (biases, constants). None (default): ``lr`` for all weights.
    ``rounding_lr`` / ``rounding_reg`` (models prepared with
    :func:`edgequant.torch.learned_rounding.learn_rounding` only): Adam's learning rate of the
    rounding variables ``V``, and the weight λ of AdaRound's regulariser
    ``λ · mean(1 − |2h(V) − 1|^β)`` added to the loss, β annealed from 20 to 2 over the steps
    after the first 20 % (which drives every ``h`` to 0 or 1: check
    ``learned_rounding.rounding_stats``). Eval mode and ``convert`` use the hardened ``h``.
    The regulariser is a mean over all rounding variables, so λ must match the size of the
    loss's gradient per variable: 100 (default) on EfficientNet-Lite0 w4a8 with KL
    distillation (0.01 left 98.5 % of ``h`` undecided after 100 steps; docs/qat.md).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha} is not allowed: use 0 <= alpha <= 1")
    if distill not in ("kl", "mse"):
        raise ValueError(f"distill={distill!r} is not allowed: use 'kl' or 'mse'")
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule={schedule!r} is not allowed: use 'constant' or 'cosine'")
    if isinstance(features, bool) or not isinstance(features, int | float) or not (
            0.0 <= features < math.inf):
        raise ValueError(f"features={features!r} is not allowed: use a finite weight >= 0 "
                         "(0: no feature distillation)")
    if step_lr is not None and (isinstance(step_lr, bool) or not isinstance(step_lr, int | float)
                                or not 0.0 < step_lr <= 1.0):
        raise ValueError(f"step_lr={step_lr!r} is not allowed: use a fraction of a quantization "
                         "step in (0, 1] (e.g. 0.02), or None for the absolute lr")
    if not isinstance(features_local, bool):
        raise ValueError(f"features_local={features_local!r} is not allowed: use True or False")
    if features_local and not features:
        raise ValueError("features_local=True needs feature distillation: pass features= > 0")
    for key, val in (("rounding_lr", rounding_lr), ("rounding_reg", rounding_reg)):
        if isinstance(val, bool) or not isinstance(val, int | float) or not 0.0 <= val < math.inf:
            raise ValueError(f"{key}={val!r} is not allowed: use a finite value >= 0")
    if not labels and teacher is None:
        raise ValueError("fit_qat(labels=False) distills from a teacher: pass teacher=")
    scales = _scale_params(module)
    stepped = StepScaledUpdates(module) if step_lr is not None else None
    rounding = rounding_parameters(module)
    ids = ({id(p) for p in scales} | {id(p) for p in (stepped.params if stepped else ())}
           | {id(p) for p in rounding})
    others = [p for p in module.parameters() if id(p) not in ids]
    groups = [{"params": others, "lr": lr}]
    if rounding:
        groups.append({"params": rounding, "lr": rounding_lr, "rounding": True})
    if stepped is not None:
        groups.append({"params": stepped.params, "lr": step_lr})
    if scales:
        groups.append({"params": scales, "lr": lr / 10 if scale_lr is None else scale_lr})
    opt = torch.optim.Adam(groups)
    batches = list(loader) if not hasattr(loader, "__len__") else loader
    total_steps = max(1, epochs * len(batches))

    def cosine(k: int) -> float:
        return 0.5 * (1 + math.cos(math.pi * min(k, total_steps) / total_steps))

    # the rounding variables keep their rate (AdaRound's): the regulariser decides them late
    sched = (torch.optim.lr_scheduler.LambdaLR(
        opt, [(lambda k: 1.0) if g.get("rounding") else cosine for g in opt.param_groups])
        if schedule == "cosine" else None)
    if teacher is not None:
        teacher.eval()
    reference = FloatFeatures(module) if features else None
    history: list[float] = []
    step = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[loss]}"),
                  TimeRemainingColumn(), transient=True, disable=not show_progress) as progress:
        task = progress.add_task("QAT", total=epochs * len(batches), loss="")
        for epoch in range(epochs):
            if freeze_bn_epoch is not None and epoch >= freeze_bn_epoch:
                freeze_bn(module)
            if freeze_observers_epoch is not None and epoch >= freeze_observers_epoch:
                freeze_observers(module)
            module.train()
            total, count = 0.0, 0
            for batch in batches:
                if freeze_bn_step is not None and step >= freeze_bn_step:
                    freeze_bn(module)
                if freeze_observers_step is not None and step >= freeze_observers_step:
                    freeze_observers(module)
                x, y = _split(batch, labels)
                if reference is not None and features_local:
                    with LocalFeatures(module, reference.names) as rec:
                        out = module(*x)
                    feat = feature_loss(rec.ordered(reference.names), reference(*x)[1:])
                elif reference is not None:  # outputs, then the matched activations
                    out, *feats = run_with(module, reference.names, *x)
                    feat = feature_loss(feats, reference(*x)[1:])
                else:
                    out = module(*x)
                loss = loss_fn(out, y) if y is not None else None
                if teacher is not None:
                    with torch.no_grad():
                        t_out = teacher(*x)
                    d = (distillation_loss(out, t_out, T) if distill == "kl"
                         else F.mse_loss(out, t_out.detach()))
                    loss = d if loss is None else alpha * d + (1 - alpha) * loss
                if reference is not None:
                    loss = features * feat if loss is None else loss + features * feat
                beta = annealed_beta(step / total_steps) if rounding and rounding_reg else None
                if beta is not None:
                    loss = loss + rounding_reg * rounding_loss(module, beta)
                opt.zero_grad()
                loss.backward()
                if stepped is not None:
                    stepped.before()
                opt.step()
                if stepped is not None:
                    stepped.after()
                if sched is not None:
                    sched.step()
                step += 1
                n = len(x[0])
                total, count = total + loss.item() * n, count + n
                progress.update(task, advance=1, description=f"QAT epoch {epoch + 1}/{epochs}",
                                loss=f"loss {loss.item():.4f}")
            history.append(total / max(1, count))
            log.info("fit_qat epoch %d: mean loss %.4f", epoch + 1, history[-1])
    return history
