"""Run ``.tflite`` files in LiteRT and check them against the numpy reference executor.

``LiteRTRunner`` exchanges raw tensors (the model's own I/O dtypes). ``xnnpack=False``
selects LiteRT's plain builtin kernels (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``); the default
applies the XNNPACK delegate, which takes over the ops it supports.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from edgequant.export.tflite.builder import load_model
from edgequant.interp.tflite.reference import OP_NAMES, ReferenceInterpreter

log = logging.getLogger(__name__)

#: Kernel paths ``verify_tflite`` compares against the reference.
KERNEL_PATHS = {"builtin": False, "xnnpack": True}


class LiteRTRunner:
    """LiteRT interpreter for one ``.tflite`` file; ``run(feeds) -> list[np.ndarray]``."""

    def __init__(self, path: str | Path, threads: int | None = 1, xnnpack: bool = True) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        kwargs = {}
        if not xnnpack:
            kwargs["experimental_op_resolver_type"] = (
                OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.path = Path(path)
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads or 1, **kwargs)
        self.interpreter.allocate_tensors()
        self._ins = self.interpreter.get_input_details()
        self._outs = self.interpreter.get_output_details()
        self.input_names = [d["name"] for d in self._ins]
        self.output_names = [d["name"] for d in self._outs]
        self.input_dtypes = {d["name"]: np.dtype(d["dtype"]) for d in self._ins}
        self.input_shapes = {d["name"]: tuple(int(s) for s in d["shape"]) for d in self._ins}

    def run(self, feeds: Mapping[str, np.ndarray], raw: bool = True) -> list[np.ndarray]:
        """Set inputs (raw dtype), invoke, return copies of the outputs.

        A batch of ``n`` samples fed to a batch-1 model runs sample by sample and the outputs
        are concatenated (the exporter fixes the batch to 1 and bakes it into RESHAPE shapes,
        so resizing the input would be wrong).
        """
        del raw  # always raw: the model's own I/O dtypes
        first = self._ins[0]
        x0 = np.asarray(feeds.get(first["name"], np.empty(0)))
        if (x0.ndim == len(first["shape"]) and first["shape"][0] == 1 and x0.shape[0] > 1
                and tuple(x0.shape[1:]) == tuple(first["shape"][1:])):
            parts = [self._invoke({k: np.asarray(v)[i:i + 1] for k, v in feeds.items()})
                     for i in range(x0.shape[0])]
            return [np.concatenate(ys, axis=0) for ys in zip(*parts, strict=True)]
        return self._invoke(feeds)

    def _invoke(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        it = self.interpreter
        for d in self._ins:
            if d["name"] not in feeds:
                raise ValueError(f"input {d['name']!r} missing from feeds (have {sorted(feeds)})")
            x = np.ascontiguousarray(np.asarray(feeds[d["name"]], dtype=d["dtype"]))
            if tuple(x.shape) != tuple(d["shape"]):
                raise ValueError(f"input {d['name']!r}: shape {x.shape} != model shape "
                                 f"{tuple(d['shape'])}")
            it.set_tensor(d["index"], x)
        it.invoke()
        return [np.array(it.get_tensor(d["index"])) for d in self._outs]


def _prepare(feeds: Mapping[str, np.ndarray], ref: ReferenceInterpreter) -> list[dict]:
    """Split feeds into per-call dicts matching the model's input shape and dtype."""
    infos = {ref.tensors[i].name: ref.tensors[i] for i in ref.sub.inputs}
    names = list(ref.input_names)
    if len(names) == 1 and names[0] not in feeds and len(feeds) == 1:
        feeds = {names[0]: next(iter(feeds.values()))}
    arrays = {}
    for n in names:
        if n not in feeds:
            raise ValueError(f"input {n!r} missing from feeds (have {sorted(feeds)})")
        x, info = np.asarray(feeds[n]), infos[n]
        if x.dtype.kind == "f" and info.dtype.kind in "iu":  # float data for an integer input
            from edgequant.interp.tflite.kernels import quantize_float

            x = quantize_float(x, info.q, info.dtype)
        arrays[n] = x.astype(info.dtype)
    first = arrays[names[0]]
    shape0 = infos[names[0]].shape
    if first.shape == shape0:
        return [arrays]
    if first.shape[1:] == shape0[1:] and shape0[0] == 1:  # samples on the first axis
        return [{n: a[k:k + 1] for n, a in arrays.items()} for k in range(first.shape[0])]
    if first.shape == shape0[1:]:
        return [{n: a[None] for n, a in arrays.items()}]
    raise ValueError(f"input {names[0]!r}: shape {first.shape} does not fit model shape {shape0}")


def _output_scales(path: Path) -> list[float | None]:
    """LSB size of each output: its own scale, or the scale DEQUANTIZEd into it."""
    m = load_model(path.read_bytes())
    sub = m.subgraphs[0]
    producer = {int(op.outputs[0]): op for op in sub.operators}
    scales: list[float | None] = []
    for i in sub.outputs:
        t = sub.tensors[int(i)]
        if t.quantization is not None and t.quantization.scale is not None:
            scales.append(None)  # integer output: compare integers
            continue
        op = producer.get(int(i))
        name = OP_NAMES[m.operatorCodes[op.opcodeIndex].builtinCode] if op is not None else ""
        src = sub.tensors[int(op.inputs[0])] if name == "DEQUANTIZE" else None
        if src is not None and src.quantization is not None and src.quantization.scale is not None:
            scales.append(float(src.quantization.scale[0]))
        else:
            scales.append(float("nan"))  # float output of a float op
    return scales


def verify_tflite(path: str | Path, feeds: Mapping[str, np.ndarray],
                  threads: int = 1) -> dict:
    """LiteRT (builtin kernels and XNNPACK) vs the reference executor, per output, in LSB.

    ``feeds``: input name → array, samples on the first axis (float data is quantized with
    the input's qparams when the model takes integers). Integer outputs are compared as
    integers; float outputs produced by DEQUANTIZE in units of the dequantized scale; float
    outputs of float ops report ``max_abs`` only (the reference's float kernels are not
    bit-exact with LiteRT's).
    """
    path = Path(path)
    ref = ReferenceInterpreter(path)
    refs = {k: ReferenceInterpreter(path, k) for k in KERNEL_PATHS}
    calls = _prepare(feeds, ref)
    scales = _output_scales(path)
    runners = {k: LiteRTRunner(path, threads, xnnpack=v) for k, v in KERNEL_PATHS.items()}
    diffs: dict[str, list[list[np.ndarray]]] = {k: [[] for _ in scales] for k in runners}
    for call in calls:
        for k, r in runners.items():
            expect = refs[k].run(call)
            got = r.run(call)
            for j, (g, e) in enumerate(zip(got, expect, strict=True)):
                diffs[k][j].append(np.abs(g.astype(np.float64) - e.astype(np.float64)).ravel())
    outputs = {}
    ok = True
    for j, name in enumerate(ref.output_names):
        row: dict = {}
        worst = 0.0
        for k in runners:
            d = np.concatenate(diffs[k][j])
            entry = {"max_abs": float(d.max(initial=0.0)),
                     "identical_share": float(np.mean(d == 0)) if d.size else 1.0}
            s = scales[j]
            if s is None or (s == s):  # integer output, or dequantized integer output
                lsb = d if s is None else d / s
                entry["max_lsb"] = int(np.round(lsb.max(initial=0.0)))
                worst = max(worst, entry["max_lsb"])
            row[k] = entry
        if scales[j] is None or scales[j] == scales[j]:
            row["max_lsb"] = int(worst)
            ok = ok and worst == 0
        outputs[name] = row
    return {"model": str(path), "calls": len(calls), "outputs": outputs, "ok": ok}
