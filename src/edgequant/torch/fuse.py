"""Explicit fusion groups for models whose call order is not a Sequential.

``prepare_qat(model, recipe, fuse=[["conv1", "bn1", "relu1"], ["fc1", "act"]])`` fuses each
group like ``torch.ao.quantization.fuse_modules``: the first module (Conv2d or Linear) becomes
the QAT module, an optional BatchNorm2d (after a Conv2d) is folded into it, an optional ReLU
is fused into its output range, and the other members become ``nn.Identity``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from torch import nn

from edgequant.errors import RecipeError
from edgequant.spec import QuantSpec
from edgequant.torch.qat_modules import QATConv2d, QATLinear


def close_names(name: str, names: list[str]) -> list[str]:
    """Module names resembling ``name`` (for error messages)."""
    return difflib.get_close_matches(name, names, n=5, cutoff=0.4) or names[:8]


def _get(model: nn.Module, name: str, names: list[str]) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise RecipeError(
            f"fuse group names module {name!r}, which the model does not have; "
            f"close names: {close_names(name, names)}"
        ) from None


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def fuse_groups(model: nn.Module, groups: Iterable[Iterable[str]], w_spec: QuantSpec,
                a_spec: QuantSpec | None, learn: bool, momentum: float) -> int:
    """Replace each group in place (see the module docstring); returns how many were fused."""
    names = [n for n, _ in model.named_modules() if n]
    count = 0
    for group in groups:
        members = list(group)
        mods = [_get(model, n, names) for n in members]
        kinds = [type(m).__name__ for m in mods]
        head, rest = mods[0], mods[1:]
        bn = rest.pop(0) if rest and isinstance(rest[0], nn.BatchNorm2d) else None
        relu = rest.pop(0) if rest and isinstance(rest[0], nn.ReLU) else None
        ok = isinstance(head, nn.Conv2d | nn.Linear) and not rest \
            and (bn is None or isinstance(head, nn.Conv2d))
        if not ok:
            raise RecipeError(
                f"fuse group {members} has module types {kinds}: allowed are "
                "[Conv2d, BatchNorm2d?, ReLU?] and [Linear, ReLU?]"
            )
        kw = dict(relu=relu is not None, learn_scales=learn, momentum=momentum)
        new: nn.Module = (QATConv2d(head, w_spec, a_spec, bn=bn, **kw)
                          if isinstance(head, nn.Conv2d) else QATLinear(head, w_spec, a_spec, **kw))
        _set(model, members[0], new)
        for name in members[1:]:
            _set(model, name, nn.Identity())
        count += 1
    return count
