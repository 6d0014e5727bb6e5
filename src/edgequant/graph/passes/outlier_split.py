"""LLM.int8()-style outlier decomposition, in plain ONNX.

A MatMul ``Y = X · W`` (``X (…, K)``, constant ``W (K, N)``) whose input has a few features
far larger than the rest (calibrated ``max |X_j| > threshold``) is split by feature::

    X_out = Gather(X, outlier_idx, axis=-1)     # (…, K_out) float32
    X_in  = Gather(X, inlier_idx,  axis=-1)     # (…, K_in)  → Q/DQ, int8 MatMul
    Y     = MatMul(X_in, W[inlier_idx]) + MatMul(X_out, W[outlier_idx])

The float part is kept float by a rule; the inlier part is an ordinary static MatMul whose
per-tensor activation grid no longer stretches to the outliers (Dettmers et al., 2022). In
float the split is exact up to summation order. One pair of Gathers serves every MatMul
reading the same ``X`` (Q, K and V). A MatMul with no outlier feature is left untouched; one
whose every feature is an outlier stays as it was too (nothing to gain).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgequant.graph.contract import tensor_stem
from edgequant.graph.info import GraphInfo


@dataclass
class Split:
    """What one MatMul became: its outlier features and the new node names."""

    matmul: str
    features: int
    outliers: list[int]
    float_nodes: list[str]
    int8_matmul: str

    @property
    def share(self) -> float:
        """Fraction of the input features (and MACs) computed in float."""
        return len(self.outliers) / self.features


def outlier_features(absmax: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of the features whose calibrated max |x| exceeds ``threshold`` (sorted)."""
    return np.flatnonzero(absmax > threshold)


def split_matmuls(model: onnx.ModelProto, targets: dict[str, np.ndarray],
                  info: GraphInfo | None = None) -> list[Split]:
    """Split each MatMul named in ``targets`` (name → outlier feature indices) in place.

    Targets with no outlier, or only outliers, are skipped (absent from the result).
    """
    info = info or GraphInfo.build(model)
    g = model.graph
    by_name = {(n.name or n.output[0]): n for n in g.node}
    shared: dict[tuple[str, bytes], tuple[str, str, list[onnx.NodeProto]]] = {}
    new_inits: list[onnx.TensorProto] = []
    splits: list[Split] = []
    replace: dict[str, list[onnx.NodeProto]] = {}
    for name, idx in targets.items():
        node = by_name[name]
        w = info.const_array(node.input[1]).astype(np.float32)  # (K, N)
        k = w.shape[0]
        idx = np.asarray(sorted(set(int(i) for i in idx)), dtype=np.int64)
        if len(idx) == 0 or len(idx) == k:
            continue
        inl = np.setdiff1d(np.arange(k), idx).astype(np.int64)  # (K_in,)
        x = node.input[0]
        key = (x, idx.tobytes())
        if key not in shared:  # one Gather pair per (input, outlier set)
            stem = f"{tensor_stem(x)}_split{len(shared)}"
            new_inits += [numpy_helper.from_array(idx, f"{stem}_outlier_idx"),
                          numpy_helper.from_array(inl, f"{stem}_inlier_idx")]
            gathers = [helper.make_node("Gather", [x, f"{stem}_outlier_idx"], [f"{stem}_x_out"],
                                        axis=-1, name=f"{stem}_GatherOutliers"),
                       helper.make_node("Gather", [x, f"{stem}_inlier_idx"], [f"{stem}_x_in"],
                                        axis=-1, name=f"{stem}_GatherInliers")]
            shared[key] = (f"{stem}_x_out", f"{stem}_x_in", gathers)
            first = gathers
        else:
            first = []
        x_out, x_in, gathers = shared[key]
        p = tensor_stem(name)
        new_inits += [numpy_helper.from_array(w[idx], f"{p}_outlier_weight"),   # (K_out, N)
                      numpy_helper.from_array(w[inl], f"{p}_inlier_weight")]    # (K_in, N)
        y = node.output[0]
        nodes = [*first,
                 helper.make_node("MatMul", [x_in, f"{p}_inlier_weight"], [f"{p}_y_in"],
                                  name=f"{p}_inlier_matmul"),
                 helper.make_node("MatMul", [x_out, f"{p}_outlier_weight"], [f"{p}_y_out"],
                                  name=f"{p}_outlier_matmul"),
                 helper.make_node("Add", [f"{p}_y_in", f"{p}_y_out"], [y],
                                  name=f"{p}_outlier_add")]
        replace[name] = nodes
        floats = [n.name for n in gathers] + [f"{p}_outlier_matmul", f"{p}_outlier_add"]
        splits.append(Split(name, k, idx.tolist(), floats, f"{p}_inlier_matmul"))
    out: list[onnx.NodeProto] = []
    for n in g.node:
        out += replace.get(n.name or n.output[0], [n])
    del g.node[:]
    g.node.extend(out)
    g.initializer.extend(new_inits)
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    return splits
