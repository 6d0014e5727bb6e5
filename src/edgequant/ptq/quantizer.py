"""The public entry point: ``quantize(model, recipe, calibration)`` → ``QuantizedModel``.

Stages (each hands plain data to the next): load + float clean-up → ``resolve`` the recipe
into a ``QuantPlan`` → calibrate activations (static mode) → graph edits → checks.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgequant.errors import CalibrationError, RecipeError, UnsupportedOpError
from edgequant.graph.contract import META_FORMAT, META_IO, META_RECIPE, tensor_stem
from edgequant.graph.io import as_model_proto, atomic_write, check_finite_weights
from edgequant.graph.passes.dynamic import dynamic_matmuls
from edgequant.graph.passes.fold import prepare_float
from edgequant.graph.passes.fp16 import store_fp16
from edgequant.graph.passes.gather_weights import quantize_gathers
from edgequant.graph.passes.insert_qdq import insert_qdq
from edgequant.graph.passes.weight_only import dequantize_weights, unfused_dequantize_weights
from edgequant.ptq.calibrate import DEFAULT_BATCH, Progress, calibrate
from edgequant.qparams import QParams
from edgequant.recipes.builtin import get_recipe
from edgequant.recipes.plan import QuantPlan, resolve
from edgequant.recipes.recipe import Recipe
from edgequant.runtime.batching import batches as sample_batches
from edgequant.runtime.feeds import load_feeds, model_inputs
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

    def save(self, path: str | os.PathLike, *, format: str | None = None,
             to: str | None = None, strict: bool = False) -> Path:
        """Write atomically. ``.tflite`` (or ``to="tflite"``) uses the TFLite exporter;
        otherwise ONNX, as QDQ (``format="qdq"``, default) or integer-only (``"qop"``)."""
        from edgequant.export import export, format_for

        fmt = format_for(path, format, to)
        inputs = (self.source,) if self.source else ()
        return export(self, path, fmt, strict=strict, inputs=inputs)


def quantize(model, recipe: str | Recipe = "w8a8", calibration: Calibration | None = None, *,
             io: str = "float", strict: bool = False, qparams: Mapping[str, QParams] | None = None,
             batch_size: int = DEFAULT_BATCH, progress: Progress | None = None,
             check_speed: bool = True) -> QuantizedModel:
    """Quantize a float ONNX model (path, ``onnx.ModelProto`` or ``onnx_ir.Model``).

    ``calibration`` (static recipes) is a DATA.npz path, a dict input name → array (samples on
    the first axis) or an iterable of such dicts. ``io`` makes model inputs/outputs integer
    (static recipes). ``strict`` turns every op left in float and every rule that matched
    nothing into an error. ``qparams`` overrides calibrated / computed qparams by tensor name
    (quantization-aware training hands its trained ranges here). ``check_speed`` times the
    float and quantized models side by side in onnxruntime (batch 1) and records the ratio in
    ``report["speedup_vs_float"]``, with a warning when the quantized model is slower.
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
    check_finite_weights(proto)
    float_model = prepare_float(proto)
    plan = resolve(rec, float_model, io=io)
    overrides = dict(qparams or {})
    report: dict[str, Any] = {"recipe": rec.name, "mode": rec.mode, "io": io, "notes": [],
                              "warnings": []}
    _strict_check(plan, strict)

    qm = _copy(float_model)  # passes edit in place; the float model stays for the speed check
    used: dict[str, QParams] = {}
    if rec.mode == "fp16":
        qm, notes = store_fp16(qm, plan)
        report["notes"] += notes
    if rec.mode in ("dynamic", "weight_only"):
        qm, used = quantize_gathers(qm, plan, weight_qparams=overrides)
    if rec.mode == "weight_only":
        first, more = dequantize_weights(_copy(qm), plan, weight_qparams=overrides)
        slow = unfused_dequantize_weights(first)  # onnxruntime would dequantize every run
        if slow:
            stems = {w: tensor_stem(w) for w in more}
            names = frozenset(w for w, st in stems.items()
                              if f"{st}_quantized" in slow or f"{st}_t_quantized" in slow)
            qm, more = dequantize_weights(qm, plan, weight_qparams=overrides, cast_mul=names)
        else:
            qm = first
        used.update(more)
        report["notes"].append(
            "onnxruntime fuses DequantizeLinear(int4) → MatMul into MatMulNBits, which by "
            "default computes with int8 activations (session option "
            "session.qdq_matmulnbits_accuracy_level=4); set it to 0 for float activations")
    elif rec.mode == "dynamic":
        qm, mm, done = dynamic_matmuls(qm, plan, weight_qparams=overrides)
        used.update(mm)
        rest = [t.tensor for t in plan.quantized("weight") if t.tensor not in done | set(used)]
        # convolutions: int8 storage decompressed once at session start (Cast/Mul), float
        # compute — onnxruntime has no fast dynamic int8 convolution
        qm, more = dequantize_weights(qm, plan, names=rest, weight_qparams=overrides,
                                      cast_mul=frozenset(rest))
        used.update(more)
        if rest:
            report["notes"].append(f"{len(rest)} conv weight(s) stored int8, computed in float "
                                   "(no dynamic int8 convolution kernel in onnxruntime)")
    elif rec.mode == "static":
        act = _activation_qparams(float_model, plan, calibration, overrides, io, batch_size,
                                  progress)
        qm, used, notes = insert_qdq(qm, plan, act, overrides, io)
        report["notes"] += notes
    elif calibration is not None:
        report["notes"].append(f"calibration data ignored: recipe {rec.name} needs none")

    props = {p.key: p.value for p in qm.metadata_props}
    props.update({META_RECIPE: rec.name, META_FORMAT: "qdq"})
    onnx.helper.set_model_props(qm, props)
    try:
        onnx.checker.check_model(qm)
    except onnx.checker.ValidationError as exc:  # a bug of ours, not the user's
        raise AssertionError(f"edgequant produced an invalid model: {exc}") from exc
    report["plan"] = {
        "quantized_nodes": sum(d.action == "quantize" for d in plan.nodes),
        "float_nodes": [{"node": d.node, "op_type": d.op_type, "reason": d.reason}
                        for d in plan.float_nodes()],
        "unmatched_rules": list(plan.unmatched_rules),
        "quantized_tensors": len(used),
    }
    if io != "float":
        report["io_qparams"] = json.loads(props.get(META_IO, "{}"))
    result = QuantizedModel(qm, plan, used, report, source)
    if check_speed:
        _speed_check(float_model, qm, calibration, report)
    return result


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _speed_check(float_model, qm, calibration, report) -> None:
    from edgequant.analysis.speed_check import SLOWER_THRESHOLD, relative_speed

    sample = None
    if isinstance(calibration, str | os.PathLike | Mapping):
        sample = load_feeds(calibration, model_inputs(float_model), what="calibration data")
    ratio = relative_speed(float_model, qm, sample)
    report["speedup_vs_float"] = None if ratio != ratio else round(ratio, 3)
    if ratio == ratio and ratio < SLOWER_THRESHOLD:
        report["warnings"].append(
            f"the quantized model runs at {ratio:.2f}x the float model's speed in onnxruntime "
            "on this CPU: it is slower than float")


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
                        io: str, batch_size: int, progress) -> dict[str, QParams]:
    specs: dict[str, QuantSpec] = {}
    ins = {i.name for i in model_inputs(model)}
    outs = {o.name for o in model.graph.output}
    for d in plan.tensors.values():
        if d.role != "activation" or d.action != "quantize" or d.tensor in overrides:
            continue
        spec = d.spec
        if io != "float" and (d.tensor in ins or d.tensor in outs):
            spec = replace(spec, qtype=QType(8, io == "int8"), granularity=PerTensor(),
                           symmetric=False)
        specs[d.tensor] = spec
    result = {k: v for k, v in overrides.items()}
    if not specs:
        return result
    if calibration is None:
        raise CalibrationError(
            f"recipe {plan.recipe.name!r} calibrates activations: give calibration data "
            "(--calibration DATA.npz, one array per model input, samples on the first axis)"
        )
    inputs = model_inputs(model)
    if isinstance(calibration, str | os.PathLike | Mapping):
        feeds = load_feeds(calibration, inputs, what="calibration data")
        n = len(next(iter(feeds.values())))
        batches: Iterable = (b.feeds for b in sample_batches(
            feeds, {i.name: i.shape for i in inputs}, batch_size, pad=False))
        total = n
    else:
        batches = (load_feeds(b, inputs, what="calibration batch") for b in calibration)
        total = None
    result.update(calibrate(model, specs, batches, total=total, progress=progress))
    return result


def save_report(report: dict, path: str | os.PathLike) -> Path:
    """Write a report dict as JSON atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2,
                                                                         default=str)))
