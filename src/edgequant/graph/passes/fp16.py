"""float16 weight storage: each float32 initializer is stored as float16 and cast back to
float32 by a Cast node (onnxruntime folds the casts at session start; compute stays fp32)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgequant.recipes.decisions import QuantPlan

#: float16's largest finite value; larger weights would become Inf and are kept float32.
FP16_MAX = float(np.finfo(np.float16).max)


def store_fp16(model: onnx.ModelProto, plan: QuantPlan) -> tuple[onnx.ModelProto, list[str]]:
    """Convert planned initializers to float16 + Cast; returns notes on tensors kept fp32."""
    g = model.graph
    todo = {t.tensor for t in plan.tensors.values() if t.action == "fp16"}
    notes, casts, rename, new_inits = [], [], {}, []
    for t in g.initializer:
        if t.name not in todo:
            new_inits.append(t)
            continue
        arr = numpy_helper.to_array(t)
        if arr.size and np.max(np.abs(arr)) > FP16_MAX:
            notes.append(f"initializer {t.name!r} kept float32: values exceed float16 range")
            new_inits.append(t)
            continue
        half = numpy_helper.from_array(arr.astype(np.float16), f"{t.name}_fp16")
        new_inits.append(half)
        casts.append(helper.make_node("Cast", [half.name], [f"{t.name}_fp32"],
                                      name=f"{t.name}_Cast", to=onnx.TensorProto.FLOAT))
        rename[t.name] = f"{t.name}_fp32"
    for node in g.node:
        for i, inp in enumerate(node.input):
            if inp in rename:
                node.input[i] = rename[inp]
    for out in g.output:
        if out.name in rename:  # an initializer that is also an output: keep the name
            notes.append(f"initializer {out.name!r} is a graph output and stays float32")
    nodes = [*casts, *g.node]
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(new_inits)
    return model, notes
