"""Knowledge distillation and a small QAT training loop with a rich progress bar."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from edgequant.torch.prepare import freeze_bn, freeze_observers

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
) -> list[float]:
    """Train ``module`` in place with Adam on ``(x, y)`` batches; returns mean loss per epoch.

    With a ``teacher`` the loss is ``alpha · distillation_loss + (1 − alpha) · loss_fn``.
    ``freeze_bn_epoch`` / ``freeze_observers_epoch``: from that epoch on, Conv+BN folds with
    frozen running statistics and activation ranges stop moving (Jacob et al. 2018).
    Learned (LSQ) scales get their own learning rate ``scale_lr`` (default ``lr / 10``):
    Adam normalises gradient magnitudes, so LSQ's gradient scaling alone does not keep a
    scale of ~0.01 from moving by ``lr`` per step.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha} is not allowed: use 0 <= alpha <= 1")
    scales = [p for n, p in module.named_parameters() if n.endswith("quant.scale")]
    ids = {id(p) for p in scales}
    others = [p for p in module.parameters() if id(p) not in ids]
    groups = [{"params": others, "lr": lr}]
    if scales:
        groups.append({"params": scales, "lr": lr / 10 if scale_lr is None else scale_lr})
    opt = torch.optim.Adam(groups)
    if teacher is not None:
        teacher.eval()
    history: list[float] = []
    batches = list(loader) if not hasattr(loader, "__len__") else loader
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
            for x, y in batches:
                out = module(x)
                loss = loss_fn(out, y)
                if teacher is not None:
                    with torch.no_grad():
                        t_out = teacher(x)
                    loss = alpha * distillation_loss(out, t_out, T) + (1 - alpha) * loss
                opt.zero_grad()
                loss.backward()
                opt.step()
                total, count = total + loss.item() * len(x), count + len(x)
                progress.update(task, advance=1, description=f"QAT epoch {epoch + 1}/{epochs}",
                                loss=f"loss {loss.item():.4f}")
            history.append(total / max(1, count))
            log.info("fit_qat epoch %d: mean loss %.4f", epoch + 1, history[-1])
    return history
