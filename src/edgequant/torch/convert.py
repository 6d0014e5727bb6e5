"""``convert``: a trained QAT model → QDQ ONNX carrying exactly the trained qparams.

Steps: (1) one eval forward so every weight quantizer holds the qparams of the current
weights; (2) swap each QAT module for a plain Conv2d/Linear holding the *folded* float weights
(BN folded with running statistics, ReLU fused) — the float op the fake-quant forward ran;
(3) export that float module with :func:`export_onnx` (initializers keep the parameter names
``<module path>.weight``, which is how each QAT module finds its ONNX node); (4) resolve the
plan of what training quantized (:mod:`edgequant.torch.trained_plan`) and let the one Q/DQ
writer, :func:`edgequant.graph.passes.insert_qdq.insert_qdq`, execute it with the trained
qparams — no recalibration anywhere.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from edgequant.errors import EdgequantError
from edgequant.graph.contract import META_FORMAT, META_RECIPE
from edgequant.graph.io import copy_model
from edgequant.graph.passes.fold import strip_debug_info
from edgequant.graph.passes.insert_qdq import insert_qdq
from edgequant.ptq.quantizer import QuantizedModel
from edgequant.qparams import QParams
from edgequant.recipes.plan import QuantPlan
from edgequant.torch.export import as_tuple, export_onnx, save_atomic
from edgequant.torch.graph_convert import convert_graph
from edgequant.torch.graph_qat import GraphQAT
from edgequant.torch.prepare import BOUNDARY_ATTR, QATModel, qat_modules
from edgequant.torch.trained_plan import (
    PROPAGATING_OPS,
    RULE_FLOAT,
    propagate,
    region_nodes,
    region_output,
    trained_plan,
)

log = logging.getLogger(__name__)


def _set_submodule(root: torch.nn.Module, name: str, new: torch.nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, leaf, new)


def trained_qparams(qat_model: QATModel) -> dict[str, dict]:
    """Module name → weight / output qparams, fused ReLU, and the bias's input scale."""
    return {
        name: {"weight": m.weight_qparams(), "output": m.output_qparams(), "relu": m.relu,
               "input_scale": np.float32(m.bias_input_scale.item()),
               "has_bias": m.folded()[1] is not None}
        for name, m in qat_modules(qat_model.model).items()
    }


def _consumers(graph: onnx.GraphProto, tensor: str) -> list[onnx.NodeProto]:
    return [n for n in graph.node if tensor in n.input]


def map_to_onnx(float_onnx: onnx.ModelProto, qat_model: QATModel,
                params: dict[str, dict], regions: dict[str, QParams]
                ) -> tuple[dict[str, QParams], dict[str, QParams], dict[str, QParams]]:
    """Trained activation qparams by ONNX tensor name, the same extended through exact ops
    outside float regions (:func:`propagate`), and weight qparams by initializer name."""
    g = float_onnx.graph
    acts: dict[str, QParams] = {}
    weights: dict[str, QParams] = {}
    inputs: dict[str, str] = {}
    for name, p in params.items():
        wname = f"{name}.weight"
        nodes = [n for n in g.node if n.op_type in ("Conv", "Gemm") and n.input[1:2] == [wname]]
        if len(nodes) != 1:
            raise EdgequantError(
                f"QAT module {name!r}: the exported graph has {len(nodes)} Conv/Gemm nodes "
                f"reading initializer {wname!r} (need exactly 1); is it called more than once?"
            )
        weights[wname] = p["weight"]
        inputs[name] = nodes[0].input[0]
        out = nodes[0].output[0]
        if p["relu"]:  # the QDQ pair sits after the fused ReLU
            relus = [c for c in _consumers(g, out) if c.op_type == "Relu"]
            if len(relus) != 1:
                raise EdgequantError(f"QAT module {name!r}: fused ReLU not found after {out!r}")
            out = relus[0].output[0]
        if p["output"] is not None:
            acts[out] = p["output"]
    for name, qp in regions.items():
        acts[region_output(g, name)] = qp
    for inp, q in zip(g.input, qat_model.input_quant, strict=False):
        if q.observed:
            acts[inp.name] = q.qparams()
    grids = propagate(g, acts, region_nodes(g, sorted(regions)))
    _check_bias_scales(grids, params, inputs)
    return acts, grids, weights


def _check_bias_scales(act: dict[str, QParams], params: dict[str, dict],
                       inputs: dict[str, str]) -> None:
    """Every QAT layer quantized its bias with the scale its exported input really has."""
    bad = []
    for name, p in params.items():
        qp = act.get(inputs[name])
        want = np.float32(qp.scale) if qp is not None else np.float32(0)
        if p["has_bias"] and p["input_scale"] != want:
            bad.append(f"{name!r} (training used input scale {p['input_scale']}, the exported "
                       f"input {inputs[name]!r} has {want})")
    if bad:
        raise EdgequantError(
            "the int32 bias of these QAT layers was simulated with the wrong input scale, so "
            "the converted model would not compute what training saw (their input is not the "
            "activation quantized just before them — e.g. a branch, or an unfused float op such "
            "as a BatchNorm in between: fuse it with prepare_qat(..., fuse=[[conv, bn, relu]])): "
            + "; ".join(bad)
        )


@torch.no_grad()
def convert(qat_model: QATModel | GraphQAT, example_inputs=None,
            path: str | os.PathLike | None = None) -> QuantizedModel:
    """The QDQ model computing what ``qat_model`` computes (trained qparams, no recalibration).

    A whole-graph QAT model (``prepare_qat(..., example_inputs=...)``) is converted by
    :func:`edgequant.torch.graph_convert.convert_graph` (``example_inputs`` unused). A
    module-swap QAT model is BN-folded, exported with ``example_inputs`` (a tensor or tuple of
    positional tensors, batch axis first; exported dynamic), and gets QDQ with the trained
    qparams. When ``path`` is given the QDQ model is also saved there.
    """
    if isinstance(qat_model, GraphQAT):
        return convert_graph(qat_model, path)
    if example_inputs is None:
        raise TypeError("convert of a module-swap QAT model needs example_inputs")
    if not isinstance(qat_model, QATModel):
        raise TypeError(
            f"convert needs the QATModel returned by prepare_qat, got {type(qat_model).__name__}"
        )
    m = copy.deepcopy(qat_model).eval()
    args = as_tuple(example_inputs)
    m(*args)  # refresh weight qparams from the final weights; checks observers have data
    params = trained_qparams(m)
    inner = m.model
    regions: dict[str, QParams] = {}
    for name, mod in inner.named_modules():
        quant = getattr(mod, BOUNDARY_ATTR, None)
        if quant is not None:
            regions[name] = quant.qparams()
            delattr(mod, BOUNDARY_ATTR)  # its forward hook now passes outputs through
    for name, mod in qat_modules(inner).items():
        _set_submodule(inner, name, mod.to_float())
    # Unoptimised export: the exporter's rewrites could fold a float BatchNorm into a QAT
    # conv's weights while keeping its initializer name, silently detaching the trained
    # qparams from the tensor they were trained on.
    float_onnx = export_onnx(inner, args, optimize=False)
    _check_weights_unchanged(float_onnx, inner, params)
    trained, acts, weights = map_to_onnx(float_onnx, m, params, regions)
    floats = region_nodes(float_onnx.graph, sorted(regions))
    plan = trained_plan(m.recipe, float_onnx, acts, weights, floats)
    model, used, notes = insert_qdq(copy_model(float_onnx), plan, act_qparams=acts,
                                    weight_qparams=weights, io="float")
    _check_trained_qparams(plan, used, trained, weights, params)
    for note in notes:  # e.g. an int32-overflowing bias kept float (training saturated it)
        log.info("convert: %s", note)
    props = {p.key: p.value for p in model.metadata_props}
    onnx.helper.set_model_props(model, {**props, META_RECIPE: m.recipe_name, META_FORMAT: "qdq"})
    onnx.checker.check_model(model)
    report = {
        "recipe": m.recipe_name,
        "mode": "qat",
        "qat_modules": sorted(params),
        "float_regions": sorted(regions),
        "quantized_activations": sorted(t for t, d in plan.tensors.items()
                                        if d.role == "activation" and t in used),
        "pass_through_ops": sorted(PROPAGATING_OPS),
        "notes": notes,
    }
    log.info("convert: %d weights and %d activations carry trained qparams",
             len(weights), len(report["quantized_activations"]))
    strip_debug_info(model)  # exporter stack traces: tens of KB nothing reads at run time
    result = QuantizedModel(model, plan, used, report)
    if path is not None:
        save_atomic(model, Path(path))
    return result


def _same(a: QParams, b: QParams) -> bool:
    """Bit-identical scales and zero points of the same type."""
    return (a.qtype == b.qtype and np.array_equal(np.asarray(a.scale).view(np.uint32),
                                                  np.asarray(b.scale).view(np.uint32))
            and np.array_equal(a.zero_point, b.zero_point))


def _check_trained_qparams(plan: QuantPlan, used: dict[str, QParams],
                           trained: dict[str, QParams], weights: dict[str, QParams],
                           params: dict[str, dict]) -> None:
    """The QDQ model carries every trained qparams, bit for bit.

    A trained activation may be missing only when the plan fused it into the Relu after it
    (which then carries the same qparams: the Relu inherited them).
    """
    for name, qp in {**trained, **weights}.items():
        d = plan.tensors.get(name)
        if name in used:
            assert _same(used[name], qp), f"{name!r}: Q/DQ qparams differ from training"
        elif d is None or d.action != "fused":
            why = "; ".join(f"{n.node} ({n.op_type}): {n.reason}" for n in plan.float_nodes()
                            if n.rule != RULE_FLOAT)
            raise EdgequantError(f"{name!r} was quantized in training but the converted graph "
                                 f"cannot quantize it ({why or 'no quantized node reads it'})")
    simulated = {f"{n}.weight" for n, p in params.items() if p["has_bias"] and p["input_scale"]}
    for d in plan.tensors.values():
        if d.role == "bias" and d.weight_of in simulated and d.tensor not in used:
            log.warning("convert: bias %r stays float although training simulated it as int32 "
                        "(it overflows int32 at scale input·weight)", d.tensor)


def _check_weights_unchanged(model: onnx.ModelProto, inner: torch.nn.Module,
                             params: dict[str, dict]) -> None:
    """The exported weight of every QAT module is bit-identical to the one training used."""
    inits = {t.name: t for t in model.graph.initializer}
    for name in params:
        wname = f"{name}.weight"
        want = inner.get_submodule(name).weight.detach().numpy()
        got = numpy_helper.to_array(inits[wname]) if wname in inits else None
        if got is None or got.shape != want.shape or not np.array_equal(got, want):
            raise EdgequantError(
                f"QAT module {name!r}: the exported initializer {wname!r} is missing or differs "
                "from the trained (folded) weight, so trained qparams cannot be attached to it"
            )
