"""The additive attention-mask path of transformer graphs: found, kept float, made finite.

Hugging Face encoders turn the integer ``attention_mask`` input into an additive float bias
and add it to the attention scores right before Softmax::

    bias   = Where(mask_bool, 0, dtype_min)            # SDPA and eager, transformers >= 4.4x
    bias   = (1 − Cast(mask)) · −10000  /  · −inf      # older exports
    scores = Add(Q·Kᵀ·scale, bias) → Softmax

The bias is computed from integer inputs and constants only (no float activation of the
data path reaches it); :func:`mask_tensors` finds exactly those float tensors, and
:func:`mask_adds` the Adds that apply them to data on the way to a Softmax.

What edgequant does with them (decided on purpose, documented in ``docs/transformers.md``):

- **kept float.** The bias holds 0 and "minus infinity": no 8-bit (or 16-bit) grid fits
  both the scores and it, and calibrating it is what collapsed static w8a8 (cosine ≈ 0.35 on
  MiniLM). The mask path and the Add that applies it compute on floats; the scores reach
  Softmax (also float, see :mod:`edgequant.recipes.transformer`) unquantized.
- **made finite.** Constants on the mask path below :data:`MASK_FILL` (−inf, the float32
  minimum) are raised to ``MASK_FILL = −1e30`` by :func:`finite_mask_constants`. Provably
  harmless after Softmax: a masked score is ``s + MASK_FILL`` with ``|s| < 1e29``, so its
  ``exp(· − max)`` underflows to exactly 0 in float32 (below 1.4e-45 once the exponent is
  under −104) whenever the row has one unmasked position — the same 0 that −inf gives —
  and two masks added together stay finite (−2e30, where ``2 · dtype_min`` is −inf).
  A ``scores.masked_fill(~mask, -inf)`` (a ``Where`` before Softmax, :func:`mask_wheres`)
  replaces masked scores instead of adding to them: its fill becomes ``MASK_FILL`` too, and
  the same argument holds.
  A row with *every* position masked (an all-padding row) gets equal weights instead of
  −inf's NaN (``−inf − (−inf)``), so padding never turns outputs into NaN.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from edgequant.graph.info import GraphInfo

#: The finite "minus infinity" mask constants are raised to (see the module docstring).
MASK_FILL = -1e30
#: Ops a mask bias is computed with (elementwise arithmetic, selection, shape moves). A
#: Gather is not among them: ``Gather(float_table, ids)`` is an embedding, i.e. data.
MASK_OPS = ("Cast", "Sub", "Mul", "Add", "Neg", "Where", "Expand", "Unsqueeze", "Squeeze",
            "Reshape", "Slice", "Concat", "Transpose", "Tile", "Min", "Max", "Clip", "Identity")
#: Ops a masked score may pass through between the mask Add and its Softmax.
SCORE_PASS_OPS = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Cast")


def mask_tensors(model: onnx.ModelProto, info: GraphInfo | None = None) -> set[str]:
    """Float activations computed only from integer / bool tensors and constants through
    :data:`MASK_OPS` (the additive attention bias and its intermediate steps)."""
    info = info or GraphInfo.build(model)
    found: set[str] = set()
    for node in model.graph.node:  # graph order is topological
        if node.op_type not in MASK_OPS:
            continue
        inputs = [i for i in node.input if i]
        if all(info.is_constant(i) for i in inputs):
            continue  # folded constants are not a path
        ok = all(i in found or info.is_constant(i) or not _maybe_float(info, i) for i in inputs)
        if ok:
            found |= {o for o in node.output if info.is_float(o)}
    return found


def _maybe_float(info: GraphInfo, name: str) -> bool:
    """True unless ``name`` is known to be a non-float (integer / bool) tensor."""
    t = info.elem_types.get(name)
    return t is None or t in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16,
                              onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)


def mask_adds(model: onnx.ModelProto, info: GraphInfo | None = None) -> list[onnx.NodeProto]:
    """Adds that apply a mask bias to a data tensor whose sum reaches a Softmax (through
    :data:`SCORE_PASS_OPS` only)."""
    info = info or GraphInfo.build(model)
    masks = mask_tensors(model, info)
    out = []
    for node in model.graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        a, b = node.input
        if (a in masks) == (b in masks) or node.output[0] in masks:
            continue
        if _reaches_softmax(node.output[0], info):
            out.append(node)
    return out


def mask_wheres(model: onnx.ModelProto, info: GraphInfo | None = None) -> list[onnx.NodeProto]:
    """``scores.masked_fill(~mask, fill)``: Wheres with a non-float condition and a constant
    branch, whose output reaches a Softmax (through :data:`SCORE_PASS_OPS` only)."""
    info = info or GraphInfo.build(model)
    return [n for n in model.graph.node
            if n.op_type == "Where" and len(n.input) == 3
            and not _maybe_float(info, n.input[0])
            and any(info.is_constant(i) for i in n.input[1:])
            and _reaches_softmax(n.output[0], info)]


def _reaches_softmax(tensor: str, info: GraphInfo) -> bool:
    todo, seen = [tensor], set()
    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.add(t)
        for c in info.consumers.get(t, []):
            if c.op_type == "Softmax":
                return True
            if c.op_type in SCORE_PASS_OPS:
                todo.append(c.output[0])
    return False


def mask_path_nodes(model: onnx.ModelProto, info: GraphInfo | None = None) -> list[str]:
    """Names of the nodes kept float for the mask: the bias computation and the mask Adds."""
    info = info or GraphInfo.build(model)
    masks = mask_tensors(model, info)
    names = [n.name or n.output[0] for n in model.graph.node
             if any(o in masks for o in n.output)]
    return names + [n.name or n.output[0] for n in mask_adds(model, info)]


def finite_mask_constants(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """Raise float constants feeding the mask path (or a ``masked_fill`` Where,
    :func:`mask_wheres`) that lie below :data:`MASK_FILL` (−inf,
    the dtype minimum) to ``MASK_FILL``; returns the model (edited in place) and one note
    per constant changed. Constants elsewhere are left alone (and refused later if not
    finite)."""
    info = GraphInfo.build(model)
    masks = mask_tensors(model, info)
    path_nodes = [n for n in model.graph.node if any(o in masks for o in n.output)]
    path_nodes += mask_wheres(model, info)  # masked_fill(-inf) replaces instead of adding
    wanted = {i for n in path_nodes for i in n.input if info.is_constant(i)}
    notes: list[str] = []
    for t in model.graph.initializer:
        if t.name in wanted:
            _clamp(t, notes)
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output[0] in wanted:
            for a in n.attribute:
                if a.name == "value":
                    _clamp(a.t, notes, n.output[0])
    return model, notes


def _clamp(t: onnx.TensorProto, notes: list[str], name: str = "") -> None:
    if t.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16,
                           onnx.TensorProto.DOUBLE):
        return
    values = numpy_helper.to_array(t)
    low = values < MASK_FILL  # -inf and the dtype minimum; NaN compares False and stays
    if not low.any():
        return
    fixed = np.where(low, np.asarray(MASK_FILL, values.dtype), values).astype(values.dtype)
    t.CopyFrom(numpy_helper.from_array(fixed, t.name))
    notes.append(f"attention-mask constant {name or t.name!r}: {int(low.sum())} value(s) below "
                 f"{MASK_FILL:g} (-inf / dtype minimum) set to {MASK_FILL:g} (same Softmax "
                 "output; an all-padding row averages instead of turning NaN)")
