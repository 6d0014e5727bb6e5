"""The public entry point: ``quantize(model, recipe, calibration)`` → ``QuantizedModel``.

Stages (each hands plain data to the next): load + float clean-up → ``resolve`` the recipe
into a ``QuantPlan`` → calibrate activations (static mode) → graph edits → checks.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgequant.errors import CalibrationError, RecipeError, UnsupportedOpError
from edgequant.export.validate import InvalidOutputError
from edgequant.graph.already_quantized import refuse_or_dequantize
from edgequant.graph.contract import META_FORMAT, META_IO, META_RECIPE, tensor_stem
from edgequant.graph.io import as_model_proto, check_finite_weights, copy_model
from edgequant.graph.passes.dynamic import dynamic_matmuls
from edgequant.graph.passes.fold import prepare_float
from edgequant.graph.passes.fp16 import store_fp16
from edgequant.graph.passes.gather_weights import quantize_gathers
from edgequant.graph.passes.insert_qdq import insert_qdq
from edgequant.graph.passes.mask_path import finite_mask_constants
from edgequant.graph.passes.weight_only import dequantize_weights, unfused_dequantize_weights
from edgequant.ptq.auxiliary import guarded_speed_check
from edgequant.ptq.calibrate import DEFAULT_BATCH, Progress, calibrate, calibration_batches
from edgequant.ptq.coverage import check_coverage
from edgequant.ptq.recovery import recover
from edgequant.ptq.recovery.adaround import adaround_stage
from edgequant.ptq.recovery.keep_int8 import with_int8_layers
from edgequant.ptq.recovery.range_search import search_ranges
from edgequant.ptq.recovery.samples import reusable
from edgequant.ptq.transformer import prepare_transformer
from edgequant.qparams import QParams
from edgequant.recipes.builtin import get_recipe
from edgequant.recipes.options import option
from edgequant.recipes.plan import QuantPlan, resolve
from edgequant.recipes.recipe import Recipe
from edgequant.report.precision import precision_rows
from edgequant.runtime.feeds import model_inputs, validation_sample
from edgequant.spec import PerTensor, QType, QuantSpec

log = logging.getLogger(__name__)

IO_CHOICES = ("float", "int8", "uint8")

Calibration = str | os.PathLike | Mapping[str, np.ndarray] | Iterable[Mapping[str, np.ndarray]]


@dataclass
class QuantizedModel:
    """A quantized ONNX model with the plan that made it and a report of what happened."""

    model: onnx.ModelProto
    plan: QuantPlan
    qparams: dict[str, QParams] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    #: one calibration batch: the written model is run on it before it is reported written
    sample: dict[str, np.ndarray] | None = None

    def save(self, path: str | os.PathLike, *, format: str | None = None,
             to: str | None = None, strict: bool = False,
             fixed_dims: Mapping[str, int] | None = None) -> Path:
        """Write atomically. ``.tflite`` (or ``to="tflite"``) uses the TFLite exporter
        (``fixed_dims`` sizes named dynamic dims, e.g. ``{"time": 12}``); otherwise ONNX, as
        QDQ (``format="qdq"``, default) or integer-only (``"qop"``)."""
        from edgequant.export import export, format_for

        fmt = format_for(path, format, to)
        inputs = (self.source,) if self.source else ()
        return export(self, path, fmt, strict=strict, inputs=inputs, sample=self.sample,
                      fixed_dims=fixed_dims)


def quantize(model, recipe: str | Recipe = "w8a8", calibration: Calibration | None = None, *,
             io: str = "float", strict: bool = False, qparams: Mapping[str, QParams] | None = None,
             batch_size: int = DEFAULT_BATCH, progress: Progress | None = None,
             check_speed: bool = False, batch_axes: Mapping[str, int] | None = None,
             requantize: bool = False,
             stage_progress: Callable[[str, int, int], None] | None = None
             ) -> QuantizedModel:
    """Quantize a float ONNX model (path, ``onnx.ModelProto`` or ``onnx_ir.Model``).

    ``calibration`` (static recipes) is a DATA.npz path, a dict input name → array (samples on
    the first axis) or an iterable of such dicts. ``io`` makes model inputs/outputs integer
    (static recipes). ``strict`` turns every op left in float and every rule that matched
    nothing into an error. ``qparams`` overrides calibrated / computed qparams by tensor name
    (quantization-aware training hands its trained ranges here). ``check_speed=True`` (or
    the recipe option ``speed_guard``) runs the never-slower-than-float guard
    (``ptq.speed_guard``): float and quantized models timed side by side in onnxruntime (batch
    1), regions slower than float kept float, the result in ``report["speed"]`` and
    ``report["speedup_vs_float"]`` (the CLI turns it on; off by default here because timing
    costs seconds). ``batch_axes`` maps
    input name → the axis its calibration samples are on (default: the one symbolic dim,
    else 0; see ``edgequant.runtime.feeds``). An already quantized input (QDQ, QOperator,
    integer or fp16 weights) is refused naming its first quantized node, unless
    ``requantize=True``: then its weights are dequantized to float and quantized again, with a
    warning (``edgequant.graph.already_quantized``).
    ``stage_progress(stage, done, total)`` follows
    the recovery stages (``"adaround"``: layers done).

    The plan decides per node: static nodes get calibrated Q/DQ, weight-only nodes integer
    weights with float compute, dynamic nodes run-time activation scales, fp16 nodes float16
    weight storage, float nodes nothing — all in one model, whatever the recipe's name.
    """
    source = str(model) if isinstance(model, str | os.PathLike) else None
    rec = get_recipe(recipe) if isinstance(recipe, str) else recipe
    if not isinstance(rec, Recipe):
        raise TypeError(f"recipe of type {type(recipe).__name__} is not allowed: use a name or Recipe")
    if io not in IO_CHOICES:
        raise ValueError(f"io={io!r} is not allowed: use one of {IO_CHOICES}")
    if io != "float" and rec.mode != "static":
        raise RecipeError(f"--io {io} needs a full-integer recipe (w8a8, w8a16); {rec.name!r} "
                          f"is {rec.mode}")
    proto = as_model_proto(model)
    proto, requant_warning = refuse_or_dequantize(proto, requantize)
    proto, load_notes = finite_mask_constants(proto)  # -inf attention masks: before the check
    check_finite_weights(proto)
    float_model = prepare_float(proto, load_notes)
    float_model, rec, calibration, extra = prepare_transformer(
        float_model, rec, calibration, load_notes, batch_size=batch_size, batch_axes=batch_axes)
    plan = resolve(rec, float_model, io=io)
    kept = with_int8_layers(float_model, plan, rec, calibration, batch_size=batch_size,
                            batch_axes=batch_axes)  # w4_keep_int8
    if kept.recipe is not rec:
        rec, plan = kept.recipe, resolve(kept.recipe, float_model, io=io)
    calibration = kept.calibration
    overrides = dict(qparams or {})
    recovered = recover(float_model, plan, rec, calibration, overrides=overrides,
                        batch_size=batch_size, batch_axes=batch_axes)
    float_model, plan, calibration = recovered.model, recovered.plan, recovered.calibration
    overrides = {**recovered.weight_qparams, **overrides}  # searched weight ranges; given win
    report: dict[str, Any] = {"recipe": rec.name, "mode": rec.mode, "io": io,
                              "notes": load_notes, "warnings": list(requant_warning),
                              **extra}
    if recovered.report:
        report["recovery"] = recovered.report
    if kept.report:
        report["w4_keep_int8"] = kept.report
    _strict_check(plan, strict)
    report["warnings"] += check_coverage(float_model, plan, strict)

    qm = copy_model(float_model)  # passes edit in place; the float model stays for the speed check
    modes = plan.modes() | {rec.mode}  # the recipe's own pass runs even if it finds nothing
    used: dict[str, QParams] = {}
    if "fp16" in modes:
        qm, notes = store_fp16(qm, plan)
        report["notes"] += notes
    if modes & {"dynamic", "weight_only"}:
        qm, used = quantize_gathers(qm, plan, weight_qparams=overrides)
    if "static" in modes:
        if option(rec, "adaround") or option(rec, "range_search"):
            calibration = reusable(calibration)  # read more than once
        if option(rec, "range_search"):
            overrides = {**search_ranges(float_model, plan, calibration, overrides, io,
                                         batch_size, batch_axes, report), **overrides}
        act = _activation_qparams(float_model, plan, calibration, overrides, io, batch_size,
                                  progress, batch_axes, report["warnings"], strict)
        ints = None
        if option(rec, "adaround"):
            qm, ints = adaround_stage(float_model, qm, plan, act, overrides, io, calibration,
                                      batch_size, batch_axes, report, stage_progress)
        qm, more, notes = insert_qdq(qm, plan, act, overrides, io, weight_ints=ints)
        used.update(more)
        report["notes"] += notes
    elif calibration is not None:
        report["notes"].append(f"calibration data ignored: recipe {rec.name} needs none")
    # after the static Q/DQ: whether onnxruntime fuses an int4 MatMul depends on its
    # neighbours (it does not when the MatMul reads a DequantizeLinear or feeds a Q)
    if "weight_only" in modes and set(_weight_only_names(plan)) - set(used):
        qm, more = _weight_only(qm, plan, overrides, report)
        used.update(more)
    if "dynamic" in modes:
        qm, more = _dynamic(qm, plan, overrides, set(used), report)
        used.update(more)

    conv4 = int4_conv_note(qm)
    if conv4:
        report["notes"].append(conv4)
    props = {p.key: p.value for p in qm.metadata_props}
    props.update({META_RECIPE: rec.name, META_FORMAT: "qdq"})
    onnx.helper.set_model_props(qm, props)
    try:
        onnx.checker.check_model(qm)
    except onnx.checker.ValidationError as exc:  # a bug of ours: refuse to hand it back
        raise InvalidOutputError(f"edgequant produced an invalid model: "
                                 f"{str(exc).strip().splitlines()[0]}") from exc
    report["plan"] = {
        "quantized_nodes": sum(d.action == "quantize" for d in plan.nodes),
        "nodes_by_mode": dict(sorted(Counter(d.mode for d in plan.nodes
                                             if d.action == "quantize").items())),
        "float_nodes": [{"node": d.node, "op_type": d.op_type, "reason": d.reason}
                        for d in plan.float_nodes()],
        "unmatched_rules": list(plan.unmatched_rules),
        "quantized_tensors": len(used),
    }
    report["precision"] = precision_rows(plan, float_model)
    if io != "float":
        report["io_qparams"] = json.loads(props.get(META_IO, "{}"))
    result = QuantizedModel(qm, plan, used, report, source)
    result.sample = validation_sample(calibration, model_inputs(float_model, batch_axes))
    if check_speed or option(rec, "speed_guard"):  # auxiliary: a failure is a warning
        from edgequant.ptq.speed_guard import run_guard

        guarded: list[QuantizedModel] = []
        guarded_speed_check(float_model, report, lambda: guarded.append(run_guard(
            model, result, rec, calibration, quantize_fn=quantize, float_model=float_model,
            batch_axes=batch_axes, quantize_kwargs=dict(io=io, strict=strict, qparams=qparams,
                                                        batch_size=batch_size,
                                                        requantize=requantize))))
        result = guarded[0] if guarded else result
    return result


def _weight_only(qm: onnx.ModelProto, plan: QuantPlan, overrides, report
                 ) -> tuple[onnx.ModelProto, dict[str, QParams]]:
    """Weight-only nodes: integer weights (int4 blocks for MatMul / Gemm), float compute."""
    names = _weight_only_names(plan)
    first, more = dequantize_weights(copy_model(qm), plan, names, weight_qparams=overrides)
    slow = unfused_dequantize_weights(first)  # onnxruntime would dequantize every run
    stems = {w: tensor_stem(w) for w in more}
    cast_mul = frozenset(w for w, st in stems.items()
                         if f"{st}_quantized" in slow or f"{st}_t_quantized" in slow)
    if cast_mul:  # (``slow`` also holds the static weights' DequantizeLinear: not ours)
        qm, more = dequantize_weights(qm, plan, names, weight_qparams=overrides,
                                      cast_mul=cast_mul)
        report["notes"].append(
            f"{len(cast_mul)} weight-only MatMul/Gemm weight(s) ({', '.join(sorted(cast_mul))})"
            " decompressed by Cast/Mul at session start: onnxruntime would not fuse their "
            "DequantizeLinear into MatMulNBits here (e.g. next to Q/DQ or a fused activation)")
    else:
        qm = first
    gemm_inputs = {i for n in qm.graph.node if n.op_type in ("MatMul", "Gemm") for i in n.input}
    int4 = {t.name for t in qm.graph.initializer
            if t.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4)}
    int4_matmul = [n for n in qm.graph.node if n.op_type == "DequantizeLinear"
                   and n.input[0] in int4 and n.output[0] in gemm_inputs]
    if int4_matmul:  # only then can onnxruntime form MatMulNBits
        report["notes"].append(
            "onnxruntime fuses DequantizeLinear(int4) → MatMul into MatMulNBits, which by "
            "default computes with int8 activations (session option "
            "session.qdq_matmulnbits_accuracy_level=4); set it to 0 for float activations")
    return qm, more


def int4_conv_note(model: onnx.ModelProto) -> str | None:
    """A report note when ``model`` (QDQ) has convolutions with int4 weights, which onnxruntime
    (no int4 convolution kernel) runs as DequantizeLinear → float Conv; None if it has none."""
    int4 = {t.name for t in model.graph.initializer
            if t.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4)}
    dq4 = {n.output[0] for n in model.graph.node
           if n.op_type == "DequantizeLinear" and n.input[0] in int4}
    convs = [n.name or n.output[0] for n in model.graph.node
             if n.op_type in ("Conv", "ConvTranspose") and len(n.input) > 1 and n.input[1] in dq4]
    if not convs:
        return None
    return (f"{len(convs)} convolution(s) with int4 weights (first: {convs[0]}): onnxruntime has "
            "no int4 convolution kernel and runs them from this QDQ model as DequantizeLinear → "
            "float Conv → QuantizeLinear (float sums: not bit-exact with the integer reference); "
            "format='qop' (--format qop) writes them as QLinearConv on the same integers "
            "widened to int8: integer kernels, bit-exact")


def _weight_only_names(plan: QuantPlan) -> list[str]:
    return [t.tensor for t in plan.quantized("weight", mode="weight_only")]


def _dynamic(qm: onnx.ModelProto, plan: QuantPlan, overrides, done_before: set[str], report
             ) -> tuple[onnx.ModelProto, dict[str, QParams]]:
    """Dynamic nodes: MatMul / Gemm with run-time per-row activation scales; convolutions
    stored int8 and decompressed once at session start (no dynamic int8 conv kernel)."""
    qm, used, done = dynamic_matmuls(qm, plan, weight_qparams=overrides)
    rest = [t.tensor for t in plan.quantized("weight", mode="dynamic")
            if t.tensor not in done | done_before | set(used)]
    qm, more = dequantize_weights(qm, plan, names=rest, weight_qparams=overrides,
                                  cast_mul=frozenset(rest))
    used.update(more)
    if rest:
        report["notes"].append(f"{len(rest)} conv weight(s) stored int8, computed in float "
                               "(no dynamic int8 convolution kernel in onnxruntime)")
    return qm, used


def _strict_check(plan: QuantPlan, strict: bool) -> None:
    if not strict:
        return
    floats = plan.float_nodes()
    problems = [f"{d.node} ({d.op_type}): {d.reason}" for d in floats]
    problems += [f"rule {r} matched no node" for r in plan.unmatched_rules]
    if problems:
        raise UnsupportedOpError(
            f"--strict: {len(problems)} problem(s): " + "; ".join(problems)
        )


def _activation_qparams(model: onnx.ModelProto, plan: QuantPlan, calibration, overrides,
                        io: str, batch_size: int, progress, batch_axes=None,
                        warnings: list[str] | None = None, strict: bool = False
                        ) -> dict[str, QParams]:
    specs: dict[str, QuantSpec] = {}
    ins = {i.name for i in model_inputs(model)}
    outs = {o.name for o in model.graph.output}
    for key, d in plan.tensors.items():
        if (d.role != "activation" or d.action != "quantize" or d.mode != "static"
                or key in overrides):
            continue
        spec = d.spec
        if io != "float" and not d.consumers and (d.tensor in ins or d.tensor in outs):
            spec = replace(spec, qtype=QType(8, io == "int8"), granularity=PerTensor(),
                           symmetric=False)
        specs[key] = spec
    result = {k: v for k, v in overrides.items()}
    if not specs:
        return result
    if calibration is None:
        raise CalibrationError(
            f"recipe {plan.recipe.name!r} calibrates activations: give calibration data "
            "(--calibration DATA.npz, one array per model input, samples on the first axis)"
        )
    batches, total = calibration_batches(model, calibration, batch_size, batch_axes)
    sources = {k: plan.tensors[k].tensor for k in specs}
    result.update(calibrate(model, specs, batches, total=total, progress=progress,
                            tensors=sources, warnings=warnings, strict=strict))
    return result


def save_report(report: dict, path: str | os.PathLike, inputs=()) -> Path:
    """Write a report dict as JSON atomically, never onto one of ``inputs``."""
    from edgequant.outputs import write_text

    return write_text(path, json.dumps(report, indent=2, default=str), inputs)
