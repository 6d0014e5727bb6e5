"""``prepare_qat``: swap Conv2d/Linear (with following BatchNorm2d / ReLU) for QAT modules.

Fusion follows ``torch.ao.quantization.fuse_modules``' patterns, found automatically inside
``nn.Sequential`` containers (where call order is known): ``Conv2d → BatchNorm2d → ReLU``,
``Conv2d → BatchNorm2d``, ``Conv2d → ReLU``, ``Linear → ReLU``. Outside a Sequential each
Conv2d/Linear is replaced alone (its output quantized before whatever follows).

Float regions: modules whose qualified name matches a ``skip`` glob, a recipe rule with
``action="float"`` (its ``nodes`` globs are read as module names), or that were marked with
:func:`float_region` / wrapped in :class:`FloatRegion`, keep their float modules. The output
of each (outermost) float region is fake-quantized again (PyTorch's ``QuantStub`` boundary) so
the layers after it read a quantized tensor, as they will in the deployed integer graph.
"""

from __future__ import annotations

import copy
import fnmatch
import inspect
import logging
from collections.abc import Iterable

import torch
from torch import nn

from edgequant.errors import RecipeError
from edgequant.recipes.builtin import get_recipe
from edgequant.recipes.recipe import Recipe
from edgequant.spec import QuantSpec
from edgequant.torch.capture import prepare_graph_qat
from edgequant.torch.fuse import close_names, fuse_groups
from edgequant.torch.graph_qat import GraphQAT
from edgequant.torch.qat_modules import QATConv2d, QATLinear
from edgequant.torch.quantizers import DEFAULT_MOMENTUM, ActivationQuantizer, ScaleTracker
from edgequant.torch.regions import _FLOAT_MARK, FloatRegion, float_region  # noqa: F401 (re-export)

log = logging.getLogger(__name__)

class QATModel(nn.Module):
    """The prepared model: fake-quantizes the tensor inputs, then runs the QAT-swapped module.

    Behaves like the original module (same call signature and outputs) so an existing
    training loop works unchanged.
    """

    def __init__(self, model: nn.Module, act_spec: QuantSpec | None, momentum: float,
                 learn_scales: bool, recipe: Recipe) -> None:
        super().__init__()
        self.model = model
        self.recipe = recipe
        self.recipe_name = recipe.name
        self.act_spec = act_spec
        self._momentum, self._learn = momentum, learn_scales
        # One quantizer per positional input, created now so an optimizer built right after
        # prepare_qat sees every (LSQ) scale; more are added if the model is called with more.
        n_inputs = max(1, _positional_inputs(model))
        self.input_quant = nn.ModuleList(
            ActivationQuantizer(act_spec, momentum, learn_scales) for _ in range(n_inputs)
        ) if act_spec is not None else nn.ModuleList()

    def forward(self, *args, **kwargs):
        """Fake-quantize floating-point tensor positional inputs, then run the model."""
        if getattr(self, "tracker", None) is not None:
            self.tracker.last = None
        if self.act_spec is not None:
            while len(self.input_quant) < len(args):  # one quantizer per positional input
                q = ActivationQuantizer(self.act_spec, self._momentum, self._learn)
                q.tracker = getattr(self, "tracker", None)
                self.input_quant.append(q)
            args = tuple(
                q(a) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                for q, a in zip(self.input_quant, args, strict=False)
            ) + args[len(self.input_quant):]
        return self.model(*args, **kwargs)


def _positional_inputs(model: nn.Module) -> int:
    """Number of required positional parameters of ``model.forward``."""
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in kinds and p.default is inspect.Parameter.empty)


def _recipe_of(recipe: str | Recipe) -> Recipe:
    if isinstance(recipe, str):
        return get_recipe(recipe)
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe of type {type(recipe).__name__} is not allowed: use a name "
                        "(e.g. 'w4a8') or an edgequant.Recipe")
    return recipe


def _skip_globs(recipe, skip: Iterable[str] | None) -> list[str]:
    globs = list(skip or [])
    for rule in recipe.rules:
        if rule.action == "float":
            if rule.op_types:
                log.warning("prepare_qat ignores op_types=%s of float rule %s: QAT matches "
                            "module names only", list(rule.op_types), rule.label)
            globs.extend(rule.nodes)
    return globs


def _check_globs(globs: list[str], names: list[str]) -> None:
    for g in globs:
        if not any(fnmatch.fnmatchcase(n, g) for n in names):
            raise RecipeError(
                f"float-region pattern {g!r} matches no module of the model; "
                f"close names: {close_names(g, names)}"
            )


def prepare_qat(
    module: nn.Module,
    recipe="w8a8",
    skip: Iterable[str] | None = None,
    learn_scales: bool = False,
    momentum: float = DEFAULT_MOMENTUM,
    fuse: Iterable[Iterable[str]] = (),
    *,
    example_inputs=None,
    calibration=None,
) -> QATModel | GraphQAT:
    """Return a QAT copy of ``module`` quantized per ``recipe`` (a name or a Recipe).

    With ``example_inputs`` (recommended) the whole graph is captured and trained with the
    exact plan PTQ resolves for ``recipe`` (:mod:`edgequant.torch.capture`): every tensor the
    exported model quantizes is fake-quantized in training, on any ``nn.Module``;
    ``calibration`` then starts training where :func:`edgequant.quantize` ends: the recovery
    the recipe enables (bias correction, CLE, weight clip search, range search, AdaRound: the
    weights placed on its learned integers) and PTQ's calibrated qparams (docs/qat.md,
    "Fine-tuning from PTQ").

    Without ``example_inputs`` (the older module-swap path, described below) only Conv2d /
    Linear outputs are quantized in training.

    Weights use ``recipe.weights`` (per-channel symmetric, 2–8 bits), activations and model
    inputs ``recipe.activations`` with moving-average min/max (``momentum``); with
    ``learn_scales=True`` all scales become parameters trained with LSQ. ``skip`` lists module
    name globs kept in float. ``fuse`` lists explicit ``[conv, bn?, relu?]`` / ``[linear,
    relu?]`` name groups for models that are not Sequential (see :mod:`edgequant.torch.fuse`).
    The input module is not modified.
    """
    rec = _recipe_of(recipe)
    if example_inputs is not None:
        if list(fuse):
            log.info("prepare_qat: fuse groups are not needed with example_inputs (the "
                     "captured graph fuses like export) and are ignored")
        return prepare_graph_qat(module, rec, example_inputs, calibration=calibration,
                                 skip=skip, learn_scales=learn_scales, momentum=momentum)
    if calibration is not None:
        raise ValueError("calibration= needs example_inputs= (whole-graph QAT)")
    log.warning("prepare_qat without example_inputs quantizes only Conv2d/Linear outputs in "
                "training; pass example_inputs= to train every tensor the export quantizes")
    w_spec, a_spec = rec.weights, rec.activations
    if rec.mode == "dynamic":
        a_spec = None  # activations are quantized at run time, not with trained ranges
    if w_spec is None:
        raise RecipeError(f"recipe {rec.name!r} has no weights spec: QAT needs "
                          "quantized weights (use e.g. w8a8 or w4a8)")
    model = copy.deepcopy(module)
    names = [n for n, _ in model.named_modules() if n]
    globs = _skip_globs(rec, skip)
    _check_globs(globs, names)
    floats = {n for n in names if any(fnmatch.fnmatchcase(n, g) for g in globs)}
    floats |= {n for n, m in model.named_modules() if n and getattr(m, _FLOAT_MARK, False)}
    floats |= {f"{n}.module" for n, m in model.named_modules() if isinstance(m, FloatRegion)}
    floats |= {n for n, m in model.named_modules() if isinstance(m, FloatRegion)}
    swapped = fuse_groups(model, fuse, w_spec, a_spec, learn_scales, momentum)
    swapped += _swap(model, "", w_spec, a_spec, floats, learn_scales, momentum)
    if a_spec is not None:
        for name in _outermost(floats):
            _add_boundary(model.get_submodule(name), a_spec, momentum, learn_scales)
    log.info("prepare_qat: %d modules swapped for QAT, %d float regions", swapped, len(floats))
    if swapped == 0:
        log.warning("prepare_qat found no Conv2d/Linear to quantize outside float regions")
    qat = QATModel(model, a_spec, momentum, learn_scales, rec)
    tracker = ScaleTracker()  # shared by this model's quantizers (deepcopy keeps it shared)
    for m in qat.modules():
        if isinstance(m, ActivationQuantizer | QATConv2d | QATLinear):
            m.tracker = tracker
    qat.tracker = tracker
    return qat


BOUNDARY_ATTR = "edgequant_out_quant"


def _outermost(names: set[str]) -> list[str]:
    return sorted(n for n in names if not any(n.startswith(f"{p}.") for p in names))


def _boundary_hook(module: nn.Module, args, output):
    """Re-enter the quantized domain after a float region (PyTorch's QuantStub)."""
    quant = getattr(module, BOUNDARY_ATTR, None)
    return quant(output) if quant is not None and isinstance(output, torch.Tensor) else output


def _add_boundary(region: nn.Module, spec: QuantSpec, momentum: float, learn: bool) -> None:
    """Fake-quantize ``region``'s output so the layers after it read a quantized tensor."""
    region.add_module(BOUNDARY_ATTR, ActivationQuantizer(spec, momentum, learn))
    region.register_forward_hook(_boundary_hook)


def _swap(parent: nn.Module, prefix: str, w_spec, a_spec, floats: set[str],
          learn: bool, momentum: float) -> int:
    """Replace quantizable children of ``parent`` recursively; returns how many were swapped."""
    count = 0
    children = list(parent.named_children())
    sequential = isinstance(parent, nn.Sequential)
    i = 0
    while i < len(children):
        name, child = children[i]
        full = f"{prefix}{name}"
        if full in floats:
            i += 1
            continue
        if isinstance(child, nn.Conv2d | nn.Linear):
            bn = relu = None
            j = i + 1
            if sequential and isinstance(child, nn.Conv2d) and j < len(children) \
                    and isinstance(children[j][1], nn.BatchNorm2d) \
                    and f"{prefix}{children[j][0]}" not in floats:
                bn = children[j]
                j += 1
            if sequential and j < len(children) and isinstance(children[j][1], nn.ReLU) \
                    and f"{prefix}{children[j][0]}" not in floats:
                relu = children[j]
                j += 1
            kw = dict(relu=relu is not None, learn_scales=learn, momentum=momentum)
            if isinstance(child, nn.Conv2d):
                new: nn.Module = QATConv2d(child, w_spec, a_spec,
                                           bn=bn[1] if bn else None, **kw)
            else:
                new = QATLinear(child, w_spec, a_spec, **kw)
            setattr(parent, name, new)
            for fused in (bn, relu):
                if fused is not None:  # keep indices of the Sequential; the QAT module does it
                    setattr(parent, fused[0], nn.Identity())
            count += 1
            i = j
            continue
        count += _swap(child, f"{full}.", w_spec, a_spec, floats, learn, momentum)
        i += 1
    return count


def qat_modules(model: nn.Module) -> dict[str, QATConv2d | QATLinear]:
    """Qualified name → QAT module, for every swapped module of ``model``."""
    return {n: m for n, m in model.named_modules() if isinstance(m, QATConv2d | QATLinear)}


def freeze_bn(model: nn.Module) -> None:
    """Switch every QAT Conv+BN to folding with (frozen) running statistics."""
    for m in model.modules():
        if isinstance(m, QATConv2d):
            m.freeze_bn()


def freeze_observers(model: nn.Module) -> None:
    """Stop updating every activation range (moving-average qparams become fixed)."""
    for m in model.modules():
        if isinstance(m, ActivationQuantizer):
            m.freeze()


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable) -> None:
    """Run ``batches`` through ``model`` in eval mode with the observers updating (PTQ-style).

    BatchNorm statistics are untouched (eval mode); each batch is a tensor or an ``(x, y)``
    tuple whose first element is fed.
    """
    was_training = model.training
    quantizers = [m for m in model.modules() if isinstance(m, ActivationQuantizer)]
    model.eval()
    for q in quantizers:
        q.calibrating = True
    try:
        for batch in batches:
            x = batch[0] if isinstance(batch, tuple | list) else batch
            model(x)
    finally:
        for q in quantizers:
            q.calibrating = False
        model.train(was_training)
