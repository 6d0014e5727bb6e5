"""Coverage table: every real-world failure class × recipe × output format, side by side.

For each case in ``edgequant_zoo.realworld`` (and EfficientNet-Lite0 with real weights when
its packages are installed): quantize with each recipe, write each format (ONNX QDQ, ONNX
QOperator, .tflite), then check the written file *independently* (ONNX checker + an
onnxruntime run, LiteRT for .tflite), measure fidelity against the float model (cosine of the
outputs on the calibration-disjoint half of the data) and run ``verify`` (max LSB on
integer tensors). A refusal is fine when it names the reason; a crash (a traceback of ours)
or a written file that a runtime refuses is a defect, and the script exits 1 on either.

Run: ``.venv/bin/python bench/coverage.py [--cases paddle_ocr zoo_ir3 ...] [--no-effnet]``
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

import edgequant as eq
from edgequant.errors import EdgequantError
from edgequant_zoo.realworld import CASES, RealWorldCase

RECIPES = ("w8a8", "w8_dynamic", "fp16", "w4a16_g128")
FORMATS = ("qdq", "qop", "tflite")
#: Refusals: errors of ours with a message (ValueError/TypeError/EdgequantError family).
REFUSALS = (EdgequantError, ValueError, TypeError, FileNotFoundError, ImportError)


def _split(case: RealWorldCase) -> tuple[dict, dict]:
    """First half of the samples for calibration, second half for evaluation."""
    cal, ev = {}, {}
    for k, v in case.feeds.items():
        ax = case.batch_axes.get(k)
        if ax is None or v.ndim == 0:
            cal[k] = ev[k] = v
            continue
        n = v.shape[ax]
        cal[k] = np.take(v, range(n // 2), axis=ax)
        ev[k] = np.take(v, range(n // 2, n), axis=ax)
    return cal, ev


def _samples(feeds: dict, axes: dict, k: int) -> list[dict]:
    """Per-sample feeds (batch 1) along each input's batch axis."""
    out = []
    for i in range(k):
        out.append({n: (v if axes.get(n) is None or v.ndim == 0
                        else np.take(v, [i], axis=axes[n])) for n, v in feeds.items()})
    return out


def _run_ort(model: onnx.ModelProto | str, feeds: list[dict]) -> list[np.ndarray]:
    m = model if isinstance(model, str) else model.SerializeToString()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(m, so, providers=["CPUExecutionProvider"])
    names = {i.name for i in s.get_inputs()}
    outs = [s.run(None, {k: v for k, v in f.items() if k in names})[0] for f in feeds]
    return outs


def _cosine(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    x = np.concatenate([v.astype(np.float64).ravel() for v in a])
    y = np.concatenate([v.astype(np.float64).ravel() for v in b])
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-30))


def _check_file(path: Path, fmt: str, feeds: list[dict]) -> list[np.ndarray]:
    """Independent check: the ONNX checker + onnxruntime, or LiteRT; returns first outputs."""
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(path))
        it.allocate_tensors()
        outs = []
        for f in feeds:
            for d in it.get_input_details():
                x = next(iter(v for k, v in f.items() if d["name"].endswith(k) or k in d["name"]),
                         next(iter(f.values())))
                it.set_tensor(d["index"], x.astype(d["dtype"]).reshape(d["shape"]))
            it.invoke()
            outs.append(it.get_tensor(it.get_output_details()[0]["index"]).copy())
        return outs
    onnx.checker.check_model(str(path), full_check=True)
    return _run_ort(str(path), feeds)


def _verify(path: Path, fmt: str, feeds: dict) -> str:
    """``verify`` summary: max LSB over integer outputs, max |Δ| over float ones (the
    reference interpreter vs onnxruntime; the TFLite reference vs LiteRT, both kernel paths)."""
    try:
        if fmt == "tflite":
            from edgequant.runtime.verify_tflite import verify_tflite

            rep = verify_tflite(path, feeds)
        else:
            rep = eq.verify(str(path), feeds, isolate_integer=True)
        ints = [d.max_diff for d in rep.outputs if d.in_lsb]
        floats = [d.max_diff for d in rep.outputs if not d.in_lsb]
        parts = [f"verify {max(ints):g} LSB"] if ints else []
        parts += [f"verify float |Δ| {max(floats):.1e}"] if floats else []
        return ", ".join(parts) or "verify ran"
    except Exception as e:
        return f"verify: {type(e).__name__}: {str(e).splitlines()[0][:60]}"


def run_case(case: RealWorldCase, out_dir: Path, n_eval: int = 4) -> tuple[list[dict], int]:
    """All recipe × format rows for one case; returns rows and the number of defects."""
    cal, ev = _split(case)
    evs = _samples(ev, case.batch_axes, n_eval)
    ref = _run_ort(case.model, evs)
    rows, defects = [], 0
    src = out_dir / f"{case.name}.onnx"
    onnx.save(case.model, src)
    kwargs = {}
    if "batch_axes" in inspect.signature(eq.quantize).parameters:
        kwargs["batch_axes"] = case.batch_axes
    for recipe in RECIPES:
        try:
            qm = eq.quantize(str(src), recipe, calibration=cal, **kwargs)
            quant_note = ""
        except REFUSALS as e:
            rows += [dict(case=case.name, recipe=recipe, format=f, result="refused",
                          detail=str(e).splitlines()[0][:90]) for f in FORMATS]
            continue
        except Exception as e:
            defects += 1
            rows += [dict(case=case.name, recipe=recipe, format=f, result="CRASH",
                          detail=f"{type(e).__name__}: {str(e).splitlines()[0][:80]}") for f in FORMATS]
            logging.debug(traceback.format_exc())
            continue
        for fmt in FORMATS:
            path = out_dir / f"{case.name}_{recipe}_{fmt}.{'tflite' if fmt == 'tflite' else 'onnx'}"
            try:
                qm.save(path, format=None if fmt == "tflite" else fmt)
            except REFUSALS as e:
                rows.append(dict(case=case.name, recipe=recipe, format=fmt, result="refused",
                                 detail=str(e).splitlines()[0][:90]))
                continue
            except Exception as e:
                defects += 1
                rows.append(dict(case=case.name, recipe=recipe, format=fmt, result="CRASH",
                                 detail=f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"))
                continue
            try:
                outs = _check_file(path, fmt, evs)
            except Exception as e:
                defects += 1
                rows.append(dict(case=case.name, recipe=recipe, format=fmt, result="INVALID FILE",
                                 detail=f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"))
                continue
            cos = _cosine(ref, [o.reshape(r.shape) for o, r in zip(outs, ref, strict=True)])
            nq = qm.report.get("plan", {}).get("quantized_nodes", "?")
            rows.append(dict(case=case.name, recipe=recipe, format=fmt, result="built",
                             detail=f"cos {cos:.4f}, {nq} nodes quantized{quant_note}, "
                                    f"{_verify(path, fmt, evs[0])}"))
    return rows, defects


def effnet_case() -> RealWorldCase | None:
    """EfficientNet-Lite0 with real weights on real photo crops (None when not installed)."""
    try:
        from edgequant_zoo.efficientnet import export_efficientnet_lite0
        from edgequant_zoo.photos import calibration_crops, evaluation_crops
    except ImportError:
        return None
    d = Path(tempfile.mkdtemp())
    try:
        p = export_efficientnet_lite0(d / "effnet_lite0.onnx")
    except ImportError:
        return None
    x = np.concatenate([calibration_crops(32), evaluation_crops(8)])
    return RealWorldCase("effnet_lite0", onnx.load(p), {"input": x}, {"input": 0},
                         "real ImageNet weights, depthwise convs (bias overflow)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    ap.add_argument("--no-effnet", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    cases = [CASES[c]() for c in args.cases]
    if not args.no_effnet:
        eff = effnet_case()
        if eff is not None:
            cases.append(eff)
    rows, defects = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            r, d = run_case(case, Path(tmp))
            rows += r
            defects += d
            print(f"[{case.name}] {case.features}", flush=True)
            for row in r:
                print(f"  {row['recipe']:<11} {row['format']:<7} {row['result']:<13} {row['detail']}",
                      flush=True)
    print(f"{len(rows)} rows, {defects} defects (crashes or invalid files)")
    return 1 if defects else 0


if __name__ == "__main__":
    sys.exit(main())
