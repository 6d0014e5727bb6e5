"""Capture an ``nn.Module`` for whole-graph QAT: torch.export → ONNX → the PTQ plan.

:func:`prepare_graph_qat` is what ``prepare_qat(module, recipe, example_inputs=...)`` runs:

1. :func:`edgequant.torch.export.export_onnx` captures the module with ``torch.export`` (the
   dynamo ONNX exporter), so any ``forward`` — submodules, ``torch.nn.functional`` calls,
   residual adds, reshapes — is captured, not only ``nn.Sequential`` chains. The exporter
   records each node's module path, read here for ``skip`` and error messages.
2. :func:`edgequant.graph.passes.fold.prepare_float` cleans the graph exactly as
   :func:`edgequant.quantize` does (BatchNorm folded with its running statistics: training
   runs with frozen BN statistics from the first step).
3. :func:`edgequant.ptq.transformer.prepare_transformer` (PTQ's transformer step: rule set,
   SmoothQuant / outlier options) then :func:`edgequant.recipes.plan.resolve` give the plan —
   the same one PTQ executes.
4. :class:`edgequant.torch.graph_qat.GraphQAT` trains that graph with the plan's fake
   quantization, optionally started from PTQ's result (recovery, calibrated activation
   qparams, AdaRound's integers: :func:`qat_from_capture`).
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from edgequant.errors import RecipeError, UnsupportedOpError
from edgequant.graph.passes.fold import prepare_float
from edgequant.graph.passes.mask_path import finite_mask_constants
from edgequant.ptq.calibrate import DEFAULT_BATCH
from edgequant.ptq.calibrate import calibrate as ptq_calibrate
from edgequant.ptq.recovery import recover
from edgequant.ptq.recovery.keep_int8 import with_int8_layers
from edgequant.ptq.recovery.range_search import search_ranges
from edgequant.ptq.recovery.weight_clip import clip_search
from edgequant.ptq.transformer import prepare_transformer
from edgequant.qparams import QParams
from edgequant.recipes.options import option
from edgequant.recipes.plan import QuantPlan, resolve
from edgequant.recipes.recipe import Recipe, Rule
from edgequant.torch.adaround_start import adaround_start, load_grid_clips
from edgequant.torch.calibration import calibration_feeds
from edgequant.torch.export import as_tuple, export_onnx
from edgequant.torch.fuse import close_names
from edgequant.torch.graph_qat import GraphQAT
from edgequant.torch.onnx_ops import OPS
from edgequant.torch.quantizers import DEFAULT_MOMENTUM
from edgequant.torch.regions import _FLOAT_MARK, FloatRegion

log = logging.getLogger(__name__)

#: Name of the recipe rule that keeps ``skip``-ped modules float.
SKIP_RULE = "qat: skip"


def module_path(node: onnx.NodeProto) -> str:
    """The innermost module path the dynamo exporter recorded for ``node`` ('' if none)."""
    # ": pkg.Net/blocks.0: pkg.Block/blocks.0.se: pkg.SE/conv2d_3: aten.conv2d.default":
    # the root, then each module's full path, then the aten op.
    ns = next((p.value for p in node.metadata_props if p.key == "namespace"), "")
    parts = [p.split(": ")[0] for p in ns.split("/")[1:] if ": " in p]
    return parts[-2] if len(parts) >= 2 else ""


def _label(node: onnx.NodeProto) -> str:
    return node.name or node.output[0]


def _escape(name: str) -> str:
    """A glob matching exactly ``name``."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def _inside(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(f"{prefix}.")


def check_ops(graph: onnx.ModelProto, modules: dict[str, str]) -> None:
    """Every node has a torch implementation, else an error naming node, op and module."""
    bad = [n for n in graph.graph.node if n.op_type not in OPS]
    if bad:
        listed = "; ".join(f"node {_label(n)!r} ({n.op_type}) in module "
                           f"{modules.get(_label(n)) or '<top level>'!r}" for n in bad[:5])
        raise UnsupportedOpError(
            f"QAT cannot train {len(bad)} node(s) of unsupported op type(s) "
            f"{sorted({n.op_type for n in bad})}: {listed}. Supported ops: {sorted(OPS)}; "
            "keep such a module out of the model you train (or quantize it with PTQ)")


def _batches(feeds: dict[str, np.ndarray], size: int) -> Iterable[dict[str, np.ndarray]]:
    n = len(next(iter(feeds.values())))
    for s in range(0, n, size):
        yield {k: v[s:s + size] for k, v in feeds.items()}


def _input_names(graph: onnx.ModelProto) -> list[str]:
    inits = {t.name for t in graph.graph.initializer}
    return [i.name for i in graph.graph.input if i.name not in inits]


def ptq_qparams(graph: onnx.ModelProto, plan: QuantPlan, calibration, example: tuple
                ) -> dict[str, QParams]:
    """PTQ's calibrated qparams (same observers as :func:`edgequant.quantize`) per plan key,
    measured on the float ``graph`` ``plan`` was resolved on."""
    specs = {k: d.spec for k, d in plan.tensors.items()
             if d.role == "activation" and d.action == "quantize" and d.mode == "static"}
    if not specs:
        return {}
    shapes = [tuple(a.shape[1:]) for a in example]
    feeds = calibration_feeds(calibration, _input_names(graph), shapes)
    return ptq_calibrate(graph, specs, _batches(feeds, DEFAULT_BATCH),
                         tensors={k: plan.tensors[k].tensor for k in specs})


def _load_clip_ratios(qat: GraphQAT, graph: onnx.ModelProto, searched: dict,
                      skip: Iterable[str] = ()) -> None:
    """Give each weight quantizer PTQ's searched range ratio (``weight_clip``), so QAT's
    weight qparams start equal to PTQ's and keep that clipping as the weights train
    (weights in ``skip`` — AdaRound's grid points — get theirs from :func:`load_grid_clips`)."""
    inits = {t.name: t for t in graph.graph.initializer}
    for d in qat.plan.quantized("weight", mode="static"):
        q = (qat.quantizer(d.tensor) if d.tensor in searched and d.tensor in inits
             and d.tensor not in skip else None)
        if q is not None:
            _, alpha = clip_search(numpy_helper.to_array(inits[d.tensor]), d.spec)
            q.clip.copy_(torch.from_numpy(np.asarray(alpha, np.float32)).reshape(q.clip.shape))


@dataclass(frozen=True)
class Capture:
    """A module captured once: its prepared float graph (the one every recipe's plan is
    resolved on), node label → module path, and the module's own module names."""

    graph: onnx.ModelProto
    modules: dict[str, str]
    module_names: tuple[str, ...]
    float_marked: tuple[str, ...]
    example: tuple


def capture(module: nn.Module, example_inputs) -> Capture:
    """Export ``module`` with ``torch.export`` and prepare the float graph like PTQ does."""
    args = as_tuple(example_inputs)
    raw = export_onnx(module, args)
    modules = {_label(n): module_path(n) for n in raw.graph.node}
    raw, notes = finite_mask_constants(raw)  # as edgequant.quantize: −inf masks → MASK_FILL
    graph = prepare_float(raw, notes)
    check_ops(graph, modules)
    marked = tuple(n for n, m in module.named_modules()
                   if n and (getattr(m, _FLOAT_MARK, False) or isinstance(m, FloatRegion)))
    return Capture(graph, modules, tuple(n for n, _ in module.named_modules() if n), marked,
                   args)


def check_skip(skip: Iterable[str], names: Iterable[str]) -> list[str]:
    """The module names ``skip`` globs select; a glob selecting none is an error."""
    names = list(names)
    chosen: list[str] = []
    for g in skip:
        hits = [n for n in names if fnmatch.fnmatchcase(n, g)]
        if not hits:
            raise RecipeError(f"skip pattern {g!r} matches no module of the model; close "
                              f"names: {close_names(g, names)}")
        chosen += hits
    return chosen


def qat_from_capture(cap: Capture, recipe: Recipe, *, calibration=None,
                     skip: Iterable[str] | None = None, learn_scales: bool = False,
                     momentum: float = DEFAULT_MOMENTUM) -> GraphQAT:
    """A fresh :class:`GraphQAT` of a captured module for ``recipe`` (see the module docstring).

    ``calibration`` (batches / tensor / dict like :func:`edgequant.torch.quantize` takes):
    training starts from exactly what PTQ (:func:`edgequant.quantize`) makes of it — the
    recovery the recipe enables (e.g. ``bias_correction``, on by default below 8-bit weights;
    ``cle``; ``weight_clip``) applied to the float graph, the activation quantizers loaded with
    PTQ's calibrated qparams (``range_search``: its chosen observers'), and with
    ``adaround=True`` PTQ's AdaRound stage run and its integers and corrected biases loaded
    (:mod:`edgequant.torch.adaround_start`; AdaRound needs ``calibration``). Without it the
    quantizers initialise on the first training batch. What PTQ's start did is in
    ``qat.ptq_report`` (``recovery``, ``range_search``, ``adaround`` as in PTQ's report).
    """
    if recipe.mode not in ("static", "weight_only"):
        raise RecipeError(f"recipe {recipe.name!r} is {recipe.mode}: QAT trains static "
                          "(e.g. w8a8, w8a16, w4a8) or weight-only recipes")
    chosen = set(check_skip(skip or (), cap.module_names)) | set(cap.float_marked)
    labels = [_label(n) for n in cap.graph.graph.node]
    nodes = [lb for lb in labels if any(_inside(cap.modules.get(lb, ""), c) for c in chosen)]
    if chosen and not nodes:
        raise RecipeError(f"skipped module(s) {sorted(chosen)} compute no node of the exported "
                          "graph (the exporter did not record them)")
    if nodes:
        rule = Rule(nodes=tuple(_escape(n) for n in nodes), action="float", name=SKIP_RULE)
        recipe = replace(recipe, rules=(*recipe.rules, rule))
    graph = onnx.ModelProto()
    graph.CopyFrom(cap.graph)
    feeds = None
    adaround = recipe.mode == "static" and bool(option(recipe, "adaround"))
    if calibration is not None:
        feeds = calibration_feeds(calibration, _input_names(graph),
                                  [tuple(a.shape[1:]) for a in cap.example])
    elif adaround:
        raise RecipeError(f"recipe {recipe.name!r} sets adaround=True: QAT starts from "
                          "AdaRound's integers, which are learned on calibration data; pass "
                          "calibration= (or use the recipe with adaround=False)")
    if option(recipe, "transformer_ffn_output") == "dynamic":
        # QAT does not simulate per-row dynamic quantization: the FFN-output MatMuls train
        # and deploy float (PTQ's transformer_ffn_output='float' plan)
        log.info("prepare_qat: transformer FFN-output MatMuls stay float (per-row dynamic "
                 "int8, PTQ's default, is not simulated in training)")
        recipe = recipe.with_options(transformer_ffn_output="float")
    # PTQ's transformer step (edgequant.quantize): the same rule set, SmoothQuant, outliers
    graph, recipe, _, _ = prepare_transformer(graph, recipe, feeds, [],
                                              batch_size=DEFAULT_BATCH)
    plan = resolve(recipe, graph)
    float_graph = graph  # the float reference of feature distillation (before recovery)
    kept = with_int8_layers(graph, plan, recipe, feeds, batch_size=DEFAULT_BATCH)  # as PTQ
    if kept.recipe is not recipe:  # w4_keep_int8: the same layers train with 8-bit weights
        recipe, plan, feeds = kept.recipe, resolve(kept.recipe, graph), kept.calibration
    grid: dict[str, QParams] = {}  # AdaRounded weight → the qparams its quantizer must give
    ptq_report: dict = {}
    if feeds is not None:  # start from PTQ's result: its recovery, then its ranges
        recovered = recover(graph, plan, recipe, feeds)
        graph, plan = recovered.model, recovered.plan
        if recovered.report:
            ptq_report["recovery"] = recovered.report
            log.info("prepare_qat: PTQ recovery %s applied to the float graph before training",
                     recovered.report.get("techniques"))
        act = ptq_qparams(graph, plan, feeds, cap.example)  # as PTQ: before AdaRound
        if recipe.mode == "static" and option(recipe, "range_search"):  # PTQ's observers
            act.update(search_ranges(graph, plan, feeds, recovered.weight_qparams, "float",
                                     DEFAULT_BATCH, None, ptq_report))
        if adaround:  # PTQ's AdaRound stage: weights on its integers, biases corrected
            recovered_floats = graph
            graph, grid, more = adaround_start(graph, plan, act, recovered.weight_qparams,
                                               feeds, DEFAULT_BATCH)
            ptq_report.update(more)
    qat = GraphQAT(graph, plan, learn_scales, momentum, cap.modules)
    if grid:  # learned rounding's two integers come from the floats AdaRound rounded
        qat.rounding_reference = {t.name: numpy_helper.to_array(t).copy()
                                  for t in recovered_floats.graph.initializer if t.name in grid}
    qat.float_graph = float_graph
    #: what PTQ's start did (``recovery``, ``adaround``), as in ``edgequant.quantize``'s report
    qat.ptq_report = ptq_report
    if feeds is not None:
        _load_clip_ratios(qat, graph, recovered.weight_qparams, skip=grid)
        load_grid_clips(qat, grid)
        qat.load_activation_qparams(act)
    n_act = sum(1 for d in plan.tensors.values() if d.role == "activation"
                and d.action == "quantize")
    log.info("prepare_qat: %d nodes, %d quantized activations, %d quantized weights, %d float "
             "nodes", len(labels), n_act, len(qat.weight_quant), len(plan.float_nodes()))
    return qat


def prepare_graph_qat(module: nn.Module, recipe: Recipe, example_inputs, *,
                      calibration=None, skip: Iterable[str] | None = None,
                      learn_scales: bool = False, momentum: float = DEFAULT_MOMENTUM
                      ) -> GraphQAT:
    """:func:`capture` then :func:`qat_from_capture`; the input module is not modified."""
    check_skip(skip or (), [n for n, _ in module.named_modules() if n])  # before the export
    qat = qat_from_capture(capture(module, example_inputs), recipe, calibration=calibration,
                           skip=skip, learn_scales=learn_scales, momentum=momentum)
    qat.train(module.training)
    return qat


def example_batch(qat: GraphQAT) -> tuple[torch.Tensor, ...]:
    """Zero inputs of batch 2 for the graph's inputs (shapes from the graph; dynamic dims 2)."""
    out = []
    for vi in qat.graph.graph.input:
        if vi.name not in qat.input_names:
            continue
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 2
                for d in tt.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        out.append(torch.from_numpy(np.zeros(dims, dtype)))
    return tuple(out)
