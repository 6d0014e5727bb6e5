"""The external-data guard: every tensor an ONNX model stores outside itself must live in a
regular file inside the model's folder.

Covered: graph initializers, sparse initializers (values and indices), tensors in node
attributes (``Constant`` and any other ``TENSOR`` / ``TENSORS`` / ``SPARSE_TENSOR``
attribute), in subgraphs (``If`` / ``Loop`` / ``Scan`` bodies, at any depth), in model-local
functions and in training-info graphs. Every tensor must have exactly one ``location`` entry;
the location must be relative, must not climb out of the folder with ``..``, and must stay
inside after symlinks are resolved (``os.path.realpath``). Checked locations are then loaded
here, so onnx's own loader never sees an unchecked one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import onnx
from onnx.external_data_helper import load_external_data_for_tensor

from edgequant.errors import ModelLoadError


def _graph_tensors(graph: onnx.GraphProto, where: str) -> Iterator[tuple[str, onnx.TensorProto]]:
    for t in graph.initializer:
        yield f"initializer {t.name!r}{where}", t
    for s in graph.sparse_initializer:
        name = s.values.name or s.indices.name
        yield f"sparse initializer {name!r} values{where}", s.values
        yield f"sparse initializer {name!r} indices{where}", s.indices
    for node in graph.node:
        yield from _node_tensors(node, where)


def _node_tensors(node: onnx.NodeProto, where: str) -> Iterator[tuple[str, onnx.TensorProto]]:
    label = f"node {node.name or node.op_type!r} ({node.op_type})"
    for a in node.attribute:
        at = f"{label} attribute {a.name!r}{where}"
        if a.HasField("t"):
            yield at, a.t
        for i, t in enumerate(a.tensors):
            yield f"{at}[{i}]", t
        if a.HasField("sparse_tensor"):
            yield f"{at} values", a.sparse_tensor.values
            yield f"{at} indices", a.sparse_tensor.indices
        for i, s in enumerate(a.sparse_tensors):
            yield f"{at}[{i}] values", s.values
            yield f"{at}[{i}] indices", s.indices
        if a.HasField("g"):
            yield from _graph_tensors(a.g, f" in subgraph {a.name!r} of {label}{where}")
        for i, g in enumerate(a.graphs):
            yield from _graph_tensors(g, f" in subgraph {a.name!r}[{i}] of {label}{where}")


def all_tensors(model: onnx.ModelProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    """Every TensorProto in ``model`` with a label naming where it sits."""
    yield from _graph_tensors(model.graph, "")
    for f in model.functions:
        for node in f.node:
            yield from _node_tensors(node, f" in function {f.name!r}")
    for i, info in enumerate(model.training_info):
        yield from _graph_tensors(info.initialization, f" in training_info[{i}] initialization")
        yield from _graph_tensors(info.algorithm, f" in training_info[{i}] algorithm")


def is_external(t: onnx.TensorProto) -> bool:
    """True if ``t`` claims external storage (the flag, or any ``external_data`` entry)."""
    return t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data) > 0


def external_file(label: str, t: onnx.TensorProto, folder: Path) -> Path:
    """The checked file of external tensor ``t``: one relative ``location`` resolving (after
    symlinks) to a regular file inside ``folder``. Raises ``ModelLoadError`` otherwise."""
    root = Path(os.path.realpath(folder))
    locs = [e.value for e in t.external_data if e.key == "location"]
    if len(locs) != 1:
        raise ModelLoadError(f"{label} has {len(locs)} external-data 'location' entries "
                             f"{locs}; exactly one is allowed")
    loc = locs[0]
    if not loc or "\x00" in loc:
        raise ModelLoadError(f"{label} has an empty or invalid external-data location {loc!r}")
    if os.path.isabs(loc) or Path(loc).drive or Path(loc).root:
        raise ModelLoadError(f"{label} points to external data {loc!r} outside the model's "
                             f"folder {str(root)!r}: absolute paths are not allowed")
    target = Path(os.path.realpath(root / loc))
    if ".." in Path(loc).parts or not target.is_relative_to(root):
        raise ModelLoadError(f"{label} points to external data {loc!r} outside the model's "
                             f"folder {str(root)!r} (resolves to {str(target)!r}); only paths "
                             "inside that folder are allowed")
    if not target.is_file():
        raise ModelLoadError(f"{label}: external data file {loc!r} is missing or not a regular "
                             f"file in {str(root)!r}")
    return target


def check_external_data(model: onnx.ModelProto, folder: str | os.PathLike) -> int:
    """Check every external reference in ``model`` against ``folder``; return how many."""
    n = 0
    for label, t in all_tensors(model):
        if is_external(t):
            external_file(label, t, Path(folder))
            n += 1
    return n


def load_external_data(model: onnx.ModelProto, folder: str | os.PathLike) -> None:
    """Check, then read every external tensor of ``model`` into the model (in place)."""
    for label, t in all_tensors(model):
        if not is_external(t):
            continue
        external_file(label, t, Path(folder))
        t.data_location = onnx.TensorProto.EXTERNAL
        try:
            load_external_data_for_tensor(t, str(folder))
        except Exception as exc:  # onnx raises ValueError / OSError / its own checker errors
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"{label}: cannot read its external data: {first}") from exc


def external_inputs(path: str | os.PathLike) -> dict[str, Path]:
    """label → file of every external-data file an ``.onnx`` model at ``path`` reads (so no
    output lands on one). Unreadable models give ``{}``: ``load_model`` reports them later."""
    p = Path(path)
    if p.suffix != ".onnx" or not p.is_file():
        return {}
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception:  # a bad model is load_model's to report, with a reason
        return {}
    files: dict[str, Path] = {}
    for label, t in all_tensors(model):
        for e in t.external_data:
            if e.key == "location" and e.value:
                files.setdefault(f"external data of {label}", p.parent / e.value)
    return files
